"""msgpack as the safe serializer of session state and event payloads (state_serializer=msgpack):
binary values survive in state and in events, and switching the option on a database that
already holds sessions (with a restart, on persistent storage) loses or corrupts none of them,
in either direction and with servers of both settings running at once."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as StillWaiting
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from toto.client import TotoClient, TotoClientError
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST
from tests.msgpack.conftest import user

BINARY = {"avatar": b"\x89PNG\r\n\x1a\n\x00\xff", "nested": {"blob": [b"\x00", b""]}}

#: Persistent storages this run can restart on: Redis always, SQLite when toto-sql is installed.
PERSISTENT = ["redis"] + (["sqlite"] if importlib.util.find_spec("toto_sql") is not None else [])


def storage_options(database: str, redis_url: str, prefix: str, tmp_path: Path) -> dict[str, Any]:
    if database == "redis":
        return {"database": "redis", "database_url": redis_url, "redis_prefix": prefix}
    return {"database": "sqlite", "database_url": f"sqlite:///{tmp_path / 'switch.db'}"}


def stored_state(database: str, redis_url: str, prefix: str, session_id: str) -> bytes | None:
    """The state bytes exactly as the storage holds them (Redis only; None elsewhere)."""
    if database != "redis":
        return None
    raw = redis.Redis.from_url(redis_url)
    try:
        value = raw.hget(f"{prefix}session:{session_id}", "s")
        return bytes(value) if value is not None else b""
    finally:
        raw.close()


def resume(srv: ServerProcess, session: dict[str, Any], serializer: str = "json") -> TotoClient:
    """A client of ``srv`` that carries on an existing session (as a phone would after a server restart)."""
    client = srv.client(serializer=serializer)
    client.session = dict(session)
    return client


def test_binary_values_survive_in_state(start_server) -> None:
    srv = start_server(database="memory", state_serializer="msgpack")
    client = srv.client(serializer="msgpack")
    client.create(user(), "pw")
    assert client.call("state.set", BINARY) == ["avatar", "nested"]
    assert client.call("state.get") == BINARY
    assert [client.call("counter.increment") for _ in range(3)] == [1, 2, 3]
    # A JSON client of the same session reads the state too (bytes have no JSON form, so ask for the rest).
    json_client = resume(srv, client.session)
    assert json_client.call("state.get", {"keys": ["count"]}) == {"count": 3}


def test_binary_values_need_the_msgpack_state_serializer(start_server) -> None:
    srv = start_server(database="memory")
    client = srv.client(serializer="msgpack")
    client.create(user(), "pw")
    with pytest.raises(TotoClientError) as refused:
        client.call("state.set", {"avatar": b"\x00"})
    assert refused.value.code == 1000
    assert client.call("state.set", {"name": "x"}) == ["name"]


def test_state_serializer_msgpack_without_the_plugin_names_it() -> None:
    srv = ServerProcess({**FAST, "database": "memory", "state_serializer": "msgpack"}, cwd=BASIC_APP)
    srv.env["TOTO_PLUGINS"] = ""  # only the built-ins
    with pytest.raises(RuntimeError) as failed:
        srv.start()
    assert "toto-msgpack" in str(failed.value) and "Traceback" not in str(failed.value)


@pytest.mark.parametrize("database", PERSISTENT)
def test_switching_to_msgpack_keeps_existing_sessions(
    start_server, redis_url: str, prefix: str, tmp_path: Path, database: str
) -> None:
    storage = storage_options(database, redis_url, prefix, tmp_path)
    before = start_server(**storage)
    name = user()
    old = before.client()
    old.create(name, "pw")
    assert old.call("state.set", {"cart": ["a", "b"], "note": "Zoë ✓", "n": 2}) == ["cart", "n", "note"]
    assert old.call("counter.increment") == 1
    idle = before.client()
    idle.login(name, "pw")
    assert idle.call("state.set", {"untouched": {"deep": [1.5, None, True]}}) == ["untouched"]
    json_bytes = stored_state(database, redis_url, prefix, idle.session["session_id"])
    assert json_bytes in (None, b'{"untouched":{"deep":[1.5,null,true]}}')
    before.stop()

    after = start_server(state_serializer="msgpack", **storage)
    client = resume(after, old.session, serializer="msgpack")
    assert client.call("state.get") == {"cart": ["a", "b"], "note": "Zoë ✓", "n": 2, "count": 1}
    assert client.call("counter.increment") == 2, "the old JSON state was read, then saved as msgpack"
    assert client.call("state.set", BINARY) == ["avatar", "nested"]
    msgpack_bytes = stored_state(database, redis_url, prefix, old.session["session_id"])
    if msgpack_bytes is not None:
        assert msgpack.unpackb(msgpack_bytes)["avatar"] == BINARY["avatar"], "stored as msgpack now"
    # A session nobody touched since the switch still reads as it was.
    assert resume(after, idle.session).call("state.get") == {"untouched": {"deep": [1.5, None, True]}}
    assert stored_state(database, redis_url, prefix, idle.session["session_id"]) == json_bytes
    after.stop()

    # And back: a JSON server reads the msgpack-stored state (binary values included).
    back = start_server(**storage)
    again = resume(back, old.session, serializer="msgpack")
    state = again.call("state.get")
    assert state["avatar"] == BINARY["avatar"] and state["count"] == 2 and state["cart"] == ["a", "b"]
    assert again.call("state.get", {"keys": ["note"]}) == {"note": "Zoë ✓"}


@pytest.mark.parametrize("database", PERSISTENT)
def test_servers_of_both_settings_share_sessions_without_losing_updates(
    start_server, redis_url: str, prefix: str, tmp_path: Path, database: str
) -> None:
    storage = storage_options(database, redis_url, prefix, tmp_path)
    json_server = start_server(**storage)
    msgpack_server = start_server(state_serializer="msgpack", **storage)
    client = json_server.client()
    client.create(user(), "pw")
    counts = []
    for i in range(6):
        srv = msgpack_server if i % 2 else json_server
        counts.append(resume(srv, client.session).call("counter.increment"))
    assert counts == [1, 2, 3, 4, 5, 6]


def wait_for_event(waiter: TotoClient, sender: TotoClient, name: str, args: Any) -> Any:
    """Long-poll ``events.wait`` through one client while sending the event through another until it answers."""
    with ThreadPoolExecutor(1) as pool:
        answer: Future[Any] = pool.submit(waiter.call, "events.wait", {"name": name, "timeout": 20})
        deadline = time.monotonic() + 20
        while not answer.done() and time.monotonic() < deadline:
            sender.call("events.send", {"name": name, "args": args})
            try:
                return answer.result(timeout=0.5)
            except StillWaiting:
                continue
        return answer.result(timeout=1)


def test_event_payloads_keep_bytes(start_server) -> None:
    srv = start_server(database="memory", state_serializer="msgpack")
    args = {"frame": b"\x00\x01\xfe\xff", "seq": 7, "tags": ["x"]}
    got = wait_for_event(srv.client(serializer="msgpack"), srv.client(serializer="msgpack"), "frame", args)
    assert got == {"event": "frame", "args": args}


def test_event_payloads_keep_bytes_across_servers_on_the_redis_bus(start_server, redis_url: str, prefix: str) -> None:
    bus = {
        "event_bus": "redis",
        "event_url": redis_url,
        "redis_event_prefix": prefix + "events",
        "state_serializer": "msgpack",
    }
    a = start_server(database="memory", **bus)
    b = start_server(database="memory", **bus)
    args = [b"\x80\x81", {"k": b"v"}, 3.25]
    got = wait_for_event(a.client(serializer="msgpack"), b.client(serializer="msgpack"), "blob", args)
    assert got == {"event": "blob", "args": args}


def test_state_that_no_installed_serializer_reads_is_refused_not_wiped(
    start_server, redis_url: str, prefix: str
) -> None:
    storage = {"database": "redis", "database_url": redis_url, "redis_prefix": prefix}
    first = start_server(state_serializer="msgpack", **storage)
    client = first.client(serializer="msgpack")
    client.create(user(), "pw")
    assert client.call("state.set", BINARY) == ["avatar", "nested"]
    first.stop()

    # The same database served without toto-msgpack: the msgpack state cannot be read, so
    # methods that use it fail (1000) and nothing overwrites it.
    without = start_server(env={"TOTO_PLUGINS": "redis"}, **storage)
    plain = resume(without, client.session)
    for method in ("state.get", "counter.increment"):
        with pytest.raises(TotoClientError) as refused:
            plain.call(method)
        assert refused.value.code == 1000 and refused.value.value == "The session state could not be read."
    assert plain.call("whoami")["user_id"] == client.session["user_id"], "the session itself still works"
    assert "could not be read by any installed state serializer" in without.output()
    without.stop()

    back = start_server(state_serializer="msgpack", **storage)
    assert resume(back, client.session, serializer="msgpack").call("state.get") == BINARY


def test_concurrent_updates_of_msgpack_state_are_not_lost(start_server) -> None:
    srv = start_server(database="memory", state_serializer="msgpack")

    async def run() -> list[int]:
        client = srv.async_client(serializer="msgpack", timeout=60)
        await client.create(user(), "pw")
        await client.call("state.set", {"blob": b"\x00" * 64})
        return list(await asyncio.gather(*(client.call("counter.increment") for _ in range(20))))

    assert sorted(asyncio.run(run())) == list(range(1, 21))
