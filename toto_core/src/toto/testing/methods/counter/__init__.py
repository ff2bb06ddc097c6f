"""Methods on a counter kept in the session state."""
