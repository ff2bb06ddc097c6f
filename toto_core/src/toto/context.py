"""What a method receives as ``handler``, and what the invocation and request hooks receive:
one ``CallContext``, whichever face the call came in by.

An HTTP request (``toto.handler.TotoHandler``), one entry of its batch
(``toto.handler.BatchEntry``), a socket call (``toto.websocket.SocketCall``) and one entry
of a socket batch (``toto.websocket.SocketBatchEntry``) each implement it. The seed surface
(``get_argument``, cookies, ``redirect``...: ``toto.original.seed``) is HTTP's on top of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import asyncio

    from toto.original.seed import DBConnection
    from toto.server import TotoServer
    from toto.sessions import Session


class CallContext(Protocol):
    """One call as its method (and a hook) sees it."""

    #: The session the call runs with (None: none, or it failed to load or verify); a method
    #: that signs in or out sets it (``create_session``; ``None`` after a logout).
    session: Session | None
    #: The call's reply while a callback-style method has not answered (``respond`` settles it).
    pending_reply: asyncio.Future[Any] | None

    @property
    def headers_only(self) -> bool:
        """HEAD: the answer carries headers only."""
        ...

    @property
    def server(self) -> TotoServer:
        """The serving ``TotoServer`` (options, storage, sessions, authenticator...)."""
        ...

    @property
    def request(self) -> Any:
        """The HTTP request (``HTTPServerRequest``'s shape); a socket call's: its handshake."""
        ...

    @property
    def connection(self) -> Any:
        """The storage connection (``connection.db``: the storage's native client)."""
        ...

    @property
    def db_connection(self) -> DBConnection:
        """The original's account and session calls (``toto.dbconnection``)."""
        ...

    def respond(self, result: Any = None, error: Any = None) -> None:
        """Answer a callback-style call: ``result``, or ``error``."""
        ...

    def respond_raw(self, body: bytes | str, content_type: str, finish: bool = True) -> None:
        """Answer with ``body`` as is (HTTP requests only: elsewhere it raises 1000)."""
        ...

    def create_session(
        self, user_id: str | None = None, password: str | None = None, verify_password: bool = True
    ) -> Session:
        """A new session for ``user_id``, the call's from now on: usable at once, and awaitable."""
        ...

    def register_event_handler(
        self, event_name: str, handler: Any, run_on_main_loop: bool = True, deregister_on_finish: bool = False
    ) -> Any:
        """Call ``handler(data)`` on the next event ``event_name`` while the call's client is there."""
        ...

    def deregister_event_handler(self, sig: Any) -> None: ...
