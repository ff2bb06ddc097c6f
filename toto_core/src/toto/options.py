"""Server options: defaults < keyword arguments < config file < environment < command line.

The environment sets an option as ``TOTO_<NAME>`` (``TOTO_HMAC_ENABLED=false``,
``TOTO_PORT=9000``), with the command line's types and errors.
"""

from __future__ import annotations

import ast
import difflib
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toto.auth import Authenticator


#: ``TOTO_<NAME>`` in the environment sets option ``<name>``.
ENV_PREFIX = "TOTO_"
#: ``TOTO_*`` variables that are not options, read where they are named (toto.plugins,
#: toto.reloader): left alone here, as is every ``TOTO_TEST_*`` and ``TOTO_BENCH_*`` (the
#: tooling's: toto.testing, the test suite, its nox sessions and the benchmark).
ENV_NOT_OPTIONS = frozenset({"TOTO_PLUGINS", "TOTO_TRACE_HOOKS", "TOTO_RELOAD_CHILD"})
ENV_TOOLING_PREFIXES = ("TOTO_TEST_", "TOTO_BENCH_")


class OptionError(Exception):
    """A bad option name or value; the message is one line a user can act on."""


@dataclass
class OptionSpec:
    name: str
    default: Any
    type: Callable[[Any], Any]
    help: str
    choices: tuple[Any, ...] | None = None
    group: str = "toto"
    #: For an option of the original Toto this Toto does not serve: what replaces it.
    refused: str | None = None
    #: For an option an earlier original Toto had and the original itself retired: why it is
    #: ignored (set anywhere, it is warned about once and has no effect).
    retired: str | None = None


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


