"""TotoServer: options, plugins and the HTTP transport, put together once at startup."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import logging
import os
import signal
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from toto import daemon, openapi
from toto.accesslog import AccessLog
from toto.accounts import LoginLimiter, PasswordHasher
from toto.catalogue import Catalogue
from toto.console import exit_with_error
from toto.console import setup_logging as setup_logging
from toto.cookies import CookieSessions
from toto.events import EventManager
from toto.exceptions import PluginError
from toto.handler import TotoApplication, TotoHandler
from toto.lookup import MethodLookup
from toto.options import OptionError, Options, define_all_options, read_options
from toto.original import hooks as original_hooks
from toto.original.options import apply_serializer_switches, run_seed_startup
from toto.original.sessioncache import CACHED_SESSION_ID, CachedSessions
from toto.origins import AllowedOrigins
from toto.plugins import (
    default_storage,
    get_plugin_manager,
    install_hint,
    merge_named,
    merge_routes,
    merge_serializers,
    pick,
    report_failures,
)
from toto.reloader import run_reloading
from toto.sessions import SessionManager
from toto.transports import check_transport, make_transport

if TYPE_CHECKING:
    from toto.auth import Authenticator
    from toto.http import TransportSpec

log = logging.getLogger("toto.server")


class Connection:
    """What methods reach as ``handler.connection``: ``db`` is the backend's native handle."""

    def __init__(self, storage: Any, server: TotoServer | None = None) -> None:
        self.storage = storage
        self.db = storage.db
        self._server = server

    def set_session_cache(self, cache: Any) -> None:
        """Keep sessions in ``cache`` (the original's, e.g. ``toto.clientsessioncache.ClientCache``)
        instead of the storage; call it from the ``startup_function`` (``toto.original.sessioncache``)."""
        server = self._server
        if server is None or getattr(server, "sessions", None) is None:
            raise RuntimeError("set_session_cache is for a running server's connection (startup_function)")

        cached: Any = CachedSessions(cache, server.storage)
        server.storage = server.sessions.storage = self.storage = cached
        server.sessions.session_id_pattern = CACHED_SESSION_ID


