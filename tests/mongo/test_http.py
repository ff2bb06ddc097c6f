"""Real servers over HTTP on MongoDB storage (SecantusDB standing in for mongod) and the
application/bson serializer: the deployment contract, plus what MongoDB keeps where, BSON
requests, answers and batches that keep binary and datetime values and are signed over their
exact bytes, bad BSON as a protocol error, and a MongoDB killed mid-run that answers 1013/503
in time and heals when it restarts."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import struct
import time
from collections.abc import Iterator
from typing import Any

import bson
import pytest
from pymongo import MongoClient
from toto.client import TotoClient, TotoClientError
from toto.signing import user_id_hmac
from toto.testing import DeploymentContract, assert_unavailable_in_time
from toto.testing import unique_user as user
from toto.testing.server import ServerProcess

from tests.conftest import BASIC_APP, FAST
from tests.mongo.standin import StandIn
from tests.operations import free_ports, wait_until_answers

UTC = datetime.timezone.utc


def on_mongo(url: str, **extra: Any) -> dict[str, Any]:
    """Options of a server on MongoDB in a test without faults: a generous mongo_timeout, so a
    loaded machine never turns a slow answer into a spurious 1013."""
    return {"database": "mongodb", "database_url": url, "mongo_timeout": 10, **extra}


def with_default_timeout(url: str) -> dict[str, Any]:
    """Options of a server on MongoDB with the default mongo_timeout, for the fault tests."""
    return {"database": "mongodb", "database_url": url}


@pytest.fixture
def raw(mongo_url: str, database: str) -> Iterator[Any]:
    client: MongoClient[dict[str, Any]] = MongoClient(mongo_url, tz_aware=True)
    try:
        yield client[database]
    finally:
        client.close()


def bson_post(server: ServerProcess, body: bytes, **headers: str) -> tuple[int, Any, dict[str, Any]]:
    """POST raw bytes as application/bson; the answer decoded from BSON."""
    status, answer_headers, data = server.client().request(
        body, content_type="application/bson", headers={"Accept": "application/bson", **headers}, sign=False
    )
    assert answer_headers["Content-Type"] == "application/bson", data[:200]
    return status, answer_headers, bson.decode(data)


class TestMongoDeployment(DeploymentContract):
    """A complete server, two servers sharing sessions, racing creates, no lost update, collection
    prefixes, the core's checks, and a MongoDB cut, black-holed and frozen answered with 1013/503."""


def test_what_mongodb_keeps_where(start_server, mongo_url: str, raw: Any) -> None:
    server = start_server(**on_mongo(mongo_url))
    client = server.client()
    name = user()
    client.create(name, "pw-1", nickname="Zoë")
    other = server.client()
    other.login(name, "pw-1")
    assert client.call("db")["type"] == "AsyncDatabase", "handler.connection.db is pymongo's AsyncDatabase"
    assert client.call("mongo_notes", {"text": "one"}) == ["one"]
    assert client.call("mongo_notes", {"text": "two"}) == ["one", "two"]

    account = raw["toto_accounts"].find_one({"user_id": name})
    assert account["fields"] == {"nickname": "Zoë"} and account["password_hash"].startswith("scrypt")
    stored = raw["toto_sessions"].find_one({"_id": other.session["session_id"]})
    assert stored["user_id"] == name
    assert abs(stored["expires_at"].timestamp() - other.session["expires"]) < 0.002, "the TTL index's date"
    assert [n["text"] for n in raw["notes"].find()] == ["one", "two"]


