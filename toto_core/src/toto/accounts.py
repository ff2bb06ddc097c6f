"""Accounts: password hashing, user id rules, login throttling and the built-in account methods."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

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
    from toto.storage import Storage

T = TypeVar("T")

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


class PasswordHasher:
    """Hashes and checks passwords on ``concurrency`` threads of their own, with at most
    ``queue`` more waiting; beyond that a call answers 1014 at once.

    scrypt costs tens of milliseconds of CPU and 16 MiB by design: without a bound, a
    burst of logins (or one batch of them) would queue seconds of work and memory
    behind every other request of the process.
    """

    def __init__(self, cost: int, concurrency: int, queue: int) -> None:
        self.cost = cost
        self.concurrency = max(1, concurrency)
        self.queue = max(0, queue)
        self._pending = 0
        self._executor: ThreadPoolExecutor | None = None
        self._dummy: str | None = None

    async def _run(self, work: Callable[..., T], *args: Any) -> T:
        if self._pending >= self.concurrency + self.queue:
            raise TotoException(ERROR_TOO_MANY_LOGINS, "The server is busy checking passwords; try again shortly.")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="toto-password")
        self._pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._pending -= 1

    async def hash(self, password: str) -> str:
        return await self._run(hash_password_sync, password, self.cost)

    async def verify(self, password: str, stored: str | None) -> bool:
        """Whether ``password`` matches ``stored``; None (an unknown user) costs the same and is False."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash("dummy password")
            await self._run(verify_password_sync, password, self._dummy)
            return False
        return await self._run(verify_password_sync, password, stored)


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


def _digest(*parts: str) -> str:
    """A fixed-length storage key part for text a client chose (user ids, addresses)."""
    return hashlib.blake2b("\0".join(parts).encode("utf-8"), digest_size=16).hexdigest()


class LoginLimiter:
    """The login policy, counted in the storage so that every process and server of a
    deployment shares one count (see SECURITY.md).

    - Per user id and client address: at most ``attempts`` failed logins per ``window``.
      The attempt is counted before the password is hashed, so guesses sent at once
      (concurrent requests, batch entries) are counted before any is checked; a login
      that succeeds gives its attempt back.
    - Per user id over all addresses (``user_attempts``) and per address over all user
      ids (``address_attempts``): slower backstops against guessing from many addresses
      and against trying many users from one. Over them, only an address that signed
      this user in within ``trust`` seconds gets through, so an attacker's failures
      never lock out the right password from a client that did not fail.
    """

    def __init__(
        self, attempts: int, window: float, user_attempts: int = 100, address_attempts: int = 100, trust: float = 0
    ) -> None:
        self.attempts = attempts
        self.window = window
        self.user_attempts = user_attempts
        self.address_attempts = address_attempts
        self.trust = trust

    async def begin(self, storage: Storage, user_id: str, address: str) -> LoginAttempt:
        """Count one attempt of ``user_id`` from ``address``, or raise 1014 when it is over a limit."""
        attempt = LoginAttempt(self, storage, user_id, address)
        if self.attempts <= 0:
            return attempt
        window = self.window
        if await storage.increment(attempt.pair_key, window) > self.attempts:
            raise _too_many()
        attempt.counted.append(attempt.pair_key)
        by_user, by_address = await asyncio.gather(
            storage.increment(attempt.user_key, window), storage.increment(attempt.address_key, window)
        )
        attempt.counted += [attempt.user_key, attempt.address_key]
        over = (self.user_attempts > 0 and by_user > self.user_attempts) or (
            self.address_attempts > 0 and by_address > self.address_attempts
        )
        if over and not (self.trust > 0 and await storage.increment(attempt.trust_key, self.trust, 0) > 0):
            await attempt.give_back()  # refused before any password was tried: it is no failure
            raise _too_many()
        return attempt


class LoginAttempt:
    """One counted login attempt: ``succeeded()`` gives it back and trusts the address."""

    def __init__(self, limiter: LoginLimiter, storage: Storage, user_id: str, address: str) -> None:
        self.limiter = limiter
        self.storage = storage
        self.pair_key = "login:pair:" + _digest(user_id, address)
        self.trust_key = "login:trust:" + _digest(user_id, address)
        self.user_key = "login:user:" + _digest(user_id)
        self.address_key = "login:address:" + _digest(address)
        self.counted: list[str] = []

    async def give_back(self) -> None:
        counted, self.counted = self.counted, []
        if counted:
            window = self.limiter.window
            await asyncio.gather(*(self.storage.increment(key, window, -1) for key in counted))

    async def succeeded(self) -> None:
        await self.give_back()
        if self.limiter.trust > 0 and self.limiter.attempts > 0:
            await self.storage.increment(self.trust_key, self.limiter.trust)


def _too_many() -> TotoException:
    return TotoException(ERROR_TOO_MANY_LOGINS, "Too many failed logins; try again later.")


def count_password_call(handler: Any) -> None:
    """Allow at most ``max_batch_logins`` password checks (login, create, update) per HTTP
    request, so one batch cannot carry a hundred guesses; raise 1014 beyond it."""
    request_handler = getattr(handler, "handler", handler)  # a batch entry's own handler
    calls = request_handler.__dict__.get("_password_calls", 0) + 1
    request_handler.__dict__["_password_calls"] = calls
    limit = request_handler.server.max_batch_logins
    if calls > limit:
        raise TotoException(
            ERROR_TOO_MANY_LOGINS, f"At most {limit} account.login, account.create or account.update per request."
        )


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
    count_password_call(handler)
    server = handler.server
    password_hash = await server.passwords.hash(password)
    try:
        await server.storage.create_account(user_id, password_hash, fields)
    except DuplicateAccount:
        raise TotoException(ERROR_USER_ID_EXISTS, "User ID already in use.") from None
    await handler.create_session(user_id)
    return _session_answer(handler)


async def login(handler: TotoHandler, parameters: Any) -> dict[str, Any]:
    parameters, user_id, password = _credentials(parameters)
    count_password_call(handler)
    server = handler.server
    attempt = await server.login_limiter.begin(server.storage, user_id, handler.request.remote_ip or "")
    account = await server.storage.get_account(user_id)
    # An unknown user costs a hash too, so both failures take the same time.
    if not await server.passwords.verify(password, account.password_hash if account else None):
        raise TotoException(ERROR_USER_NOT_FOUND, "Invalid user ID or password")
    await attempt.succeeded()
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
    count_password_call(handler)
    attempt = await server.login_limiter.begin(server.storage, session.user_id, handler.request.remote_ip or "")
    account = await server.storage.get_account(session.user_id)
    if not await server.passwords.verify(password, account.password_hash if account else None):
        raise TotoException(ERROR_USER_NOT_FOUND, "Invalid user ID or password")
    await attempt.succeeded()
    updated: list[str] = []
    new_hash = None
    if "new_password" in parameters:
        new_hash = await server.passwords.hash(_password(parameters, "new_password"))
        updated.append("password")
    updated.extend(sorted(fields))
    if new_hash is not None or fields:
        await server.storage.update_account(session.user_id, password_hash=new_hash, fields=fields or None)
    if new_hash is not None:
        # A changed password ends every other session of the user.
        await server.storage.delete_user_sessions(session.user_id, keep=session.session_id)
    return {"updated_fields": updated}
