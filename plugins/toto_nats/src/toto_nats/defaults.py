"""Defaults the plugin's options show; kept apart so ``--help`` never imports nats-py."""

DEFAULT_URL = "nats://127.0.0.1:4222"
DEFAULT_SUBJECT_PREFIX = "toto.events"
DEFAULT_TIMEOUT = 2.0
#: Broadcasts a JetStream stream keeps (``nats_event_history``).
DEFAULT_HISTORY = 1000
#: Seconds a payload too large for one NATS message stays in the object store (``nats_payload_ttl``).
DEFAULT_PAYLOAD_TTL = 24 * 3600.0