class TotoServer:
    """A Toto server.

    ``TotoServer(conf_file=None, **options).run()``. Options are applied in this
    order, each overriding the one before: defaults, keyword arguments, the config
    file (``name = value`` lines), the environment (``TOTO_NAME=value``), the command
    line (``--name=value``). Pass ``argv=[]`` to ignore ``sys.argv`` when embedding the server.
    """

    def __init__(self, conf_file: str | None = None, argv: list[str] | None = None, **options: Any) -> None:
        args = list(sys.argv[1:] if argv is None else argv)
        try:
            self.pm = get_plugin_manager()
            self.hook = self.pm.hook
            # Before the options: a signing scheme's options are defined by the scheme itself.
            self.authenticators: dict[str, Authenticator] = merge_named(self.pm, "toto_register_authenticators")
            #: The HTTP faces (``--http`` choices): ``toto.http.TransportSpec`` by name.
            self.transports: dict[str, TransportSpec] = merge_named(self.pm, "toto_register_transports")
            self.options = Options()
            define_all_options(self.options, self.pm, self.authenticators, self.transports)
            if "--help" in args or "-h" in args:
                print(self.options.help_text())
                raise SystemExit(0)
            if args and not args[0].startswith("-"):
                conf_file = args.pop(0)
            #: How this server was made, so ``--reload`` can make the same one again (toto.reloader).
            self.given: dict[str, Any] = {"conf_file": conf_file, "argv": list(args), "options": dict(options)}
            try:
                read_options(self.options, args, conf_file, options)
            except OptionError:
                # A plugin that failed to load defines no options: that is the error to report.
                report_failures(self.pm, debug="--debug" in args or "--debug=true" in args)
                raise
            report_failures(self.pm, debug=bool(self.options.debug))
            self._configure()
        except (OptionError, PluginError) as exc:
            exit_with_error(str(exc))
        self.storage: Any = None
        self.connection: Connection | None = None
        #: The HTTP face (``toto.transports``) once listening; the request path is ``application``.
        self.transport: Any = None
        self.application: TotoApplication | None = None
        self._stopping: asyncio.Event | None = None
        self._background: list[asyncio.Task[Any]] = []
        #: Requests being served; a draining shutdown waits for it to empty (``drain``).
        self.in_flight: set[Any] = set()
        #: The write end of ``toto serve --start``'s readiness pipe (``toto.daemon``): the port
        #: is written there once this process listens, so --start reports success only then.
        self.ready_fd: int | None = None
        #: Writes the per-request line; None when ``access_log`` is off or info is not logged.
        self.access_log: Any = None
        #: With ``describe``: the method catalogue, the answer of ``toto.describe`` and the OpenAPI document.
        self.catalogue: Any = None
        self.description: dict[str, Any] | None = None
        self.openapi: dict[str, Any] | None = None
        #: True from SIGTERM on: the readiness check (``/_health``) answers 503 while requests drain.
        self.draining = False
        #: In a ``--processes`` group: a directory every process of the group shares, removed
        #: when the group stops (plugins keep group-wide files there); None for a lone server.
        self.group_dir: str | None = None
        #: The WebSocket endpoint with ``use_web_sockets`` (``toto.websocket.SocketHub``), else None.
        self.socket_hub: Any = None

    # -- configuration (once) ---------------------------------------------------------
    def _configure(self) -> None:
        o = self.options
        self.debug = bool(o.debug)
        self.max_body_size = int(o.max_body_size)
        self.max_batch = int(o.max_batch)
        self.max_header_size = int(o.max_header_size)
        self.max_request_line = int(o.max_request_line)
        self.xheaders = bool(o.xheaders)
        self.body_timeout = float(o.body_timeout)
        self.method_select = o.method_select
        self.allow_origin = o.allow_origin
        self.event_loop = pick_event_loop(o.event_loop)
        check_transport(self)
        self.storages = merge_named(self.pm, "toto_register_storage")
        self.buses = merge_named(self.pm, "toto_register_event_buses")
        self.serializers = merge_serializers(self.pm)
        apply_serializer_switches(o, self.serializers)  # the original's bson_enabled / msgpack_enabled
        for serializer in {id(s): s for s in self.serializers.values()}.values():
            serializer.configure(o)
        self.default_serializer = self.serializers["application/json"]
        if not o.database:
            o.database = default_storage(self.pm, self.storages)
        self.storage_factory = pick(self.storages, o.database, "database")
        self.bus_factory = pick(self.buses, o.event_bus, "event_bus")
        self.authenticator = pick(self.authenticators, o.hmac_mode, "hmac_mode")
        self.authenticator.configure(o)
        self.expose_headers = ", ".join(self.authenticator.expose_headers)
        #: ``allow_origin`` read once, for credentialed CORS and sockets alike (toto.origins).
        self.origins = AllowedOrigins(o.allow_origin)
        #: Cookie sessions (use_cookies), or None.
        self.cookies = CookieSessions(o, self.origins) if o.use_cookies else None
        safe = [s for s in {id(s): s for s in self.serializers.values()}.values() if s.safe_for_state]
        by_name = {s.name: s for s in safe}
        if o.state_serializer not in by_name:
            known = ", ".join(sorted(by_name))
            raise PluginError(
                f"state_serializer {o.state_serializer!r} is not installed (installed: {known}); "
                f"{install_hint(o.state_serializer)}"
            )
        self.state_serializer = by_name[o.state_serializer]
        self.state_fallbacks = safe
        try:
            self.methods = MethodLookup(o.method_module, builtin_accounts=o.builtin_accounts, describe=o.describe)
        except ImportError as exc:
            raise PluginError(str(exc)) from None
        if original_hooks.wanted() and not self.pm.has_plugin(original_hooks.PLUGIN_NAME):
            # TotoHandler.set_before_handler / set_after_handler of the original (toto.original.seed)
            self.pm.register(original_hooks.OriginalHooks(TotoHandler), name=original_hooks.PLUGIN_NAME)
        self._find_hot_hooks()
        self.login_limiter = LoginLimiter(
            int(o.login_attempts),
            float(o.login_window),
            user_attempts=int(o.login_user_attempts),
            address_attempts=int(o.login_address_attempts),
            trust=float(o.login_trust),
            address_calls=int(o.login_address_calls),
        )
        self.passwords = PasswordHasher(int(o.password_cost), int(o.password_threads), int(o.password_queue))
        self.max_batch_logins = int(o.max_batch_logins)
        #: Fixed paths below ``root`` that are not method calls (``toto_register_routes``).
        self.routes = merge_routes(self.pm, self)

    def _find_hot_hooks(self) -> None:
        """The request path calls the invoke and request hooks only when some plugin implements them."""
        self.invoke_hooks = bool(
            self.hook.toto_before_invoke.get_hookimpls() or self.hook.toto_after_invoke.get_hookimpls()
        )
        self.request_hooks = bool(
            self.hook.toto_request_started.get_hookimpls() or self.hook.toto_request_finished.get_hookimpls()
        )

    def describe_methods(self) -> None:
        """Walk the method package (``describe`` on): fills ``catalogue``, ``description`` and ``openapi``."""
        o = self.options
        self.catalogue = Catalogue(self.methods)
        self.description = {"hmac_mode": o.hmac_mode, "root": o.root, **self.catalogue.describe()}
        self.openapi = openapi.build(self.catalogue, o.hmac_mode, o.root, o.method_select)

    def make_app(self) -> TotoApplication:
        """The request path every transport serves (see ``toto.handler``)."""
        return TotoApplication(self)

    # -- lifecycle --------------------------------------------------------------------
    async def start(self, sockets: list[Any] | None = None, listen: bool = True) -> None:
        """Open storage and the event bus, then listen (on ``sockets`` when given; not at all
        when ``listen`` is false: an ASGI server in front, ``toto.asgi``)."""
        o = self.options
        if o.access_log and logging.getLogger("toto.access").isEnabledFor(logging.INFO):
            self.access_log = AccessLog()
        if o.describe:
            self.describe_methods()
        storage = self.storage_factory(o)
        # Each wrapper wraps the one before it; each called through pluggy like every hook.
        wrappers = self.pm.implementers("toto_wrap_storage")
        for plugin in wrappers:
            storage = self.pm.answer(plugin, "toto_wrap_storage", wrappers, server=self, storage=storage) or storage
        self.storage = storage
        await self.storage.open()
        self.connection = Connection(self.storage, self)
        self.sessions = SessionManager(self.storage, self.state_serializer, self.state_fallbacks, o)
        await EventManager.instance().start(self.bus_factory(o), self.state_serializer, self.hook)
        for result in self.hook.toto_startup(server=self):
            if inspect.isawaitable(result):
                await result
        # A plugin may register its request-path hooks at startup, only when it is active.
        self._find_hot_hooks()
        EventManager.instance().use_hooks(self.hook)
        application = self.application = self.make_app()
        await run_seed_startup(self, application)  # the original's event_init_module and startup_function
        self._background.append(asyncio.ensure_future(self._purge_loop(float(o.purge_interval))))
        if not listen:
            return
        self.transport = make_transport(self, application)
        await self.transport.listen(sockets)
        self.report_ready(str(o.port))
        shown = o.address or "0.0.0.0"
        log.info(
            "Toto listening on http://%s:%s (database: %s, hmac_mode: %s, event loop: %s, http: %s)",
            shown,
            o.port,
            o.database,
            o.hmac_mode,
            self.event_loop,
            o.http,
        )

    def report_ready(self, line: str) -> None:
        """Write ``line`` (a port that listens) to the readiness pipe, if any, and close this
        process's end of it."""
        fd, self.ready_fd = self.ready_fd, None
        if fd is None:
            return
        try:
            os.write(fd, line.encode("ascii") + b"\n")
        except OSError:  # the launching command has its answer already, or gave up waiting
            pass
        finally:
            os.close(fd)

    async def stop(self) -> None:
        """Fail the readiness check and keep serving for ``drain_delay`` seconds (so a load
        balancer stops sending first), stop listening, let in-flight requests finish (up to
        ``drain_timeout``), then close the event bus and storage."""
        self.draining = True
        if self.transport is not None:
            delay = float(self.options.drain_delay)
            if delay > 0:
                log.info("draining: /_health answers 503; still accepting requests for %gs", delay)
                await asyncio.sleep(delay)
            self.transport.stop_listening()
            if self.socket_hub is not None:  # running calls finish, then close frames "going away" (1001)
                await self.socket_hub.shutdown(float(self.options.drain_timeout))
            await self.drain(float(self.options.drain_timeout))
            await self.transport.close()
        for task in self._background:
            task.cancel()
        for result in self.hook.toto_shutdown(server=self):
            if inspect.isawaitable(result):
                await result
        await EventManager.instance().stop()
        if self.storage is not None:
            await self.storage.close()
        log.info("Toto stopped")

    async def drain(self, timeout: float) -> None:
        """Wait until the requests in flight have finished, at most ``timeout`` seconds."""
        if not self.in_flight:
            return
        log.info("draining: %d in flight, waiting up to %gs", len(self.in_flight), timeout)
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if self.in_flight:
            log.warning("draining: cut %d still in flight after %gs", len(self.in_flight), timeout)

    def join_process_group(self) -> str:
        """Called once by the parent of a ``--processes`` group before it forks. Makes the
        directory every process of the group shares (``group_dir``: the machine bus's sockets,
        plugins' group-wide files) and, since events must reach every process, turns the
        in-process ``local`` bus into ``machine`` there when no ``event_url`` names another.
        Returns the directory, for the parent to remove when the group stops."""
        o = self.options
        self.group_dir = tempfile.mkdtemp(prefix="toto-group-")
        if o.event_bus == "local":
            o.event_bus = "machine"
            self.bus_factory = self.buses["machine"]
            log.info("event_bus local -> machine, so events reach every process of the group")
        if o.event_bus == "machine" and not o.event_url:
            o.event_url = os.path.join(self.group_dir, "events")
        return self.group_dir

    async def _purge_loop(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                removed = await self.storage.purge_expired()
                if removed:
                    log.debug("purged %d expired sessions", removed)
            except Exception as exc:
                log.warning("purging expired sessions failed: %s", exc)

    async def serve(self, sockets: list[Any] | None = None) -> None:
        """Serve until SIGTERM or SIGINT."""
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._stopping.set)
            except (NotImplementedError, RuntimeError):
                pass
        await self.start(sockets)
        await self._stopping.wait()
        await self.stop()

    def run(self) -> None:
        """Serve as the options say: in this process, as ``--processes`` children, or
        detached (``--start``, ``--stop``, ``--restart``); see ``toto.daemon``."""
        if self.options.reload:
            run_reloading(self)
            return
        daemon.run(self)

    def run_process(self, sockets: list[Any] | None = None) -> None:
        """Configure logging and serve in this process until stopped."""
        setup_logging(self.options.logging, self.options.log_format)
        try:
            if self.event_loop == "uvloop":
                import uvloop

                uvloop.run(self.serve(sockets))
            else:
                asyncio.run(self.serve(sockets))
        except KeyboardInterrupt:
            pass
        except PluginError as exc:  # a storage or bus factory refusing its configuration
            exit_with_error(str(exc))


def pick_event_loop(wanted: str) -> str:
    """``uvloop`` or ``asyncio``: uvloop when asked for or (``auto``) when it is installed."""
    if wanted == "asyncio" or sys.platform == "win32":
        return "asyncio"
    if importlib.util.find_spec("uvloop") is None:
        if wanted == "uvloop":
            raise PluginError("event_loop 'uvloop' is not installed here: pip install uvloop")
        return "asyncio"
    return "uvloop"
