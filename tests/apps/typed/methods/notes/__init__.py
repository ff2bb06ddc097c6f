"""Notes of the signed-in user, kept in the session."""
