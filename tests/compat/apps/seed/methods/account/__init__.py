"""This app's own account package, written as the original's was: over ``handler.db_connection``."""
