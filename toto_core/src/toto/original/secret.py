"""The original's password helpers, over Toto's own KDF (scrypt, ``toto.accounts``).

``password_hash(secret)`` returns a salted hash to store; ``verify_password(secret, pwhash)``
checks one in constant time. Both block for tens of milliseconds by design: from a method,
prefer the server's ``handler.server.passwords`` (``await ...hash(...)`` /
``await ...verify(...)``), which runs them on threads of their own. Hashes made by the
original (pbkdf2 ``$p5k2$``) do not verify: their accounts need a password reset.
"""

from __future__ import annotations

from toto.accounts import MAX_PASSWORD, hash_password_sync, verify_password_sync

__all__ = ["password_hash", "verify_password"]

#: scrypt cost (log2 N) of ``password_hash``; the server's ``password_cost`` option default.
COST = 14


def password_hash(secret: str, cost: int = COST) -> str:
    """A new salted scrypt hash of ``secret`` (text of at most 1024 characters)."""
    if not isinstance(secret, str) or len(secret) > MAX_PASSWORD:
        raise ValueError(f"a password is text of at most {MAX_PASSWORD} characters")
    return hash_password_sync(secret, cost)


def verify_password(secret: str, pwhash: str) -> bool:
    """Whether ``secret`` is the password ``pwhash`` was made from."""
    if not isinstance(secret, str) or not isinstance(pwhash, str) or len(secret) > MAX_PASSWORD:
        return False
    return verify_password_sync(secret, pwhash)