class Options:
    """A flat namespace of named options with types, defaults, help and choices.

    Read values as attributes (``options.port``). Plugins add their own options in
    the ``toto_add_options`` hook with ``define``.
    """

    def __init__(self) -> None:
        object.__setattr__(self, "_specs", {})
        object.__setattr__(self, "_values", {})
        object.__setattr__(self, "_after_reading", [])

    def define(
        self,
        name: str,
        default: Any = None,
        type: Callable[[Any], Any] | None = None,
        help: str = "",
        choices: Iterable[Any] | None = None,
        group: str = "toto",
    ) -> None:
        if name in self._specs:
            raise OptionError(f"option {name!r} is defined twice (by {self._specs[name].group} and {group})")
        if type is None:
            type = bool if isinstance(default, bool) else (default.__class__ if default is not None else str)
        converter = _parse_bool if type is bool else type
        self._specs[name] = OptionSpec(name, default, converter, help, tuple(choices) if choices else None, group)
        self._values[name] = default

    def refuse(self, name: str, replacement: str, group: str = "the original Toto's") -> None:
        """Name an option of the original Toto that is not served: setting it anywhere is an
        error saying ``replacement`` (what to use instead); ``--help`` lists it too."""
        self.define(name, None, str, f"not served: {replacement}", group=group)
        self._specs[name].refused = replacement

    def retire(self, name: str, note: str, group: str = "the original Toto's") -> None:
        """Name an option the original itself retired: setting it warns once and does nothing."""
        self.define(name, None, str, f"ignored: {note}", group=group)
        self._specs[name].retired = note

    def after_reading(self, apply: Callable[[Options], None]) -> None:
        """Call ``apply(options)`` once every source of options was read (``read_options``
        calls ``done_reading``): for options that are mapped onto others, as the original's
        are (``toto.original.options``). Whoever defines such options registers their mapping, so
        this module knows none of them."""
        self._after_reading.append(apply)

    def done_reading(self) -> None:
        """Apply what ``after_reading`` registered, in the order it was registered."""
        for apply in self._after_reading:
            apply(self)

    def warn_once(self, key: str, message: str) -> None:
        """Log ``message`` (a warning) the first time ``key`` is seen."""
        warned: set[str] = self.__dict__.setdefault("_warned", set())
        if key not in warned:
            warned.add(key)
            logging.getLogger("toto.server").warning("%s", message)

    def __getattr__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"no option named {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self.set(name, value)

    def __contains__(self, name: str) -> bool:
        return name in self._specs

    def get(self, name: str, default: Any = None) -> Any:
        return self._values.get(name, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def set(self, name: str, value: Any) -> None:
        spec = self._specs.get(name)
        if spec is None:
            raise OptionError(f"unknown option --{name}{self._did_you_mean(name)} (see --help)")
        if spec.refused is not None:
            raise OptionError(f"option --{name} of the original Toto is not served here: {spec.refused}")
        if spec.retired is not None:
            self.warn_once(name, f"option {name} of the original Toto is ignored: {spec.retired}")
            return
        if value is not None:
            try:
                value = spec.type(value)
            except (TypeError, ValueError) as exc:
                raise OptionError(f"bad value for --{name}: {value!r} ({exc})") from None
            if spec.choices is not None and value not in spec.choices:
                allowed = " | ".join(str(c) for c in spec.choices)
                raise OptionError(f"bad value for --{name}: {value!r} (choose one of: {allowed})")
        self._values[name] = value

    def update(self, values: dict[str, Any]) -> None:
        for name, value in values.items():
            self.set(name, value)

    def _did_you_mean(self, name: str) -> str:
        close = self._closest(name)
        return f" (did you mean --{close}?)" if close else ""

    def _closest(self, name: str) -> str | None:
        known = [n for n, spec in self._specs.items() if spec.refused is None and spec.retired is None]
        # A swapped pair of letters (prot, dabatase) first, then the closest spelling.
        close = [n for n in known if sorted(n) == sorted(name)] or difflib.get_close_matches(name, known, 1)
        return close[0] if close else None

    def load_environment(self, environ: Mapping[str, str]) -> None:
        """Apply ``TOTO_<NAME>=value`` variables as ``--name=value`` would be (types, choices
        and errors alike; an error names the variable). A ``TOTO_*`` variable that is no
        option is warned about once, with the option it may have meant, and ignored: the
        environment holds other programs' variables too, but a typo must not pass silently."""
        for key, value in sorted(environ.items()):
            if not key.startswith(ENV_PREFIX) or key in ENV_NOT_OPTIONS or key.startswith(ENV_TOOLING_PREFIXES):
                continue
            name = key[len(ENV_PREFIX) :].lower()
            if name not in self._specs:
                close = self._closest(name)
                hint = f" (did you mean {ENV_PREFIX}{close.upper()}?)" if close else ""
                self.warn_once(key, f"environment variable {key} is not a toto option{hint}: ignored")
                continue
            try:
                self.set(name, value)
            except OptionError as exc:
                raise OptionError(f"environment variable {key}: {exc}") from None

    def load_config_file(self, path: str) -> None:
        """Read a config file of ``name = value`` Python assignments (the original's format).

        Every name the file assigns must be an option, as on the command line; names that
        start with ``_``, imports, functions and classes are the file's own helpers. A
        mistake is an ``OptionError`` naming the file, the line and what to write.
        """
        try:
            with open(path, "rb") as f:
                source = f.read()
        except OSError as exc:
            raise OptionError(f"cannot read config file {path}: {exc.strerror}") from None
        try:
            tree = ast.parse(source, path)
            code = compile(tree, path, "exec")
        except (SyntaxError, ValueError) as exc:
            line = getattr(exc, "lineno", None)
            where = f"{path} line {line}" if line else path
            message = getattr(exc, "msg", None) or str(exc)
            raise OptionError(
                f"{where}: {message}; a config file is lines of name = value, text in quotes (database = 'mysql')"
            ) from None
        lines = _assigned_names(tree, path)
        namespace: dict[str, Any] = {"__file__": path}
        try:
            exec(code, namespace)  # the operator's own file, like a settings module
        except Exception as exc:
            line = _error_line(exc, path)
            where = f"{path} line {line}" if line else path
            if isinstance(exc, NameError) and getattr(exc, "name", None):
                target = next((n for n, at in lines.items() if at == line), "option")
                raise OptionError(
                    f"{where}: {exc.name!r} is not defined; text goes in quotes: {target} = '{exc.name}'"
                ) from None
            raise OptionError(f"{where}: {type(exc).__name__}: {exc}") from None
        for name, line in lines.items():
            if name.startswith("_") or name not in namespace:
                continue
            value = namespace[name]
            if name not in self._specs:
                raise OptionError(
                    f"{path} line {line}: unknown option {name!r}{self._did_you_mean(name)} "
                    "(toto serve --help lists every option)"
                )
            try:
                self.set(name, value)
            except OptionError as exc:
                raise OptionError(f"{path} line {line}: {exc}") from None

    def parse_command_line(self, args: list[str]) -> list[str]:
        """Apply ``--name=value`` / ``--name value`` / ``--flag`` arguments; return the rest."""
        rest: list[str] = []
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if not arg.startswith("--") or arg == "--":
                rest.append(arg)
                continue
            name, eq, value = arg[2:].partition("=")
            name = name.replace("-", "_")
            spec = self._specs.get(name)
            if spec is None:
                raise OptionError(f"unknown option --{name} (see --help)")
            if not eq:
                if spec.type is _parse_bool:
                    value = "true"
                elif i < len(args) and not args[i].startswith("--"):
                    value = args[i]
                    i += 1
                else:
                    raise OptionError(f"option --{name} needs a value")
            self.set(name, value)
        return rest

    def help_text(self, prog: str = "toto serve") -> str:
        lines = [
            f"usage: {prog} [config_file] [--option=value ...]",
            "Every option may also be set in the environment as TOTO_<OPTION> (TOTO_PORT=9000);",
            "the command line wins over the environment, which wins over the config file.",
            "",
        ]
        groups: dict[str, list[OptionSpec]] = {}
        for spec in self._specs.values():
            groups.setdefault(spec.group, []).append(spec)
        for group, specs in groups.items():
            lines.append(f"{group} options:")
            for spec in sorted(specs, key=lambda s: s.name):
                choices = f" ({' | '.join(map(str, spec.choices))})" if spec.choices else ""
                lines.append(f"  --{spec.name:<22} {spec.help}{choices} [default: {spec.default!r}]")
            lines.append("")
        return "\n".join(lines)


def _assigned_names(tree: ast.Module, path: str) -> dict[str, int]:
    """Each name a config file assigns at its top level (also inside ``if``, ``try``, ``with``
    and loops, not inside functions or classes), with the line of its last assignment.
    A bare word is refused here, before the file runs."""
    names: dict[str, int] = {}

    def targets(node: ast.expr) -> list[ast.Name]:
        if isinstance(node, ast.Name):
            return [node]
        if isinstance(node, (ast.Tuple, ast.List)):
            return [name for element in node.elts for name in targets(element)]
        return []

    def visit(statements: list[ast.stmt]) -> None:
        for statement in statements:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            found: list[ast.expr] = []
            if isinstance(statement, ast.Assign):
                found = statement.targets
            elif isinstance(statement, (ast.AnnAssign, ast.AugAssign)):
                found = [statement.target]
            elif isinstance(statement, ast.Expr) and isinstance(statement.value, (ast.Name, ast.Attribute)):
                word = ast.unparse(statement.value)
                raise OptionError(
                    f"{path} line {statement.lineno}: bare word {word!r}; write name = value, "
                    f"e.g. {word} = True to turn an option on, or option = '{word}' for text"
                )
            for target in found:
                for name in targets(target):
                    names[name.id] = name.lineno
            for field in ("body", "orelse", "finalbody"):
                visit(getattr(statement, field, None) or [])
            for handler in getattr(statement, "handlers", None) or []:
                visit(handler.body)

    visit(tree.body)
    return names


def _error_line(exc: BaseException, path: str) -> int | None:
    """The line of the config file where ``exc`` was raised (its innermost frame in the file)."""
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def port_number(value: Any) -> int:
    """A TCP port: 1..65535, or 0 for any free port (the log says which)."""
    port = int(value)
    if not 0 <= port <= 65535:
        raise ValueError("a port is 1..65535, or 0 for any free port")
    return port


def read_options(
    options: Options, args: list[str], conf_file: str | None = None, values: Mapping[str, Any] | None = None
) -> None:
    """Apply, each over the one before: ``values`` (keyword arguments), the config file (the
    first argument when it is not an option, else ``conf_file``), the environment's
    ``TOTO_<NAME>`` variables, then the command line."""
    options.update(dict(values or {}))
    args = list(args)
    if args and not args[0].startswith("-"):
        conf_file = args.pop(0)
    if conf_file:
        options.load_config_file(conf_file)
    options.load_environment(os.environ)
    rest = options.parse_command_line(args)
    if rest:
        raise OptionError(f"unexpected argument {rest[0]!r}")
    options.done_reading()  # the mappings of options onto others (Options.after_reading)


def define_all_options(
    options: Options, pm: Any, authenticators: Mapping[str, Authenticator], transports: Iterable[str] = ()
) -> None:
    """Every option a server knows: the core's, each installed signing scheme's (the
    ``hmac_mode`` choices are the installed schemes; the ``http`` choices the installed
    transports) and each plugin's."""
    define_core_options(options, hmac_modes=sorted(authenticators), transports=transports)
    for authenticator in {id(a): a for a in authenticators.values()}.values():
        authenticator.add_options(options)
    pm.hook.toto_add_options(options=options)


def define_core_options(options: Options, hmac_modes: Iterable[str] = (), transports: Iterable[str] = ()) -> None:
    """The core's options; every one is shown by ``--help``. ``hmac_modes`` are the
    installed signing schemes (``toto_register_authenticators``), ``transports`` the
    installed HTTP faces (``toto_register_transports``)."""
    d = options.define
    d("port", 8888, port_number, "TCP port to serve on (0: any free port, shown in the log)")
    d("address", "", str, "address to bind (empty: all interfaces)")
    d("method_module", "methods", str, "package whose modules are the callable methods")
    d(
        "database",
        "",
        str,
        "storage backend (memory, sqlite, postgres, mysql, redis, mongodb, or a plugin's); "
        "empty: the default an installed plugin names (sqlite with toto-sql), else memory",
    )
    d("database_url", "", str, "URL of the database, e.g. postgresql://user@127.0.0.1:5432/db")
    d("hmac_mode", "user_id", str, "request signing scheme (an installed authenticator)", choices=hmac_modes or None)
    d("session_ttl", 14 * 24 * 3600.0, float, "seconds a signed-in session lives after its last renewal")
    d(
        "session_renew",
        7 * 24 * 3600.0,
        float,
        "renew a session when fewer than this many seconds remain (0: renew on every request)",
    )
    d("anon_session_ttl", 24 * 3600.0, float, "seconds an anonymous session lives after its last renewal")
    d("anon_session_renew", 12 * 3600.0, float, "renewal threshold of anonymous sessions")
    d("purge_interval", 60.0, float, "seconds between purges of expired sessions (storages without native expiry)")
    d("max_body_size", 10 * 1024 * 1024, int, "largest request body in bytes (larger: 413)")
    d(
        "max_body_values",
        200_000,
        int,
        "most values (containers, keys, scalars) one request body or socket message may decode to; "
        "counted before decoding (more: 413)",
    )
    d("max_header_size", 64 * 1024, int, "largest request head (request line and headers) in bytes (larger: 431)")
    d("max_request_line", 16 * 1024, int, "longest request target (path and query) in bytes (longer: 414)")
    d(
        "idle_timeout",
        15.0,
        float,
        "seconds a connection may take to send a complete request head, also between kept-alive requests (0: none)",
    )
    d("body_timeout", 30.0, float, "seconds a request may take to send its body (0: none)")
    d(
        "max_connections",
        10000,
        int,
        "open connections per process; beyond, new ones get 503 and are closed (0: no cap)",
    )
    d("method_select", "both", str, "where the method name may come from", choices=("both", "url", "parameter"))
    d("root", "/", str, "URL path the API is mounted under")
    d("allow_origin", "*", str, "Access-Control-Allow-Origin value (with use_cookies: a list of origins)")
    # The session cookie (toto.cookies reads them).
    d("use_cookies", False, bool, "also carry the session id in a signed HttpOnly cookie (needs cookie_secret)")
    d("cookie_secret", "", str, "secret that signs cookies (use_cookies, handler.set_secure_cookie)")
    d("secure_cookies", False, bool, "mark cookies Secure: browsers send them over HTTPS only")
    d("cookie_domain", "", str, "Domain of the session cookie (empty: the host that answered)")
    d("cookie_samesite", "Lax", str, "SameSite of the session cookie", choices=("Lax", "Strict", "None"))
    d("debug", False, bool, "send tracebacks in error answers and reload nothing else; never in production")
    d("logging", "info", str, "log level", choices=("debug", "info", "warning", "error", "none"))
    d(
        "event_bus",
        "local",
        str,
        "event bus: local (this process), machine (this machine's processes), or a plugin's such as redis",
    )
    d("event_url", "", str, "URL of the event bus, e.g. redis://127.0.0.1:6379/0")
    d("state_serializer", "json", str, "safe serializer for session state and event payloads")
    d("builtin_accounts", True, bool, "serve account.create/login/logout/update when the app has none")
    d("password_cost", 14, int, "scrypt cost as log2(N); 14 means N=16384 (about 16 MiB per hash)")
    d(
        "login_attempts",
        5,
        int,
        "failed logins per user id and client address within login_window before 1014 (0: no limit)",
    )
    d("login_window", 300.0, float, "seconds over which failed logins are counted")
    d(
        "login_user_attempts",
        100,
        int,
        "failed logins per user id from all addresses within login_window; beyond, trusted addresses only (0: off)",
    )
    d(
        "login_address_attempts",
        100,
        int,
        "failed logins (and creates that found the user id taken) per address for all user ids within "
        "login_window; beyond, trusted addresses only (0: off)",
    )
    d(
        "login_address_calls",
        300,
        int,
        "account.create/login/update calls per client address within login_window, successful or not; "
        "beyond, 1014 (logins from an address trusted for the user still pass; 0: no limit)",
    )
    d("login_trust", 30 * 24 * 3600.0, float, "seconds an address that signed a user in stays trusted for that user")
    d("max_batch_logins", 1, int, "most account.login/create/update calls in one request (a batch)")
    d("password_threads", max(1, os.cpu_count() or 1), int, "password hashes computed at once per process")
    d(
        "password_queue",
        128,
        int,
        "password hashes waiting per process, shared fairly by client address and account; "
        "beyond, 1013 (HTTP 503, Retry-After: busy, retry)",
    )
    d("max_batch", 100, int, "most calls in one batch request")
    d("health_path", "_health", str, "path below root of the health check (readiness; /live: liveness); empty: off")
    d("health_timeout", 2.0, float, "seconds the health check waits for the storage and the event bus")
    d("processes", 1, int, "server processes (0 or -1: one per CPU)")
    d(
        "http",
        "tornado",
        str,
        "HTTP server: tornado (also serves WebSockets), granian (RSGI, fastest: toto-core[granian]) "
        "or uvicorn (ASGI: toto-core[uvicorn])",
        choices=list(transports) or None,
    )
    d("xheaders", False, bool, "trust X-Real-Ip / X-Forwarded-For from a proxy in front")
    d(
        "event_loop",
        "auto",
        str,
        "asyncio event loop: uvloop (a dependency where it builds), asyncio, or auto (uvloop when installed)",
        choices=("auto", "uvloop", "asyncio"),
    )
    define_operations_options(options)
    define_development_options(options)
    define_socket_options(options)


def define_socket_options(options: Options) -> None:
    """WebSockets (``toto.websocket``; PROTOCOL.md section 9). The first five are the original's names."""
    d = options.define
    d("use_web_sockets", False, bool, "serve method calls and event pushes over WebSockets at <root><socket_path>")
    d("socket_path", "websocket", str, "path below root of the WebSocket endpoint")
    d("socket_method_module", "", str, "package of the methods sockets call (empty: method_module)")
    d("socket_opened_method", "", str, "module.function called with the socket handler when a socket opens")
    d("socket_closed_method", "", str, "module.function called with the socket handler when a socket closes")
    d("socket_max_message", 1024 * 1024, int, "largest message a socket may send in bytes (larger: close 1009)")
    d(
        "socket_message_timeout",
        30.0,
        float,
        "seconds a socket message may take from its first frame to its last (slower: close 1013; 0: none)",
    )
    d(
        "socket_max_unfinished",
        32 * 1024 * 1024,
        int,
        "bytes all sockets of a process may hold of messages not yet complete (beyond: close 1013; 0: no bound)",
    )
    d("socket_ping_interval", 20.0, float, "seconds between pings to an idle socket (0: no pings)")
    d(
        "socket_ping_timeout",
        20.0,
        float,
        "seconds a ping waits for its pong before the socket closes (at most the interval)",
    )
    d("socket_max_sockets", 10000, int, "open sockets per process; beyond, new ones are closed with 1013 (0: no cap)")
    d("socket_max_calls", 64, int, "calls running at once on one socket; beyond, a call answers 1013 at once")
    d("socket_max_subscriptions", 100, int, "event names one socket may subscribe to")
    d(
        "socket_recovery_limit",
        1000,
        int,
        "events of the bus's history one resubscription (toto.subscribe with since) reads to push what a "
        "socket missed; more missed: recovery is incomplete, the client is told of a gap (0: no recovery)",
    )
    d(
        "socket_max_queue",
        1000,
        int,
        "messages waiting to be sent to one socket; beyond, the socket is a slow consumer and is closed (1013)",
    )
    d(
        "socket_events",
        "",
        str,
        "event names sockets may subscribe to (toto.subscribe): comma-separated shell patterns such as room.*; "
        "empty (the default): none, since an event's data goes to every subscriber",
    )
    d("socket_session_check", 30.0, float, "seconds between checks that a socket's session still exists (0: off)")


def define_development_options(options: Options) -> None:
    """Describing the server, its access log, and reloading while developing."""
    d = options.define
    d(
        "describe",
        False,
        bool,
        "serve toto.describe, <root>/openapi.json and the API explorer at <root>/_explorer (lists every method)",
    )
    d("access_log", True, bool, "log one line per request at info (method, status, error code, duration, user)")
    d("log_format", "text", str, "log lines as text or as JSON objects, one a line", choices=("text", "json"))
    d("reload", False, bool, "restart when a file of the method package or the config file changes (development)")


def define_operations_options(options: Options) -> None:
    """Daemon, process and shutdown options (``toto.daemon``)."""
    d = options.define
    d("start", False, bool, "run detached in the background (writes pidfile, output to log_file)")
    d("stop", False, bool, "stop the server whose pidfile is --pidfile (SIGTERM, then SIGKILL after stop_timeout)")
    d("restart", False, bool, "--stop (when running), then --start")
    d("pidfile", "toto.pid", str, "pidfile of a --start server; --processes children add .N before .pid")
    d("log_file", "", str, "where a --start server writes its output (empty: the pidfile's name with .log)")
    d("reuse_port", False, bool, "--processes share --port through SO_REUSEPORT instead of sequential ports")
    d(
        "drain_delay",
        0.0,
        float,
        "on SIGTERM, seconds to keep accepting requests while the readiness check answers 503, "
        "so a load balancer stops sending before the port closes",
    )
    d("drain_timeout", 10.0, float, "on SIGTERM, seconds in-flight requests get to finish before they are cut")
    d("stop_timeout", 20.0, float, "--stop: seconds to wait for the server to exit before SIGKILL")


def option_value(options: Any, name: str, default: Any) -> Any:
    """An option's value, or ``default`` when it is unset, empty, or the options object lacks it.

    For plugin factories, which a test may call with a bare namespace or None.
    """
    value = getattr(options, name, None) if options is not None else None
    return default if value is None or value == "" else value