def test_the_processes_of_one_server_each_open_their_own_client(mongo_url: str) -> None:
    """``--processes=2`` forks before storage opens, so each child makes its own AsyncMongoClient."""
    port = free_ports(2)
    server = ServerProcess({**FAST, **on_mongo(mongo_url), "processes": 2}, cwd=BASIC_APP, port=port)
    with server:
        wait_until_answers(f"http://127.0.0.1:{port + 1}")
        first = server.client()
        name = user()
        first.create(name, "pw")
        assert first.call("counter.increment") == 1
        second = TotoClient(f"http://127.0.0.1:{port + 1}")
        second.session = dict(first.session)
        assert second.call("counter.increment") == 2
        assert second.call("whoami") == {"user_id": name}
        assert first.call("events.count")["pid"] != second.call("events.count")["pid"], "two processes"
        output = server.output()
    assert "opened before fork" not in output and "Traceback" not in output


def test_sliding_expiry_moves_the_ttl_date_and_an_expired_session_is_1007(
    start_server, mongo_url: str, raw: Any
) -> None:
    server = start_server(**on_mongo(mongo_url, session_ttl=3, session_renew=0))
    client = server.client()
    client.create(user(), "pw")
    session_id = client.session["session_id"]
    dates = []
    for _ in range(4):  # more than the TTL in all: each request pushes the expiry out
        time.sleep(0.9)
        client.call("whoami")
        dates.append(raw["toto_sessions"].find_one({"_id": session_id})["expires_at"])
    assert dates == sorted(dates) and dates[-1] > dates[0]
    assert abs(dates[-1].timestamp() - client.session["expires"]) < 0.002
    time.sleep(3.3)
    with pytest.raises(TotoClientError) as caught:
        client.call("whoami")
    assert caught.value.code == 1007


# -- application/bson ------------------------------------------------------------------------


def test_bson_calls_keep_binary_and_datetime_values(start_server, mongo_url: str) -> None:
    server = start_server(**on_mongo(mongo_url))
    client = server.client(serializer="bson")
    name = user()
    created = client.create(name, "pw")
    assert created["user_id"] == name
    when = datetime.datetime(2031, 5, 17, 8, 30, 1, 250000, tzinfo=UTC)
    sent = {
        "blob": bytes(range(256)),
        "when": when,
        "nested": {"list": [b"\x00", when, 1.5, None, "héllo ✓"]},
        "big": 2**62,
    }
    assert client.call("echo", sent) == sent
    assert client.call("whoami") == {"user_id": name}
    assert client.call("counter.increment") == 1


def test_bson_batches(start_server, mongo_url: str) -> None:
    server = start_server(**on_mongo(mongo_url))
    client = server.client(serializer="bson")
    client.create(user(), "pw")
    when = datetime.datetime(2020, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)
    answers = client.batch(
        {
            "a": ("echo", {"blob": b"\xff\x00", "when": when}),
            "b": ("counter.increment", None),
            "c": ("no.such.method", None),
        }
    )
    assert answers["a"] == {"blob": b"\xff\x00", "when": when}
    assert answers["b"] == 1
    assert isinstance(answers["c"], TotoClientError) and answers["c"].code == 1001


@pytest.mark.parametrize("hmac_mode", ["user_id", "session_key"])
def test_bson_answers_are_signed_over_their_exact_bytes(start_server, mongo_url: str, hmac_mode: str) -> None:
    server = start_server(**on_mongo(mongo_url, hmac_mode=hmac_mode))
    client = server.client(serializer="bson", hmac_mode=hmac_mode)
    name = user()
    client.create(name, "pw")  # the client verifies every signed answer (1009 when one is wrong)
    assert client.call("echo", {"blob": b"\x01\x02"}) == {"blob": b"\x01\x02"}

    body = bson.encode({"method": "echo", "parameters": {"blob": b"\x00sig\xff"}})
    status, headers, data = client.request(body)
    assert status == 200 and headers["Content-Type"] == "application/bson"
    answer = bson.decode(data)
    assert answer["result"] == {"blob": b"\x00sig\xff"} and answer["session"]["user_id"] == name
    if hmac_mode == "user_id":
        digest = hmac.new(name.encode(), data, hashlib.sha1).digest()
    else:
        key = base64.urlsafe_b64decode(client.session["key"] + "=" * (-len(client.session["key"]) % 4))
        digest = hmac.new(key, headers["x-toto-timestamp"].encode() + b"\n" + data, hashlib.sha256).digest()
    assert headers["x-toto-hmac"] == base64.b64encode(digest).decode()

    tampered = data.replace(b"sig", b"SIG")
    with pytest.raises(TotoClientError) as caught:
        client._decode(status, headers, tampered)
    assert caught.value.code == 1009

    if hmac_mode == "user_id":
        # The request's signature covers its BSON bytes too: a changed byte is refused and not run
        # (by a method that asks for the session: a public one runs without it).
        signed = bson.encode({"method": "whoami", "parameters": {"blob": b"\x00sig\xff"}})
        signature = {"x-toto-session-id": client.session["session_id"], "x-toto-hmac": user_id_hmac(name, signed)}
        status, _, data = client.request(
            signed.replace(b"sig", b"SIG"), content_type="application/bson", headers=signature, sign=False
        )
        assert bson.decode(data)["error"]["code"] == 1008


