"""Sockets with Redis: pushes from another server over the Redis bus, and storage faults (1013,
the socket stays open)."""

from __future__ import annotations

import uuid

from toto.client import AsyncTotoClient, TotoClientError
from toto.testing import TcpProxy

from tests.redis.conftest import REDIS_HOST, REDIS_PORT, ensure_machine_redis
from tests.websocket.conftest import PATIENCE, run


def _redis() -> dict[str, str]:
    ensure_machine_redis()
    prefix = f"toto-ws-test:{uuid.uuid4().hex[:12]}:"
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
    return {"event_bus": "redis", "event_url": url, "redis_event_prefix": prefix + "events:", "redis_prefix": prefix}


def test_pushes_from_another_server_over_redis(socket_server) -> None:
    shared = _redis()
    a, b = socket_server(**shared), socket_server(**shared)

    async def scenario() -> None:
        async with await AsyncTotoClient(a.url).connect() as sock:
            await sock.subscribe("across")
            async with await AsyncTotoClient(b.url).connect() as other:
                await other.call("events.send", {"name": "across", "args": {"from": "b", "text": "日本"}})
            assert await sock.next_event(PATIENCE) == ("across", {"from": "b", "text": "日本"})

    run(scenario())


def test_storage_down_answers_1013_and_the_socket_stays_open(socket_server) -> None:
    with TcpProxy(REDIS_HOST, REDIS_PORT) as proxy:
        options = _redis()
        server = socket_server(
            database="redis", database_url=f"redis://127.0.0.1:{proxy.port}/0", redis_timeout=1, **options
        )

        async def scenario() -> None:
            client = AsyncTotoClient(server.url)
            async with await client.connect() as sock:
                await sock.create("stored", "secret-pass")
                assert await sock.call("whoami") == {"user_id": "stored"}
                proxy.cut()
                for method in ("whoami", "echo", "whoami"):  # echo too: the socket names a session
                    try:
                        await sock.call(method)
                    except TotoClientError as exc:
                        assert exc.code == 1013
                    else:
                        raise AssertionError("answered without its storage")
                proxy.restore()
                for _ in range(100):
                    try:
                        assert await sock.call("whoami") == {"user_id": "stored"}
                        break
                    except TotoClientError as exc:
                        assert exc.code == 1013
                else:
                    raise AssertionError("never recovered")
                assert sock.close_code is None

        run(scenario())
    assert "Traceback" not in server.output()
