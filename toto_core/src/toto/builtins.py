"""The core's own plugin: what Toto offers with no other distribution installed."""

from __future__ import annotations

from typing import Any

from toto import explorer, hookimpl
from toto.auth import Authenticator
from toto.events import LocalBus
from toto.health import health_routes
from toto.http import Route, TransportSpec
from toto.machinebus import MachineBus
from toto.options import Options
from toto.original.options import define_seed_options
from toto.serializers import JsonSerializer, Serializer
from toto.signing import NoSigning, SessionKeySigning, UserIdSigning
from toto.storage.memory import MemoryStorage


@hookimpl
def toto_register_storage() -> dict[str, Any]:
    return {"memory": MemoryStorage}


@hookimpl
def toto_register_serializers() -> list[Serializer]:
    return [JsonSerializer()]


@hookimpl
def toto_register_event_buses() -> dict[str, Any]:
    return {"local": LocalBus, "machine": MachineBus.from_options}


@hookimpl
def toto_register_authenticators() -> dict[str, Authenticator]:
    return {"user_id": UserIdSigning(), "session_key": SessionKeySigning(), "off": NoSigning()}


@hookimpl
def toto_add_options(options: Options) -> None:
    # The core's own options are defined by toto.options; the original's come as any plugin's.
    define_seed_options(options)


@hookimpl
def toto_register_transports() -> dict[str, TransportSpec]:
    return {
        "tornado": TransportSpec(_tornado, sockets=True),
        "granian": TransportSpec(_granian, "granian", "'granian>=2.8,<3' (the toto-core[granian] extra)"),
        "uvicorn": TransportSpec(_uvicorn, "uvicorn", "'uvicorn[standard]>=0.30' (the toto-core[uvicorn] extra)"),
    }


def _tornado(server: Any, application: Any) -> Any:
    from toto.transports.tornado import TornadoTransport

    return TornadoTransport(server, application)


def _granian(server: Any, application: Any) -> Any:
    from toto.transports.rsgi import GranianTransport

    return GranianTransport(server, application)


def _uvicorn(server: Any, application: Any) -> Any:
    from toto.transports.asgi import UvicornTransport

    return UvicornTransport(server, application)


@hookimpl
def toto_register_routes(server: Any) -> list[Route]:
    routes = health_routes(server)
    if server.options.describe:
        routes += explorer.routes(server)
    return routes