def test_accept_picks_the_answer_type(start_server, mongo_url: str) -> None:
    server = start_server(**on_mongo(mongo_url))
    json_body = b'{"method": "echo", "parameters": {"x": [1, "two"]}}'
    status, headers, data = server.client().request(
        json_body, content_type="application/json", headers={"Accept": "application/bson"}, sign=False
    )
    assert (status, headers["Content-Type"]) == (200, "application/bson")
    assert bson.decode(data) == {"result": {"x": [1, "two"]}}
    bson_body = bson.encode({"method": "echo", "parameters": {"x": 1}})
    status, headers, data = server.client().request(
        bson_body, content_type="application/bson", headers={"Accept": "application/json"}, sign=False
    )
    assert (status, headers["Content-Type"], data) == (200, "application/json", b'{"result":{"x":1}}')
    status, headers, data = server.client().request(
        b"", path="/echo?x=1&x=2", method="GET", headers={"Accept": "application/bson"}, sign=False
    )
    assert (status, headers["Content-Type"]) == (200, "application/bson")
    assert bson.decode(data) == {"result": {"x": ["1", "2"]}}


def test_bson_on_other_storage_and_as_the_state_serializer(start_server) -> None:
    """The serializer needs no MongoDB; it can also store session state (it never runs code)."""
    server = start_server(database="memory", state_serializer="bson")
    client = server.client(serializer="bson")
    client.create(user(), "pw")
    assert [client.call("counter.increment") for _ in range(2)] == [1, 2]


def deep_bson(levels: int) -> bytes:
    """{"a": {"a": ... {}}} nested ``levels`` deep, built without recursion."""
    heads, size = [], 5 + 8 * levels
    for _ in range(levels):
        heads.append(struct.pack("<i", size) + b"\x03a\x00")
        size -= 8
    return b"".join(heads) + b"\x05\x00\x00\x00\x00" + b"\x00" * levels


@pytest.mark.parametrize(
    "body",
    [
        b"\x05\x00\x00",  # shorter than a document
        b"\x05\x00\x00\x00\x01",  # no terminator
        b"\xff\x00\x00\x00" + b"\x00" * 20,  # a length past the end
        bson.encode({"method": "echo"}) + b"trailing",
        bson.encode({"method": "echo", "parameters": {"s": "x"}}).replace(b"x\x00", b"\xff\x00"),  # bad UTF-8
        b'{"method": "echo"}',  # JSON sent as BSON
    ],
    ids=["short", "unterminated", "overlong-length", "trailing-bytes", "bad-utf8", "json"],
)
def test_malformed_bson_is_400_with_1011(start_server, body: bytes) -> None:
    server = start_server(database="memory")
    status, _, answer = bson_post(server, body)
    assert status == 400
    assert answer["error"]["code"] == 1011 and "Malformed request body" in answer["error"]["value"]
    assert "Traceback" not in server.output()


