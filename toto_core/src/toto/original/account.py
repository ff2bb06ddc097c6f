"""The original's ``session.get_account()``: an account's own fields, as a dict proxy.

``handler.session.get_account()`` returns a ``TotoAccount`` of the session's user. Its
fields are what ``account.create`` stored beside the password (``additional_values``)
and what ``save()`` wrote since. As in the original, ``account[name]`` reads a field (None
when missing), ``account[name] = value`` sets one and ``account.save()`` writes the set
ones to the storage; the password is not among them.

The original read each field from the database when it was first read. Ours reads them
all once, when the account is awaited: ``account = await handler.session.get_account()``
before reading, from an ``async def`` method. Setting fields and ``save()`` need no
await: the write starts at once and the answer waits for it, as for ``session.save()``.
Reading an account that was not awaited raises (1000, saying so).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any

from toto.exceptions import ERROR_NOT_AUTHORIZED, ERROR_SERVER, TotoException

if TYPE_CHECKING:
    from toto.sessions import Session


class TotoAccount:
    """The fields of the account of ``session``'s user."""

    def __init__(self, session: Session) -> None:
        if session.user_id is None:
            raise TotoException(ERROR_NOT_AUTHORIZED, "An anonymous session has no account.")
        self._session = session
        self.user_id: str = session.user_id
        self._fields: dict[str, Any] | None = None
        self._modified: dict[str, Any] = {}

    def __await__(self) -> Generator[Any, None, TotoAccount]:
        return self._load().__await__()

    async def _load(self) -> TotoAccount:
        record = await self._session._manager.storage.get_account(self.user_id)
        self._fields = dict(record.fields) if record is not None else {}
        return self

    def _read(self) -> dict[str, Any]:
        if self._fields is None:
            raise TotoException(
                ERROR_SERVER,
                "Read an account's fields after loading them: account = await handler.session.get_account()",
            )
        return {**self._fields, **self._modified}

    def __getitem__(self, key: str) -> Any:
        if key in self._modified:
            return self._modified[key]
        return self._read().get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self._modified[key] = value

    def __contains__(self, key: object) -> bool:
        return key in self._modified or key in self._read()

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def get(self, key: str, default: Any = None) -> Any:
        return self._read().get(key, default)

    def save(self) -> asyncio.Future[None]:
        """Write the fields set since the last save; the answer waits for the write."""
        changed, self._modified = self._modified, {}
        if self._fields is not None:
            self._fields.update(changed)
        session = self._session
        storage = session._manager.storage
        previous = session._pending

        async def write() -> None:
            if previous is not None:
                await asyncio.shield(previous)
            if changed:
                await storage.update_account(self.user_id, fields=changed)

        # Chained on the session's writes, which the answer waits for (Session.flush).
        session._pending = asyncio.ensure_future(write())
        return session._pending

    def __repr__(self) -> str:
        return f"TotoAccount({self.user_id!r})"
