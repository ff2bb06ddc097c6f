import toto_example_missing_dependency  # noqa: F401 (not installed: importing this plugin fails)
