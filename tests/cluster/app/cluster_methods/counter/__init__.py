"""A counter kept in the session state."""
