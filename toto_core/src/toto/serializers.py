"""Wire serializers: the interface and the core's JSON serializer."""

from __future__ import annotations

import json
from typing import Any, ClassVar


class Serializer:
    """Turns response objects into bytes and request bytes into objects.

    ``decode`` reads request bodies: it raises ``ValueError`` (or ``RecursionError``)
    for malformed or refused input, which the core answers with 400/1011, or
    ``TotoException`` for a more specific answer. ``safe_for_state`` marks
    serializers that can never run code while decoding, so they may store session
    state and event payloads; those are read back with ``decode_state``.
    """

    name: ClassVar[str] = ""
    content_types: ClassVar[tuple[str, ...]] = ()
    safe_for_state: ClassVar[bool] = True

    def configure(self, options: Any) -> None:
        """Called once at startup with the server options (limits, flags)."""

    def encode(self, obj: Any) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        raise NotImplementedError

    def decode_state(self, data: bytes) -> Any:
        """Read bytes this deployment stored itself (session state, event payloads).

        Defaults to ``decode``. A serializer whose wire checks could refuse data it
        wrote earlier (size limits, extension types) relaxes them here, since a
        refusal would lose a stored session.
        """
        return self.decode(data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} values cannot be sent as JSON")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class JsonSerializer(Serializer):
    """JSON, ASCII-only on output so clients that hash UTF-16 code units agree (compat).

    Strict both ways: ``NaN`` and ``Infinity`` are refused on input (400/1011) and never
    written (``JSON.parse`` would reject the answer).
    """

    name = "json"
    content_types = ("application/json",)

    # One encoder built once; compact separators, ASCII escapes.
    _encoder = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=_json_default, allow_nan=False)

    def encode(self, obj: Any) -> bytes:
        return self._encoder.encode(obj).encode("ascii")

    def decode(self, data: bytes) -> Any:
        return json.loads(data, parse_constant=_refuse_constant)
