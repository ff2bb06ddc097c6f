"""toto-msgpack: ``application/msgpack`` on the wire, and msgpack for session state and events.

Installing the distribution is enough for the wire; ``state_serializer=msgpack``
stores session state and event payloads as msgpack too. Applications that send
their own msgpack extension types enable them with ``register_ext_type``.
"""

from toto_msgpack.serializer import MsgpackSerializer, register_ext_type, unregister_ext_type

__all__ = ["MsgpackSerializer", "register_ext_type", "unregister_ext_type"]
