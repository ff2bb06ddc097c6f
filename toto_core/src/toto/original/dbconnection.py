"""``handler.db_connection``: the original's account and session calls over Toto's storage.

The original's ``DBConnection`` blocked on its database; ours may not, so each call
starts its storage work at once and returns a ``Pending``: async code awaits it for the
value; sync code may ignore it, as seed code does (``handler.db_connection.
create_account(...)`` then ``handler.create_session(...)``). The calls of one request
run in the order they were made, and before the answer goes out the handler waits for
every one nobody awaited: the first failure among those is the answer.
"""

from __future__ import annotations

import asyncio
import secrets
import string
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from toto.accounts import RESERVED_FIELDS, count_password_call, hashing_keys
from toto.exceptions import ERROR_INVALID_USER_ID, ERROR_USER_ID_EXISTS, ERROR_USER_NOT_FOUND, TotoException
from toto.storage import DuplicateAccount
from toto.storage.checks import check_account_fields, normalize_user_id

if TYPE_CHECKING:
    from toto.handler import TotoHandler
    from toto.sessions import Session

T = TypeVar("T")

__all__ = ["DBConnection", "Pending"]


class Pending(Generic[T]):
    """A storage call under way: ``await`` it for its value (and its error)."""

    __slots__ = ("awaited", "task")

    def __init__(self, task: asyncio.Task[T]) -> None:
        self.task = task
        self.awaited = False

    def __await__(self) -> Generator[Any, None, T]:
        self.awaited = True
        return self.task.__await__()

    def __bool__(self) -> bool:
        # `if handler.db_connection.verify_password(...)` must not pass unawaited.
        raise TypeError("a storage call's value is known once awaited: use `await` in an async method")

    async def settled(self) -> None:
        """Wait for the call; raise its error unless the method awaited (and so saw) it."""
        await asyncio.wait([self.task])
        error = self.task.exception()
        if error is not None and not self.awaited:
            raise error


def _invalid_password() -> TotoException:
    return TotoException(ERROR_USER_NOT_FOUND, "Invalid user ID or password")