def test_bson_nested_too_deeply_is_a_clear_400(start_server) -> None:
    server = start_server(database="memory")
    for levels in (5000, 150_000):  # (more elements than max_body_values would be 413)
        status, _, answer = bson_post(server, deep_bson(levels))
        assert status == 400
        assert answer["error"] == {
            "code": 1011,
            "value": "Malformed request body: the BSON document is nested too deeply",
        }
    nested = bson.decode(deep_bson(50))
    status, _, answer = bson_post(server, bson.encode({"method": "echo", "parameters": nested}))
    assert status == 200 and answer["result"] == nested, "ordinary nesting is fine"
    assert "Traceback" not in server.output()


def test_a_bson_document_over_16_mib_is_refused_with_413(start_server) -> None:
    server = start_server(database="memory", max_body_size=64 * 1024 * 1024)
    huge = bson.encode({"method": "echo", "parameters": {"blob": b"x" * (16 * 1024 * 1024)}})
    assert len(huge) > 16 * 1024 * 1024
    status, _, answer = bson_post(server, huge)
    assert status == 413
    assert answer["error"]["code"] == 1011 and "limited to 16 MiB" in answer["error"]["value"]
    just_under = bson.encode({"method": "echo", "parameters": {"blob": b"x" * (15 * 1024 * 1024)}})
    status, _, answer = bson_post(server, just_under)
    assert status == 200 and len(answer["result"]["blob"]) == 15 * 1024 * 1024


def test_an_answer_bson_cannot_carry_is_a_clear_error(start_server) -> None:
    server = start_server(database="memory")
    client = server.client(serializer="bson")
    with pytest.raises(TotoClientError) as caught:
        client.call("unserializable")
    assert caught.value.code == 1000 and "could not be serialized" in caught.value.value


# -- faults ----------------------------------------------------------------------------------


def test_a_killed_mongodb_answers_503_within_5_s_and_a_restart_heals(start_server, private_standin: StandIn) -> None:
    server = start_server(
        **with_default_timeout(private_standin.url("faults"))
    )  # the default mongo_timeout meets the bound
    client = server.client()
    bson_client = server.client(serializer="bson")
    name = user()
    client.create(name, "pw")
    bson_client.login(name, "pw")
    assert client.call("counter.increment") == 1

    private_standin.kill()
    calls = (
        lambda: client.call("whoami"),
        lambda: server.client().login(name, "pw"),
        lambda: bson_client.call("counter.increment"),
    )
    assert_unavailable_in_time(calls)

    private_standin.start()  # the same port and directory
    assert client.call("whoami") == {"user_id": name}, "the server recovers by itself"
    assert client.call("counter.increment") == 2
    assert bson_client.call("whoami") == {"user_id": name}
    server.client().login(name, "pw")
    assert "Traceback" not in server.output()


def test_a_conflicting_index_stops_the_server_with_a_message(mongo_url: str, raw: Any) -> None:
    raw["toto_sessions"].create_index("expires_at", name="expires_ttl", expireAfterSeconds=3600)
    server = ServerProcess({**FAST, **on_mongo(mongo_url)}, cwd=BASIC_APP)
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert "cannot prepare toto_accounts and toto_sessions" in str(caught.value)
    assert "Traceback" not in str(caught.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"database": "mongodb", "database_url": "redis://127.0.0.1:6379/0"}, "database 'mongodb' needs a MongoDB URL"),
        ({"database": "mongodb", "database_url": "mongodb://127.0.0.1:27017:x/db"}, "invalid MongoDB URL"),
    ],
)
def test_a_wrong_url_stops_the_server_with_a_message(options: dict[str, Any], message: str) -> None:
    server = ServerProcess({**FAST, **options}, cwd=BASIC_APP)
    with pytest.raises(RuntimeError) as caught:
        server.start()
    assert message in str(caught.value) and "Traceback" not in str(caught.value)
