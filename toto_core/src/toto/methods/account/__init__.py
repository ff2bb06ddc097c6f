"""The built-in ``account.*`` methods (PROTOCOL.md section 3)."""