class DBConnection:
    """The original's ``handler.db_connection`` for one request (see the module docstring)."""

    def __init__(self, handler: TotoHandler) -> None:
        self._handler = handler
        #: Accounts this request created: logging in to one right after is one password call, not two.
        self._created: set[str] = set()

    @property
    def db(self) -> Any:
        """The storage's native client, as ``handler.db``."""
        return self._handler.db

    # -- ordering ----------------------------------------------------------------------
    def _queue(self, work: Callable[[], Awaitable[T]]) -> Pending[T]:
        handler = self._handler
        if handler.pending_work is None:
            handler.pending_work = []
        previous = handler.pending_work[-1] if handler.pending_work else None

        async def run() -> T:
            if previous is not None:
                await asyncio.wait([previous.task])
                error = previous.task.exception()
                # A failure the method did not see stops what it queued after it.
                if error is not None and not previous.awaited:
                    raise error
            return await work()

        pending: Pending[T] = Pending(asyncio.ensure_future(run()))
        handler.pending_work.append(pending)
        return pending

    def _claimant(self, user_id: str) -> tuple[str, ...]:
        return hashing_keys(self._handler.request.remote_ip or "", user_id)

    async def _check_password(self, user_id: str, password: Any) -> None:
        server = self._handler.server
        if not isinstance(password, str) or not password:
            raise _invalid_password()
        if user_id not in self._created:
            count_password_call(self._handler)
        attempt = await server.login_limiter.begin(server.storage, user_id, self._handler.request.remote_ip or "")
        account = await server.storage.get_account(user_id)
        stored = account.password_hash if account else None
        if not await attempt.checked(server.passwords.verify(password, stored, self._claimant(user_id))):
            raise _invalid_password()
        await attempt.succeeded()

    # -- accounts ----------------------------------------------------------------------
    def create_account(
        self, user_id: str, password: str, additional_values: dict[str, Any] | None = None, **values: Any
    ) -> Pending[None]:
        """Make an account (1002 when the user id is taken); extra fields as keywords."""
        if not user_id or not isinstance(user_id, str):
            raise TotoException(ERROR_INVALID_USER_ID, "Invalid user ID.")
        user_id = normalize_user_id(user_id)
        if not isinstance(password, str) or not password:
            raise TotoException(ERROR_USER_NOT_FOUND, "Invalid password")
        fields = {**values, **(additional_values or {})}
        fields = check_account_fields({k: v for k, v in fields.items() if k not in RESERVED_FIELDS})
        server = self._handler.server

        async def create() -> None:
            count_password_call(self._handler)
            attempt = await server.login_limiter.begin_create(server.storage, self._handler.request.remote_ip or "")
            password_hash = await attempt.checked(server.passwords.hash(password, self._claimant(user_id)))
            try:
                await server.storage.create_account(user_id, password_hash, fields)
            except DuplicateAccount:
                raise TotoException(ERROR_USER_ID_EXISTS, "User ID already in use.") from None
            await attempt.give_back()
            self._created.add(user_id)

        return self._queue(create)

    def verify_password(self, user_id: str, password: str) -> Pending[bool]:
        """Whether ``password`` is the account's (counted by the login policy)."""

        async def verify() -> bool:
            try:
                await self._check_password(normalize_user_id(user_id), password)
            except TotoException as exc:
                if exc.code == ERROR_USER_NOT_FOUND:
                    return False
                raise
            return True

        return self._queue(verify)

    def change_password(self, user_id: str, password: str, new_password: str) -> Pending[None]:
        """Check ``password`` and replace it; the user's other sessions end (1005 when wrong)."""
        user_id = normalize_user_id(user_id)
        server = self._handler.server

        async def change() -> None:
            await self._check_password(user_id, password)
            if not isinstance(new_password, str) or not new_password:
                raise TotoException(ERROR_USER_NOT_FOUND, "Invalid new password")
            new_hash = await server.passwords.hash(new_password, self._claimant(user_id))
            await server.storage.update_account(user_id, password_hash=new_hash)
            current = self._handler.session
            keep = current.session_id if current is not None and current.user_id == user_id else None
            await server.storage.delete_user_sessions(user_id, keep=keep)

        return self._queue(change)

    def generate_password(self, user_id: str) -> Pending[str]:
        """Give the account a new random password and answer it ("forgot password")."""
        user_id = normalize_user_id(user_id)
        server = self._handler.server
        alphabet = string.ascii_letters + string.digits

        async def generate() -> str:
            if await server.storage.get_account(user_id) is None:
                raise TotoException(ERROR_USER_NOT_FOUND, "Invalid user ID")
            new_password = "".join(secrets.choice(alphabet) for _ in range(16))
            new_hash = await server.passwords.hash(new_password, self._claimant(user_id))
            await server.storage.update_account(user_id, password_hash=new_hash)
            await server.storage.delete_user_sessions(user_id)
            return new_password

        return self._queue(generate)

    # -- sessions ----------------------------------------------------------------------
    def create_session(
        self, user_id: str | None = None, password: str | None = None, verify_password: bool = True
    ) -> Session:
        """A new session for ``user_id`` (None: anonymous), usable at once and
        awaitable. With a ``password`` (and ``verify_password``), the account's password
        is checked first (1005 when wrong); without one, the session is made as asked
        (a custom sign-in's)."""
        handler = self._handler
        server = handler.server
        session = server.sessions.new(user_id, server.authenticator.uses_session_key)
        record = session.record
        check = password is not None and verify_password and record.user_id is not None

        async def store() -> None:
            if check:
                assert record.user_id is not None
                await self._check_password(record.user_id, password)
            await server.storage.store_session(record)

        pending = self._queue(store)
        session.stored_by(pending)
        return session

    def retrieve_session(self, session_id: str) -> Pending[Session | None]:
        """The session ``session_id`` names, or None when it is unknown or expired."""
        sessions = self._handler.server.sessions

        async def load() -> Session | None:
            session = await sessions.load(session_id)
            if session is not None:
                sessions.release(session)
            return session

        return self._queue(load)

    def remove_session(self, session_id: str) -> Pending[None]:
        """End the session ``session_id`` (the request's own too: the answer then names none)."""
        handler = self._handler
        storage = handler.server.storage
        if handler.session is not None and handler.session.session_id == session_id:
            handler.session = None

        async def remove() -> None:
            await storage.delete_session(session_id)

        return self._queue(remove)

    def clear_sessions(self, user_id: str) -> Pending[None]:
        """End every session of ``user_id``."""
        storage = self._handler.server.storage
        user_id = normalize_user_id(user_id)

        async def clear() -> None:
            await storage.delete_user_sessions(user_id)

        return self._queue(clear)
