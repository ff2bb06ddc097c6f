"""Accounts: password hashing, user id rules, login throttling and the built-in account methods."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import time
from typing import TYPE_CHECKING, Any

from toto.exceptions import (
    ERROR_MISSING_PARAMS,
    ERROR_TOO_MANY_LOGINS,
    ERROR_USER_ID_EXISTS,
    ERROR_USER_NOT_FOUND,
    DuplicateAccount,
    TotoException,
)
from toto.storage.checks import check_account_fields, normalize_user_id

if TYPE_CHECKING:
    from toto.handler import TotoHandler

MAX_PASSWORD = 1024
#: Account fields a client may not set through create or update.
RESERVED_FIELDS = frozenset({"user_id", "password", "new_password", "password_hash"})
_SCRYPT_R, _SCRYPT_P = 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password_sync(password: str, cost: int = 14) -> str:
    """scrypt with a 16-byte random salt: ``scrypt$<log2 N>$r$p$salt$hash``."""
    salt = os.urandom(16)
    n = 1 << cost
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=256 * n * _SCRYPT_R, dklen=32
    )
    return f"scrypt${cost}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password: str, stored: str) -> bool:
    try:
        scheme, cost_s, r_s, p_s, salt_s, digest_s = stored.split("$")
        if scheme != "scrypt":
            return False
        n, r, p = 1 << int(cost_s), int(r_s), int(p_s)
        salt, expected = base64.b64decode(salt_s), base64.b64decode(digest_s)
    except (ValueError, TypeError):
        return False
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=len(expected))
    return hmac.compare_digest(digest, expected)


async def hash_password(password: str, cost: int) -> str:
    # scrypt takes tens of milliseconds by design: keep it off the event loop.
    hashed: str = await asyncio.get_running_loop().run_in_executor(None, hash_password_sync, password, cost)
    return hashed


async def verify_password(password: str, stored: str) -> bool:
    ok: bool = await asyncio.get_running_loop().run_in_executor(None, verify_password_sync, password, stored)
    return ok


def _password(parameters: dict[str, Any], name: str = "password") -> str:
    password = parameters.get(name)
    if not isinstance(password, str) or not password:
        raise TotoException(ERROR_MISSING_PARAMS, f"Missing parameters: {name}")
    if len(password) > MAX_PASSWORD:
        raise TotoException(ERROR_MISSING_PARAMS, f"{name} is longer than {MAX_PASSWORD} characters")
    return password


def _fields(parameters: dict[str, Any]) -> dict[str, Any]:
    """The account fields of a create or update call, once the core has checked that every storage can keep them."""
    return check_account_fields({k: v for k, v in parameters.items() if k not in RESERVED_FIELDS})


class LoginLimiter:
    """Counts failed logins per user id and per client address inside a sliding window.

    In-process: a deployment of many servers multiplies the allowance by their number.
    """

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts = attempts
        self.window = window
        self._failures: dict[str, list[float]] = {}

    def _recent(self, key: str, now: float) -> list[float]:
        stamps = [t for t in self._failures.get(key, ()) if now - t < self.window]
        if stamps:
            self._failures[key] = stamps
        else:
            self._failures.pop(key, None)
        return stamps

    def check(self, user_id: str, address: str) -> None:
        if self.attempts <= 0:
            return
        now = time.time()
        if len(self._recent("u:" + user_id, now)) >= self.attempts or (
            len(self._recent("a:" + address, now)) >= self.attempts * 10
        ):
            raise TotoException(ERROR_TOO_MANY_LOGINS, "Too many failed logins; try again later.")
        if len(self._failures) > 100_000:
            for key in list(self._failures):
                self._recent(key, now)

    def failed(self, user_id: str, address: str) -> None:
        now = time.time()
        self._failures.setdefault("u:" + user_id, []).append(now)
        self._failures.setdefault("a:" + address, []).append(now)

    def succeeded(self, user_id: str) -> None:
        self._failures.pop("u:" + user_id, None)


def _session_answer(handler: TotoHandler) -> dict[str, Any]:
    session = handler.session
    assert session is not None
    answer = session.to_response()
    if session.key:
        answer["key"] = session.key
    return answer


def _credentials(parameters: Any) -> tuple[dict[str, Any], str, str]:
    """The parameters, the normalized user id and the password of a create or login call."""
    if not isinstance(parameters, dict):
        raise TotoException(ERROR_MISSING_PARAMS, "Missing parameters: user_id, password")
    if "user_id" not in parameters:
        raise TotoException(ERROR_MISSING_PARAMS, "Missing parameters: user_id")
    return parameters, normalize_user_id(parameters["user_id"]), _password(parameters)


async def create(handler: TotoHandler, parameters: Any) -> dict[str, Any]:
    parameters, user_id, password = _credentials(parameters)
    fields = _fields(parameters)
    server = handler.server
    password_hash = await hash_password(password, server.options.password_cost)
    try:
        await server.storage.create_account(user_id, password_hash, fields)
    except DuplicateAccount:
        raise TotoException(ERROR_USER_ID_EXISTS, "User ID already in use.") from None
    await handler.create_session(user_id)
    return _session_answer(handler)


# Verified against when the user is unknown, so both failures cost the same time.
_DUMMY_HASH: str | None = None


async def login(handler: TotoHandler, parameters: Any) -> dict[str, Any]:
    global _DUMMY_HASH
    parameters, user_id, password = _credentials(parameters)
    server = handler.server
    address = handler.request.remote_ip or ""
    server.login_limiter.check(user_id, address)
    account = await server.storage.get_account(user_id)
    if account is None:
        if _DUMMY_HASH is None:
            _DUMMY_HASH = await hash_password("dummy password", server.options.password_cost)
        await verify_password(password, _DUMMY_HASH)
        ok = False
    else:
        ok = await verify_password(password, account.password_hash)
    if not ok:
        server.login_limiter.failed(user_id, address)
        raise TotoException(ERROR_USER_NOT_FOUND, "Invalid user ID or password")
    server.login_limiter.succeeded(user_id)
    await handler.create_session(user_id)
    return _session_answer(handler)


async def logout(handler: TotoHandler, parameters: Any) -> dict[str, Any]:
    session = handler.session
    if session is not None:
        await handler.server.storage.delete_session(session.session_id)
        handler.session = None
    return {"authenticated": False}


async def update(handler: TotoHandler, parameters: Any) -> dict[str, Any]:
    if not isinstance(parameters, dict):
        parameters = {}
    session = handler.session
    assert session is not None and session.user_id is not None
    server = handler.server
    password = _password(parameters)
    fields = _fields(parameters)
    account = await server.storage.get_account(session.user_id)
    if account is None or not await verify_password(password, account.password_hash):
        raise TotoException(ERROR_USER_NOT_FOUND, "Invalid user ID or password")
    updated: list[str] = []
    new_hash = None
    if "new_password" in parameters:
        new_hash = await hash_password(_password(parameters, "new_password"), server.options.password_cost)
        updated.append("password")
    updated.extend(sorted(fields))
    if new_hash is not None or fields:
        await server.storage.update_account(session.user_id, password_hash=new_hash, fields=fields or None)
    if new_hash is not None:
        # A changed password ends every other session of the user.
        await server.storage.delete_user_sessions(session.user_id, keep=session.session_id)
    return {"updated_fields": updated}
