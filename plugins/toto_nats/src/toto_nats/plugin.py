"""The hooks toto-nats implements (entry point ``toto``: ``nats = "toto_nats.plugin"``).

Every Toto server loads this module at start-up, so it imports nats-py only when a server
really uses the NATS bus.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import toto

from toto_nats.defaults import DEFAULT_HISTORY, DEFAULT_PAYLOAD_TTL, DEFAULT_SUBJECT_PREFIX, DEFAULT_TIMEOUT

if TYPE_CHECKING:
    from toto_nats.eventbus import NatsEventBus


def nats_event_bus(options: Any) -> NatsEventBus:
    from toto_nats.eventbus import NatsEventBus

    return NatsEventBus.from_options(options)


@toto.hookimpl
def toto_register_event_buses() -> dict[str, Callable[[Any], NatsEventBus]]:
    return {"nats": nats_event_bus}


@toto.hookimpl
def toto_add_options(options: Any) -> None:
    options.define(
        "nats_subject_prefix",
        DEFAULT_SUBJECT_PREFIX,
        help="start of the NATS subjects of the event bus; servers that exchange events need the same one",
        type=str,
    )
    options.define(
        "nats_jetstream",
        False,
        help="carry broadcasts in a JetStream stream: at least once, numbered by the stream, replayable; "
        "off: core NATS, at most once",
        type=bool,
    )
    options.define(
        "nats_stream",
        None,
        help="name of the JetStream stream (default: made from nats_subject_prefix)",
        type=str,
    )
    options.define(
        "nats_event_history",
        DEFAULT_HISTORY,
        help="broadcasts the JetStream stream keeps, for servers (and sockets, by position) that missed them",
        type=int,
    )
    options.define(
        "nats_payload_ttl",
        DEFAULT_PAYLOAD_TTL,
        help="seconds a payload too large for one NATS message is kept in the JetStream object store",
        type=float,
    )
    options.define(
        "nats_timeout",
        DEFAULT_TIMEOUT,
        help="seconds to wait for NATS (connect, publish acknowledgements) before a send fails with 1013",
        type=float,
    )
