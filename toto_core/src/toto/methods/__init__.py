"""Built-in methods: ``account.*`` and ``toto.*`` are served when the application's method
package does not define them; ``client_error`` (and the others) when an application
re-exports them, as the original's templates did::

    # methods/__init__.py
    import toto.methods.client_error as client_error
    from toto.methods.account import create as account_create
"""
