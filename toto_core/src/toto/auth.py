"""The interface of request signing schemes (``hmac_mode``); the schemes live in ``toto.signing``."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from toto.handler import TotoHandler
    from toto.sessions import Session


class Authenticator:
    """Verifies requests that name a session and signs responses that carry one."""

    #: Response headers the browser must be allowed to read (CORS expose list).
    expose_headers: ClassVar[tuple[str, ...]] = ("x-toto-hmac",)
    #: Whether sessions get a private signing key (returned to the client at login).
    uses_session_key: ClassVar[bool] = False

    def verify_request(self, handler: TotoHandler, session: Session, body: bytes) -> Awaitable[None] | None:
        """Raise ``TotoException`` (1008, or 1015 for an expired or replayed signature)
        when the request is not signed by the session's holder. A check that needs the
        storage (the deployment's replay cache) returns an awaitable that raises instead."""

    def sign_response(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        """Set the signature headers of a response that carries ``session``."""
