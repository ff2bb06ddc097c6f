"""The built-in ``account.*`` methods (PROTOCOL.md section 3).

Imported here as the original's package did, so ``toto.methods.account.login`` is reachable
as an attribute once ``toto.methods.account`` is imported.
"""

from . import create, login, logout, update

__all__ = ["create", "login", "logout", "update"]
