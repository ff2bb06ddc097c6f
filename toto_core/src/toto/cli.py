"""The ``toto`` command: ``serve``, ``new``, ``plugins``, ``call``.

Every subcommand has ``--help``; every error is one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shutil
import sys
from importlib import resources
from typing import Any, NoReturn

from toto import __version__
from toto.client import TotoClient, TotoClientError
from toto.console import exit_with_error as exit_with_error  # the one way a command line fails
from toto.daemon import stop_command
from toto.exceptions import PluginError
from toto.options import Options
from toto.plugins import CORE, get_plugin_manager

USAGE = """usage: toto <command> [options]

commands:
  serve [config_file] [--option=value ...]   run a server; --start/--stop/--restart run it detached
                                              (toto serve --help lists every option)
  new NAME [--template simple|chat]           make a runnable project in the directory NAME
  plugins                                     list installed plugins and what each registers
  call URL METHOD [JSON]                      call a method of a running server

  toto --version prints the version.

Run toto <command> --help for a command's options.
"""

TEMPLATES = ("simple", "chat")


class CommandError(Exception):
    """An error the user can act on; ``main`` prints it as one line and exits 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit status 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


# -- serve ------------------------------------------------------------------------------------


def serve_command(argv: list[str]) -> int:
    if "--stop" in argv and not any(a.startswith(("--start", "--restart")) for a in argv):
        stop_command(argv)
        return 0
    sys.path.insert(0, os.getcwd())  # the method package normally lives in the current directory
    # The serving stack (Tornado, the request path) loads for toto serve only: toto new,
    # plugins and call start without it.
    from toto.server import TotoServer

    TotoServer(argv=argv).run()
    return 0


# -- new --------------------------------------------------------------------------------------


def new_command(argv: list[str]) -> int:
    parser = _Parser(
        prog="toto new",
        description="Make a runnable Toto project in the directory NAME: a methods package, "
        "a config file (toto.conf), a README and its own tests.",
    )
    parser.add_argument("name", metavar="NAME", help="directory to create (must not exist yet)")
    parser.add_argument("--template", choices=TEMPLATES, default="simple", help="simple (default) or chat")
    args = parser.parse_args(argv)
    target = os.path.abspath(args.name)
    project = os.path.basename(target.rstrip(os.sep))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", project):
        raise CommandError(f"project name {project!r} must be letters, digits, '_', '-' or '.'")
    if os.path.exists(target):
        raise CommandError(f"{args.name} already exists; choose another NAME or remove it")
    source = resources.files("toto") / "templates" / args.template
    try:
        _copy_template(source, target, {"name": project, "template": args.template})
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    print(f"Created {args.name} from the {args.template} template. Next:")
    print(f"  cd {args.name} && toto serve toto.conf")
    if importlib.util.find_spec("pytest") is None:
        print("  python -m pip install pytest    # the tests need it (pyproject.toml lists it); not installed here")
    print("  python -m pytest    # its own tests, in process (toto.testing.TestClient)")
    return 0


def _copy_template(source: Any, target: str, values: dict[str, str]) -> None:
    """Copy a template tree; ``*.py-tpl`` become ``*.py`` (so linters and type checkers of
    Toto itself skip them) and ``{{name}}`` becomes the project's name."""
    os.makedirs(target)
    for entry in source.iterdir():
        name = entry.name
        if name == "__pycache__" or name.endswith((".pyc", ".pyo")):
            continue
        if name.endswith(".py-tpl"):
            name = name[: -len("-tpl")]
        destination = os.path.join(target, name)
        if entry.is_dir():
            _copy_template(entry, destination, values)
            continue
        text = entry.read_text(encoding="utf-8")
        for key, value in values.items():
            text = text.replace("{{" + key + "}}", value)
        with open(destination, "w", encoding="utf-8") as f:
            f.write(text)


# -- plugins ----------------------------------------------------------------------------------


def plugins_command(argv: list[str]) -> int:
    parser = _Parser(
        prog="toto plugins",
        description="List the installed Toto plugins (the core's built-ins first), their versions, "
        "the hooks each implements and what it registers, and any plugin that failed to load. "
        "TOTO_PLUGINS=a,b limits which load.",
    )
    parser.add_argument("--json", action="store_true", help="print the list as JSON")
    args = parser.parse_args(argv)
    try:
        pm = get_plugin_manager()
        report = [_describe_plugin(pm, plugin) for plugin in pm.get_plugins()]
    except PluginError as exc:
        raise CommandError(str(exc)) from None
    report.sort(key=lambda p: (p["name"] != CORE, p["name"]))
    failed = [{"name": str(f.label), "error": f.reason} for f in pm.failures]
    if args.json:
        print(json.dumps(report + failed, indent=2))
    else:
        for entry in report:
            print(f"{entry['name']} {entry['version']}".rstrip())
            print(f"  hooks: {', '.join(entry['hooks'])}")
            for kind, names in entry["registers"].items():
                print(f"  {kind}: {', '.join(names)}")
        for entry in failed:
            print(entry["name"])
            print(f"  failed to load: {entry['error']}")
    if failed:
        raise CommandError(f"{len(failed)} plugin(s) failed to load: {', '.join(f['name'] for f in failed)}")
    return 0


