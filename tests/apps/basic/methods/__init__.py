"""Methods of the shared test application."""
