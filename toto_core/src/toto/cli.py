"""The ``toto`` command: ``toto serve``, ``toto plugins``."""

from __future__ import annotations

import sys

USAGE = """usage: toto <command> [options]

commands:
  serve [config_file] [--option=value ...]   run a server (toto serve --help lists every option)
  plugins                                     list installed plugins and what each registers
"""


def plugins_command(argv: list[str]) -> int:
    if "--help" in argv or "-h" in argv:
        print("usage: toto plugins\n\nList the installed Toto plugins, their versions and what each registers.")
        return 0
    from toto.plugins import get_plugin_manager, plugin_label

    pm = get_plugin_manager()
    for plugin in pm.get_plugins():
        print(plugin_label(pm, plugin))
        for impl in pm.get_hookcallers(plugin) or []:
            print(f"  {impl.name}")
    return 0


def serve_command(argv: list[str]) -> int:
    sys.path.insert(0, "")  # the method package normally lives in the current directory
    from toto.server import TotoServer

    TotoServer(argv=argv).run()
    return 0


COMMANDS = {"serve": serve_command, "plugins": plugins_command}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"toto: error: unknown command {args[0]!r} (see toto --help)", file=sys.stderr)
        return 2
    return command(args[1:])


if __name__ == "__main__":
    raise SystemExit(main())
