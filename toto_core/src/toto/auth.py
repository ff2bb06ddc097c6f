"""The interface of request signing schemes (``hmac_mode``); the core's schemes live in ``toto.signing``.

A scheme has two halves that must agree: the server half verifies requests and signs
answers, the client half (used by ``toto.client``) signs requests and verifies
answers. Each half serves both faces of a call: an HTTP request (headers over the
exact body) and a socket message (an ``"hmac"`` member over the exact frame without
it, PROTOCOL.md section 9). A plugin offers a scheme through ``toto_register_authenticators``; once
installed, ``--hmac_mode=<its name>`` selects it on the server, and
``TotoClient(url, hmac_mode=<its name>)`` on the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from toto.exceptions import ERROR_INVALID_HMAC, TotoException

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from toto.handler import TotoHandler
    from toto.options import Options
    from toto.sessions import Session

#: A session as a client knows it: what the server answered (``session_id``, ``user_id``,
#: ``expires``) plus ``key`` when the login gave the session a signing key.
ClientSession = Mapping[str, Any]


class Authenticator:
    """Signs and checks the requests and answers of one ``hmac_mode``.

    Server half: ``verify_request`` and ``sign_response`` (HTTP), ``verify_message``
    (socket calls). Client half: ``sign_request`` and ``verify_response`` (HTTP),
    ``prepare_message`` and ``sign_message`` (socket calls). ``add_options`` and
    ``configure`` let a scheme have options of its own. Over HTTP the base class signs
    nothing and checks nothing (``hmac_mode=off``); on sockets it refuses every call that
    needs a session until the scheme says how it checks them (``verify_message``), so a
    scheme written for HTTP alone never lets unsigned socket calls through.
    """

    #: Response headers the browser must be allowed to read (CORS expose list).
    expose_headers: ClassVar[tuple[str, ...]] = ("x-toto-hmac",)
    #: Whether sessions get a private signing key (returned to the client at login as ``key``).
    uses_session_key: ClassVar[bool] = False
    #: Whether a request with neither body nor signature may name a session by parameter
    #: (``@authenticated_with_parameter``: links and ``<script>`` tags cannot send headers),
    #: unchecked; only for a scheme whose key is no secret.
    unsigned_links: ClassVar[bool] = False

    # -- options ----------------------------------------------------------------------
    def add_options(self, options: Options) -> None:
        """Define this scheme's options with ``options.define(...)``.

        Called once for every installed scheme while options are parsed, so they appear
        in ``--help`` and may be set in a config file whichever scheme is selected.
        """

    def configure(self, options: Options) -> None:
        """Called once at startup, when this scheme is the selected ``hmac_mode``, with the
        parsed options."""

    # -- the server half ----------------------------------------------------------------
    def verify_request(self, handler: TotoHandler, session: Session, body: bytes) -> Awaitable[None] | None:
        """Raise ``TotoException`` (1008, or 1015 for an expired or replayed signature)
        when the request is not signed by the session's holder. A check that needs the
        storage (the deployment's replay cache) returns an awaitable that raises instead."""

    def sign_response(self, handler: TotoHandler, session: Session, body: bytes) -> None:
        """Set the signature headers of a response that carries ``session``."""

    def verify_message(
        self, call: Any, session: Session, message: Mapping[str, Any], signed: bytes, signature: str | None
    ) -> Awaitable[None] | None:
        """Raise ``TotoException`` (1008, or 1015 for an expired or replayed signature)
        when a socket call naming ``session`` is not signed by its holder.

        ``message`` is the decoded call; ``signature`` its ``"hmac"`` member (None when it
        has none) and ``signed`` the exact bytes it covers: the frame without that member
        (README "WebSockets"). ``call`` is the call being served (``call.server`` reaches
        the storage). Like ``verify_request``, a check that needs the storage returns an
        awaitable that raises instead."""
        raise TotoException(ERROR_INVALID_HMAC, "This server's hmac_mode does not sign socket messages.")

    # -- the client half ----------------------------------------------------------------
    def sign_request(self, session: ClientSession, method: str, target: str, body: bytes) -> dict[str, str]:
        """The headers that sign a request of ``session``: HTTP ``method``, request
        ``target`` (path and query exactly as sent) and the exact ``body`` bytes."""
        return {}

    def verify_response(self, session: ClientSession, headers: Mapping[str, str], body: bytes) -> None:
        """Raise ``TotoException`` with code 1009 when an answer carrying ``session`` is not
        signed for it (``headers`` are the answer's, looked up case-insensitively)."""

    def prepare_message(self, session: ClientSession, message: dict[str, Any]) -> dict[str, Any]:
        """The socket call ``message`` of ``session`` with any member the signature needs
        inside the signed text (``session_key``: ``timestamp``); the base class adds none."""
        return message

    def sign_message(self, session: ClientSession, message: Mapping[str, Any], signed: bytes) -> str | None:
        """The ``"hmac"`` member (base64) of the socket call ``message`` (as
        ``prepare_message`` left it) of ``session``, whose frame without that member is
        ``signed``; None sends the call unsigned (the base class)."""
        return None