def _describe_plugin(pm: Any, plugin: Any) -> dict[str, Any]:
    name, _, version = pm.label(plugin).partition(" ")
    hooks = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
    registers: dict[str, list[str]] = {}

    def offered(hook: str) -> Any:
        return pm.answer(plugin, hook) if hook in hooks else None

    authenticators = offered("toto_register_authenticators") or {}
    for kind, value in (
        ("storage", offered("toto_register_storage")),
        ("event buses", offered("toto_register_event_buses")),
        ("hmac modes", authenticators),
        ("transports", offered("toto_register_transports")),
    ):
        if value:
            registers[kind] = sorted(value)
    serializers = offered("toto_register_serializers")
    if serializers:
        registers["serializers"] = [f"{s.name} ({', '.join(s.content_types)})" for s in serializers]
    options = Options()
    for authenticator in authenticators.values():
        authenticator.add_options(options)
    if "toto_add_options" in hooks:
        pm.answer(plugin, "toto_add_options", options=options)
    if options.as_dict():
        registers["options"] = sorted(f"--{n}" for n in options.as_dict())
    return {"name": name, "version": version, "hooks": hooks, "registers": registers}


# -- call -------------------------------------------------------------------------------------


def call_command(argv: list[str]) -> int:
    parser = _Parser(
        prog="toto call",
        description="Call METHOD on the Toto server at URL with the Python client and print the result "
        "as JSON. With --user_id and --password it logs in first (or creates the account with --create).",
    )
    parser.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8888")
    parser.add_argument("method", metavar="METHOD", help="method name, e.g. account.login or notes.list")
    parser.add_argument("parameters", metavar="JSON", nargs="?", default="{}", help="parameters as JSON (default {})")
    parser.add_argument("--user_id", help="log in as this user before the call")
    parser.add_argument("--password", help="password for --user_id")
    parser.add_argument("--create", action="store_true", help="create the account instead of logging in")
    parser.add_argument(
        "--hmac_mode", default="user_id", help="signing scheme: user_id (default), session_key, off or a plugin's"
    )
    parser.add_argument("--serializer", default="json", help="wire format: json, or an installed plugin's")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the answer (default 30)")
    args = parser.parse_args(argv)
    try:
        parameters = json.loads(args.parameters)
    except ValueError as exc:
        raise CommandError(f"JSON parameters are not valid JSON: {exc}") from None
    if (args.user_id is None) != (args.password is None):
        raise CommandError("--user_id and --password go together")
    try:
        client = TotoClient(args.url, hmac_mode=args.hmac_mode, serializer=args.serializer, timeout=args.timeout)
    except ValueError as exc:  # an hmac_mode or serializer that is not installed: a bad command line
        parser.error(str(exc))
    step = args.method
    try:
        with client:
            if args.user_id is not None:
                step = "account.create" if args.create else "account.login"
                if args.create:
                    client.create(args.user_id, args.password)
                else:
                    client.login(args.user_id, args.password)
                step = args.method
            result = client.call(args.method, parameters)
    except TotoClientError as exc:
        raise CommandError(f"{step} failed: {exc.value} (code {exc.code})") from None
    except (OSError, TimeoutError) as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise CommandError(f"cannot reach {args.url}: {reason}") from None
    # Other wire formats carry values JSON cannot show (msgpack's bytes): print their repr.
    print(json.dumps(result, indent=2, ensure_ascii=False, default=repr))
    return 0


# -- main -------------------------------------------------------------------------------------

COMMANDS = {"serve": serve_command, "new": new_command, "plugins": plugins_command, "call": call_command}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args)
    except BrokenPipeError:
        # The reader of our output stopped reading (toto plugins | head): what it read was
        # what it wanted. Point stdout at /dev/null so the flush at exit cannot fail again.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130


def _run(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if args[0] in ("-V", "--version"):
        print(f"toto {__version__}")
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        exit_with_error(f"unknown command {args[0]!r} (commands: {', '.join(COMMANDS)}; see toto --help)")
    try:
        return command(args[1:])
    except CommandError as exc:
        print(f"toto {args[0]}: error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        raise
    except OSError as exc:  # a file the command needs cannot be read or written
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"toto {args[0]}: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
