"""What a Python client is set up with: its wire format and its signing scheme, chosen among
the installed ones (a plugin's too), and the error it raises.

The HTTP clients (``toto.client``) and the socket client (``toto.socketclient``) share
these; the HTTP client opens sockets, so the parts they share live here, below both.
"""

from __future__ import annotations

import functools

from toto.auth import Authenticator
from toto.exceptions import PluginError, TotoException
from toto.plugins import get_plugin_manager, install_hint, merge_named, merge_serializers
from toto.serializers import JsonSerializer, Serializer

#: The JSON serializer, the wire format every client starts with and answers may always use.
JSON = JsonSerializer()


class TotoClientError(TotoException):
    """An error answer (``code``, ``value``), or a response that failed verification (1009)."""


@functools.lru_cache(maxsize=1)
def installed_serializers() -> dict[str, Serializer]:
    """Content type -> serializer, for JSON and every installed plugin's (found once)."""
    return merge_serializers(get_plugin_manager())


@functools.lru_cache(maxsize=1)
def installed_authenticators() -> dict[str, Authenticator]:
    """``hmac_mode`` -> authenticator, the core's and every installed plugin's (found once)."""
    return merge_named(get_plugin_manager(), "toto_register_authenticators")


def has_client_half(authenticator: Authenticator) -> bool:
    """Whether a scheme that signs on the server also signs and checks on the client."""
    cls = type(authenticator)
    signs = (
        cls.verify_request is not Authenticator.verify_request or cls.sign_response is not Authenticator.sign_response
    )
    checks = (
        cls.sign_request is not Authenticator.sign_request and cls.verify_response is not Authenticator.verify_response
    )
    return checks or not signs


def find_authenticator(choice: str | Authenticator) -> Authenticator:
    """The client half of a signing scheme, by ``hmac_mode`` name (``user_id``,
    ``session_key``, ``off`` or a plugin's); an ``Authenticator`` is used as it is
    (a scheme configured by hand)."""
    if isinstance(choice, Authenticator):
        found = choice
        name = type(choice).__name__
    else:
        try:
            registry = installed_authenticators()
        except PluginError as exc:  # two plugins claiming one hmac_mode
            raise ValueError(str(exc)) from None
        found = registry.get(choice)  # type: ignore[assignment]
        name = repr(choice)
        if found is None:
            raise ValueError(f"hmac_mode {choice!r} is not installed (installed: {', '.join(sorted(registry))})")
    if not has_client_half(found):
        raise ValueError(f"hmac_mode {name} has no client half (sign_request and verify_response)")
    return found


def find_serializer(choice: str | Serializer) -> Serializer:
    """A wire serializer by name (``json``, ``msgpack``) or content type
    (``application/msgpack``); a ``Serializer`` instance is used as it is."""
    if isinstance(choice, Serializer):
        return choice
    key = choice.strip().lower()
    if key in ("json", "application/json"):
        return JSON
    try:
        registry = installed_serializers()
    except PluginError as exc:  # two plugins claiming one content type
        raise ValueError(str(exc)) from None
    found = registry.get(key)
    if found is None:
        found = next((s for s in registry.values() if s.name == key), None)
    if found is None:
        raise ValueError(f"serializer {choice!r} is not installed; {install_hint(key)}")
    return found
