"""Accounts: password hashing, user id rules, login throttling and the built-in account methods."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from toto.exceptions import (
    ERROR_MISSING_PARAMS,
    ERROR_SERVICE_UNAVAILABLE,
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


#: Who asks for a hash: the keys it shares hashing capacity under (``hashing_keys``).
Claimant = tuple[str, ...]
#: The share of hashes asked for without naming a claimant (an application's own calls).
UNNAMED: Claimant = ("unnamed",)


def hashing_keys(address: str, user_id: str | None = None) -> Claimant:
    """The shares of one password call: its client address and, when it names one, its account."""
    return ("address:" + address,) if user_id is None else ("address:" + address, "account:" + user_id)


def _busy() -> TotoException:
    return TotoException(
        ERROR_SERVICE_UNAVAILABLE, "The server is busy checking passwords; the call did not run: retry shortly."
    )


class _Turn:
    """One password call waiting for a hashing thread."""

    __slots__ = ("claimant", "future", "granted")

    def __init__(self, claimant: Claimant, future: asyncio.Future[None]) -> None:
        self.claimant = claimant
        self.future = future
        self.granted = False


class PasswordHasher:
    """Hashes and checks passwords on ``concurrency`` threads of their own, shared fairly
    between the clients that ask, with at most ``queue`` calls waiting.

    scrypt costs tens of milliseconds of CPU and 16 MiB by design, so the threads are a
    scarce resource a flood could take whole. Each call names its claimant (its client
    address and the account it is for, ``hashing_keys``) and capacity goes by share, not
    by arrival:

    - a free thread goes to the waiting call whose address and account have the fewest
      hashes running, the oldest among equals; one client address alone still gets every
      thread (nothing idles while someone waits);
    - when the queue is full, a newcomer lighter than the heaviest claimant (running and
      waiting, by address or account) takes the place of that claimant's newest waiting
      call, which is answered 1013; otherwise the newcomer is.

    So a flood from one address (or aimed at one account) delays others by at most about
    one hash, and only a server whose queue is full of fair shares refuses: with 1013
    (HTTP 503, Retry-After), the retryable "busy", never 1014, which means locked out.
    Counting what an address may ask for over time is the login policy's job
    (``LoginLimiter``), deployment-wide; this is one process's capacity.
    """

    def __init__(self, cost: int, concurrency: int, queue: int) -> None:
        self.cost = cost
        self.concurrency = max(1, concurrency)
        self.queue = max(0, queue)
        self._executor: ThreadPoolExecutor | None = None
        self._dummy: str | None = None
        self._running = 0
        #: key -> hashes running for it
        self._running_by: dict[str, int] = {}
        #: key -> hashes running or waiting for it
        self._load: dict[str, int] = {}
        self._waiting: list[_Turn] = []

    # -- the fair share ------------------------------------------------------------
    def _add(self, counts: dict[str, int], claimant: Claimant, amount: int) -> None:
        for key in claimant:
            value = counts.get(key, 0) + amount
            if value:
                counts[key] = value
            else:
                del counts[key]

    def _weight(self, claimant: Claimant) -> int:
        load = self._load
        return max(load.get(key, 0) for key in claimant)

    def _start(self, claimant: Claimant) -> None:
        self._running += 1
        self._add(self._running_by, claimant, 1)

    async def _acquire(self, claimant: Claimant) -> None:
        if self._running < self.concurrency and not self._waiting:
            self._add(self._load, claimant, 1)
            self._start(claimant)
            return
        if len(self._waiting) >= self.queue:
            self._make_room(claimant)
        turn = _Turn(claimant, asyncio.get_running_loop().create_future())
        self._waiting.append(turn)
        self._add(self._load, claimant, 1)
        try:
            await turn.future
        except BaseException:
            if turn.granted:  # given a thread as it was cancelled: pass the thread on
                self._release(claimant)
            elif turn in self._waiting:
                self._waiting.remove(turn)
                self._add(self._load, claimant, -1)
            raise

    def _make_room(self, claimant: Claimant) -> None:
        """A full queue: the newcomer replaces the heaviest claimant's newest waiting call, or is refused."""
        heaviest: _Turn | None = None
        heaviest_weight = -1
        for turn in self._waiting:
            weight = self._weight(turn.claimant)
            if weight >= heaviest_weight:
                heaviest, heaviest_weight = turn, weight
        if heaviest is None or heaviest_weight <= self._weight(claimant) + 1:
            raise _busy()
        self._waiting.remove(heaviest)
        self._add(self._load, heaviest.claimant, -1)
        if not heaviest.future.done():  # (a cancelled one is gone already)
            heaviest.future.set_exception(_busy())

    def _release(self, claimant: Claimant) -> None:
        self._running -= 1
        self._add(self._running_by, claimant, -1)
        self._add(self._load, claimant, -1)
        while self._waiting and self._running < self.concurrency:
            running_by = self._running_by
            best = min(
                range(len(self._waiting)),
                key=lambda i: max(running_by.get(k, 0) for k in self._waiting[i].claimant),
            )
            turn = self._waiting.pop(best)
            if turn.future.done():  # cancelled while it waited
                self._add(self._load, turn.claimant, -1)
                continue
            turn.granted = True
            self._start(turn.claimant)
            turn.future.set_result(None)

    async def _run(self, claimant: Claimant, work: Callable[..., T], *args: Any) -> T:
        await self._acquire(claimant)
        try:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="toto-password")
            return await asyncio.get_running_loop().run_in_executor(self._executor, work, *args)
        finally:
            self._release(claimant)

    # -- the API -----------------------------------------------------------------------
    async def hash(self, password: str, claimant: Claimant = UNNAMED) -> str:
        """A new salted hash of ``password``; ``claimant`` names whose share it takes (``hashing_keys``)."""
        return await self._run(claimant, hash_password_sync, password, self.cost)

    async def verify(self, password: str, stored: str | None, claimant: Claimant = UNNAMED) -> bool:
        """Whether ``password`` matches ``stored``; None (an unknown user) costs the same and is False."""
        if stored is None:
            if self._dummy is None:
                self._dummy = await self.hash("dummy password", claimant)
            await self._run(claimant, verify_password_sync, password, self._dummy)
            return False
        return await self._run(claimant, verify_password_sync, password, stored)


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
      never lock out the right password from a client that did not fail. A create that
      finds its user id taken (1006) tells its client that the account exists, so it
      counts as a failure of its address too, and the oracle is as slow as guessing.
    - Per address, every password call, successful or not (``address_calls``): creates,
      logins and updates cost a hash each, so one address may ask for that many per
      window and no more (a login from an address trusted for its user still passes).
    """

    def __init__(
        self,
        attempts: int,
        window: float,
        user_attempts: int = 100,
        address_attempts: int = 100,
        trust: float = 0,
        address_calls: int = 0,
    ) -> None:
        self.attempts = attempts
        self.window = window
        self.user_attempts = user_attempts
        self.address_attempts = address_attempts
        self.trust = trust
        self.address_calls = address_calls

    async def begin(self, storage: Storage, user_id: str, address: str) -> LoginAttempt:
        """Count one attempt of ``user_id`` from ``address``, or raise 1014 when it is over a limit."""
        attempt = LoginAttempt(self, storage, user_id, address)
        await self._count_call(attempt, trusted_escape=True)
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
        if over and not await attempt.trusted():
            await attempt.give_back()  # refused before any password was tried: it is no failure
            raise _too_many()
        return attempt

    async def begin_create(self, storage: Storage, address: str) -> LoginAttempt:
        """Count one account.create from ``address`` (a call, and a failure of the address until
        ``give_back``), or raise 1014 when it is over a limit."""
        attempt = LoginAttempt(self, storage, "", address)
        await self._count_call(attempt, trusted_escape=False)
        if self.attempts <= 0 or self.address_attempts <= 0:
            return attempt
        attempt.counted.append(attempt.address_key)
        if await storage.increment(attempt.address_key, self.window) > self.address_attempts:
            await attempt.give_back()
            raise _too_many()
        return attempt

    async def _count_call(self, attempt: LoginAttempt, trusted_escape: bool) -> None:
        if self.address_calls <= 0:
            return
        calls = await attempt.storage.increment(attempt.calls_key, self.window)
        attempt.call_counted = True
        if calls > self.address_calls and not (trusted_escape and await attempt.trusted()):
            raise _too_many("Too many account calls from this address; try again later.")


class LoginAttempt:
    """One counted login attempt: ``succeeded()`` gives it back and trusts the address."""

    def __init__(self, limiter: LoginLimiter, storage: Storage, user_id: str, address: str) -> None:
        self.limiter = limiter
        self.storage = storage
        self.pair_key = "login:pair:" + _digest(user_id, address)
        self.trust_key = "login:trust:" + _digest(user_id, address)
        self.user_key = "login:user:" + _digest(user_id)
        self.address_key = "login:address:" + _digest(address)
        self.calls_key = "login:calls:" + _digest(address)
        self.counted: list[str] = []
        self.call_counted = False

    async def trusted(self) -> bool:
        """Whether this address signed this user in within the trust period."""
        trust = self.limiter.trust
        return trust > 0 and await self.storage.increment(self.trust_key, trust, 0) > 0

    async def give_back(self) -> None:
        counted, self.counted = self.counted, []
        if counted:
            window = self.limiter.window
            await asyncio.gather(*(self.storage.increment(key, window, -1) for key in counted))

    async def checked(self, work: Awaitable[T]) -> T:
        """Await ``work`` (the hash this attempt is for). When the hasher is too busy to run it
        (1013: the call did not run and may be sent again), nothing stays counted, the call
        included: a client retrying a busy server must not lock itself out."""
        try:
            return await work
        except TotoException as exc:
            if exc.code == ERROR_SERVICE_UNAVAILABLE:
                if self.call_counted:
                    self.call_counted = False
                    self.counted.append(self.calls_key)
                await self.give_back()
            raise

    async def succeeded(self) -> None:
        await self.give_back()
        if self.limiter.trust > 0 and self.limiter.attempts > 0:
            await self.storage.increment(self.trust_key, self.limiter.trust)


def _too_many(reason: str = "Too many failed logins; try again later.") -> TotoException:
    return TotoException(ERROR_TOO_MANY_LOGINS, reason)


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


def _form_values(handler: TotoHandler, parameters: Any) -> Any:
    """A urlencoded form gives each field as a list of its values (the original's shape); the
    account methods read one value per field: the last one given."""
    if getattr(handler, "text_parameters", False) and isinstance(parameters, dict):  # sockets send no forms
        return {k: v[-1] if isinstance(v, list) and v else v for k, v in parameters.items()}
    return parameters


def _credentials(parameters: Any) -> tuple[dict[str, Any], str, str]:
    """The parameters, the normalized user id and the password of a create or login call."""
    if not isinstance(parameters, dict):
        raise TotoException(ERROR_MISSING_PARAMS, "Missing parameters: user_id, password")
    if "user_id" not in parameters:
        raise TotoException(ERROR_MISSING_PARAMS, "Missing parameters: user_id")
    return parameters, normalize_user_id(parameters["user_id"]), _password(parameters)


async def create(handler: TotoHandler, parameters: Any) -> dict[str, Any]:
    parameters, user_id, password = _credentials(_form_values(handler, parameters))
    fields = _fields(parameters)
    count_password_call(handler)
    server = handler.server
    address = handler.request.remote_ip or ""
    attempt = await server.login_limiter.begin_create(server.storage, address)
    password_hash = await attempt.checked(server.passwords.hash(password, hashing_keys(address, user_id)))
    try:
        await server.storage.create_account(user_id, password_hash, fields)
    except DuplicateAccount:
        raise TotoException(ERROR_USER_ID_EXISTS, "User ID already in use.") from None
    await attempt.give_back()
    await handler.create_session(user_id)
    return _session_answer(handler)


async def login(handler: TotoHandler, parameters: Any) -> dict[str, Any]:
    parameters, user_id, password = _credentials(_form_values(handler, parameters))
    count_password_call(handler)
    server = handler.server
    address = handler.request.remote_ip or ""
    attempt = await server.login_limiter.begin(server.storage, user_id, address)
    account = await server.storage.get_account(user_id)
    # An unknown user costs a hash too, so both failures take the same time.
    stored = account.password_hash if account else None
    if not await attempt.checked(server.passwords.verify(password, stored, hashing_keys(address, user_id))):
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
    parameters = _form_values(handler, parameters)
    if not isinstance(parameters, dict):
        parameters = {}
    session = handler.session
    assert session is not None and session.user_id is not None
    server = handler.server
    password = _password(parameters)
    fields = _fields(parameters)
    count_password_call(handler)
    address = handler.request.remote_ip or ""
    claimant = hashing_keys(address, session.user_id)
    attempt = await server.login_limiter.begin(server.storage, session.user_id, address)
    account = await server.storage.get_account(session.user_id)
    if not await attempt.checked(
        server.passwords.verify(password, account.password_hash if account else None, claimant)
    ):
        raise TotoException(ERROR_USER_NOT_FOUND, "Invalid user ID or password")
    await attempt.succeeded()
    updated: list[str] = []
    new_hash = None
    if "new_password" in parameters:
        new_hash = await server.passwords.hash(_password(parameters, "new_password"), claimant)
        updated.append("password")
    updated.extend(sorted(fields))
    if new_hash is not None or fields:
        await server.storage.update_account(session.user_id, password_hash=new_hash, fields=fields or None)
    if new_hash is not None:
        # A changed password ends every other session of the user.
        await server.storage.delete_user_sessions(session.user_id, keep=session.session_id)
    return {"updated_fields": updated}
