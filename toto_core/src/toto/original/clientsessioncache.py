"""The original's ``toto.clientsessioncache``: sessions kept by the client, encrypted.

``ClientCache(cipher, hmac_key)`` stores a session's data in its session id:
``store_session(session_data)`` returns base64url(ciphertext + HMAC-SHA1(hmac_key,
ciphertext)) and ``load_session(session_id)`` checks the HMAC, decrypts and gives the data
back (with that ``session_id``). The data is serialized as JSON, whatever
``TotoSession.set_serializer`` chose: it comes back from the client.

``AESCipher(key, iv=None)`` encrypts with AES-GCM (``cryptography``), a fresh nonce each
time, so equal sessions never give equal ids and a changed id does not decrypt. As in the
original, ``key`` may carry a trailing 16 bytes (the original's CBC ``iv``): given
without ``iv``, a key of 32, 40 or 48 bytes is read as an AES key followed by them, and
the trailing bytes are not used (GCM has its own nonce).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from typing import Any

from toto.exceptions import ERROR_INVALID_SESSION_ID, TotoException

__all__ = ["AESCipher", "ClientCache"]

HMAC_ALGORITHM = hashlib.sha1
HMAC_SIZE = HMAC_ALGORITHM().digest_size
_NONCE_SIZE = 12


def _bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


class AESCipher:
    """AES-GCM with a fixed key: ``encrypt(data)`` and ``decrypt(data)`` on bytes, reusable
    and thread safe."""

    block_size = 16

    def __init__(self, key: str | bytes, iv: str | bytes | None = None) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = _bytes(key)
        if iv is None and len(raw) in (32, 40, 48):
            raw = raw[: -self.block_size]
        if len(raw) not in (16, 24, 32):
            raise ValueError("an AES key is 16, 24 or 32 bytes (optionally followed by the original's 16-byte iv)")
        self._aead = AESGCM(raw)

    def encrypt(self, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, data, None)

    def decrypt(self, data: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(data[:_NONCE_SIZE], data[_NONCE_SIZE:], None)
        except (InvalidTag, ValueError):
            raise TotoException(ERROR_INVALID_SESSION_ID, "Invalid session") from None


class ClientCache:
    """A session cache that keeps each session's data, encrypted, in its id (the client
    carries it). Keep session state small: it travels with every request. ``cipher`` has
    ``encrypt(bytes)`` and ``decrypt(bytes)`` and must be the same on every server."""

    def __init__(self, cipher: Any, hmac_key: str | bytes) -> None:
        self.cipher = cipher
        self.hmac_key = _bytes(hmac_key)

    def hmac(self, data: bytes) -> bytes:
        return hmac.new(self.hmac_key, data, HMAC_ALGORITHM).digest()

    def store_session(self, session_data: dict[str, Any]) -> str:
        """The new session id that holds ``session_data`` (its own ``session_id`` is left out)."""
        persisted = {k: v for k, v in session_data.items() if k != "session_id"}
        encrypted = self.cipher.encrypt(json.dumps(persisted, separators=(",", ":")).encode("utf-8"))
        return base64.urlsafe_b64encode(encrypted + self.hmac(encrypted)).decode("ascii")

    def load_session(self, session_id: str) -> dict[str, Any]:
        """The data ``store_session`` put in ``session_id``; a forged or damaged id is 1007."""
        try:
            raw = base64.urlsafe_b64decode(_bytes(session_id))
        except ValueError:
            raise TotoException(ERROR_INVALID_SESSION_ID, "Invalid session") from None
        encrypted, mac = raw[:-HMAC_SIZE], raw[-HMAC_SIZE:]
        if len(raw) <= HMAC_SIZE or not hmac.compare_digest(self.hmac(encrypted), mac):
            raise TotoException(ERROR_INVALID_SESSION_ID, "Invalid session")
        data = json.loads(self.cipher.decrypt(encrypted))
        if not isinstance(data, dict):
            raise TotoException(ERROR_INVALID_SESSION_ID, "Invalid session")
        data["session_id"] = session_id
        return data

    def remove_session(self, session_id: str) -> None:
        """Nothing to remove: the client holds the session."""
