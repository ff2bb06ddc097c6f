"""Holds one of the server's password threads until released, so that a test meets a busy
hasher (1013) when it chooses: ``{"action": "hold"}`` answers once released, ``"held"`` says
whether the thread is held yet, ``"release"`` lets it go."""

import threading

from toto.accounts import hashing_keys

_held = threading.Event()
_release = threading.Event()


def _hold() -> None:
    _held.set()
    _release.wait(120)


async def invoke(handler, parameters):
    action = parameters.get("action")
    if action == "held":
        return _held.is_set()
    if action == "release":
        _release.set()
        return True
    # Work on the hasher's own threads, queued as a hash is: a hash that lasts as long as the test wants.
    await handler.server.passwords._run(hashing_keys("holder"), _hold)
    return "released"
