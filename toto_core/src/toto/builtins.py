"""The core's own plugin: what Toto offers with no other distribution installed."""

from __future__ import annotations

from typing import Any

from toto import hookimpl
from toto.auth import Authenticator
from toto.events import LocalBus
from toto.http import Route
from toto.machinebus import MachineBus
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
def toto_register_routes(server: Any) -> list[Route]:
    from toto.health import health_routes

    routes = health_routes(server)
    if server.options.describe:
        from toto import explorer

        routes += explorer.routes(server)
    return routes
