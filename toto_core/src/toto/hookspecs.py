"""Every extension point of Toto, one hook a function.

Plugins are ordinary distributions that name a module in the entry-point group
``toto``; that module implements any of these hooks with ``@toto.hookimpl``. The
core's own built-ins (memory storage, JSON, the local event bus, the three signing
modes) are registered through these same hooks by ``toto.builtins``.

Registration hooks return what a plugin offers; the core merges the answers of all
plugins and picks by configuration. Two plugins offering the same name is a startup
error that names both. ``toto_default_storage`` is the one hook where the first
answer wins.

Every hook is called through pluggy, so ``TOTO_TRACE_HOOKS=1`` logs each call with
its arguments, who implements it and its result. A plugin that implements a name that
is not defined here (a typo such as ``toto_register_serializer``), or defines one of
these without ``@toto.hookimpl``, is a startup error naming the plugin and the hook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from toto.auth import Authenticator
    from toto.context import CallContext
    from toto.eventbus import EventBus
    from toto.http import Route, TransportSpec
    from toto.options import Options
    from toto.serializers import Serializer
    from toto.server import TotoServer
    from toto.storage import Storage

hookspec = pluggy.HookspecMarker("toto")


@hookspec
def toto_register_storage() -> dict[str, Callable[[Options], Storage]]:
    """Offer storage backends.

    Called once at startup. Return ``{name: factory}``; the server calls
    ``factory(options)`` for the backend named by the ``database`` option and
    awaits ``open()`` on the result before it serves. ``options.database_url``
    holds the URL the user gave, if any.
    """


@hookspec(firstresult=True)
def toto_default_storage() -> str | None:
    """Name the storage to use when the user gives no ``database`` option.

    Called once at startup. Return one of the names this plugin registers, or None.
    The first answer that is not None wins, in pluggy's order: implementations marked
    ``@toto.hookimpl(tryfirst=True)`` first, ``trylast=True`` last, the others from the
    plugin loaded last to the first. A fallback such as an embedded database that needs
    no setup answers with ``trylast=True`` (toto-sql does, naming ``sqlite``), so that
    any plugin with a more particular default wins. With no answer, the server uses
    ``memory``.
    """


@hookspec
def toto_register_serializers() -> list[Serializer]:
    """Offer wire serializers.

    Called once at startup. Return a list of ``toto.serializers.Serializer``
    objects; each names the content types it handles. A request's
    ``content-type`` picks its decoder, ``Accept`` may pick another encoder.
    Serializers with ``safe_for_state = True`` may also be chosen by the
    ``state_serializer`` option to store session state and event payloads, which
    are read back with their ``decode_state`` (no wire limits: stored data is
    never refused). ``decode`` holds the wire bound every serializer states,
    ``max_values`` (the ``max_body_values`` option, set by ``configure``): a
    message of more values is refused with 413 before it is decoded
    (``SerializerContract`` checks it).
    """


@hookspec
def toto_register_event_buses() -> dict[str, Callable[[Options], EventBus]]:
    """Offer event buses.

    Called once at startup. Return ``{name: factory}``; the ``event_bus`` option
    picks one and ``factory(options)`` builds it (``options.event_url`` holds the
    user's URL, if any).
    """


@hookspec
def toto_register_authenticators() -> dict[str, Authenticator]:
    """Offer request signing schemes.

    Called once at startup (and by ``toto.client`` to find the client half). Return
    ``{hmac_mode: toto.auth.Authenticator}``; the installed names are the choices of
    the ``hmac_mode`` option. Each scheme's ``add_options`` defines its own options;
    the selected one is ``configure``d with the parsed options, verifies requests that
    name a session and signs answers that carry one. Its client half signs requests
    and checks answers in ``TotoClient(url, hmac_mode=name)``.
    """


@hookspec
def toto_register_routes(server: TotoServer) -> list[Route]:
    """Offer fixed paths that are not method calls (a health check, metrics, a page).

    Called once at startup, after the options are read, with the server. Return a
    list of ``toto.http.Route``; each serves ``<root><path>`` for its HTTP verbs
    with a function of a ``toto.http.Request`` that returns a ``toto.http.Response``
    (or an awaitable of one). A route wins over a method of the same name; two
    plugins offering one path is a startup error that names both.
    """


@hookspec
def toto_register_transports() -> dict[str, TransportSpec]:
    """Offer HTTP faces (``--http``): ``{name: toto.http.TransportSpec}``.

    Called once at startup (and by ``toto serve --help`` for the choices). The installed
    names are the choices of the ``http`` option; the core registers ``tornado``,
    ``granian`` and ``uvicorn`` through this hook too. A face only frames: it hands each
    request to the one request path (see ``toto.http.TransportSpec``).
    """


@hookspec
def toto_add_options(options: Options) -> None:
    """Define plugin options with ``options.define(name, default, help=..., type=...)``.

    Called once while options are parsed, before the config file and the command
    line are read, so plugin options can be set in both and appear in ``--help``.
    """


@hookspec
def toto_startup(server: TotoServer) -> None:
    """Called once in each serving process after storage and the event bus are open,
    before the first request. May return an awaitable, which the server awaits."""


@hookspec
def toto_shutdown(server: TotoServer) -> None:
    """Called once in each serving process while it stops, before storage and the
    event bus close. May return an awaitable, which the server awaits."""


@hookspec
def toto_before_invoke(handler: CallContext, method: str, parameters: Any) -> None:
    """Called before each method invocation (each entry of a batch too), over HTTP and on
    sockets alike; ``handler`` is what the method receives (``toto.context.CallContext``).

    Only called when at least one plugin implements it, so it costs nothing
    otherwise. Raising ``TotoException`` refuses the call with that error.
    """


@hookspec
def toto_after_invoke(handler: CallContext, method: str, result: Any, error: Any) -> None:
    """Called after each method invocation with its result or its error dict.

    An unexpected exception arrives as the 1000 error its caller gets. An invocation
    cut short because its client went away gets no call here (``toto_request_finished``
    still comes, with status 499). Only called when at least one plugin implements
    this hook or ``toto_before_invoke``.
    """


@hookspec
def toto_request_started(handler: CallContext) -> None:
    """Called when a request for a method or a batch starts (not for routes); each socket
    message is one such request (``handler.request`` is then the socket's handshake).

    It runs in the request's own asyncio task, before the body is parsed, so a
    ``contextvars`` value set here (a tracing span, say) belongs to this request, its
    method calls and its batch entries, and nothing else. Only called when at least
    one plugin implements this hook or ``toto_request_finished``.
    """


@hookspec
def toto_request_finished(
    handler: CallContext, method: str | None, batch: int | None, status: int, error: Any, seconds: float
) -> None:
    """Called once when a request that ``toto_request_started`` saw is over, in the same task.

    ``method`` is the name of the method it called (None for a batch, or when it named
    no method that exists), ``batch`` the number of calls of a batch (else None),
    ``status`` the HTTP status of the answer (on a socket: the status the same answer
    has over HTTP; 499 when the client went away before it), ``error`` the error dict
    of the answer (None on success; a batch's entries report theirs through
    ``toto_after_invoke``), ``seconds`` how long it took.
    """


@hookspec
def toto_wrap_storage(server: TotoServer, storage: Storage) -> Storage | None:
    """Return an object that stands in for ``storage`` (a wrapper that times or traces
    its calls), or None to leave it.

    Called once in each serving process, before ``storage.open()``; every plugin's
    wrapper wraps the one before. What a wrapper returns is what the accounts,
    sessions and ``handler.connection`` use, so it must offer the whole ``Storage``
    interface and ``db``.
    """


@hookspec
def toto_event_sending(name: str, broadcast: bool, metadata: MutableMapping[str, str]) -> None:
    """Called when this process sends an event, before it goes onto the bus.

    Add text entries to ``metadata`` to carry them with the event to every server
    that receives it (a W3C ``traceparent``, say); every bus of the core and of
    toto-redis carries them. An event nobody adds metadata to travels exactly as
    without this hook. Only called when some plugin implements it.
    """


@hookspec
def toto_event_received(name: str, metadata: Mapping[str, str]) -> AbstractContextManager[Any] | None:
    """Called when an event arrives from the bus, before its handlers run.

    ``metadata`` is what the sender's ``toto_event_sending`` added (empty when
    nothing). Return a context manager to run the event's handlers inside it (a
    tracing span, say), or None. Only called when some plugin implements it.
    """
