"""Built-in methods, served when the application's method package does not define them."""
