"""Issue 12 items 1 and 2: the session as the original's dict proxy, sessions checked only
where a method asks for one, and an account package over ``handler.db_connection``; on
memory, sqlite and redis (PROTOCOL.md section 3, docs/compat.md "Sessions")."""

from __future__ import annotations

import json

import pytest
from toto.client import TotoClientError
from toto.signing import user_id_hmac
from toto.testing import TcpProxy, unique_user

from tests.compat.conftest import exchange, redis_storage
from tests.redis.conftest import REDIS_HOST, REDIS_PORT


def test_counter_with_session_n_or_0(seed_server, storage):
    server = seed_server(**storage)
    client = server.client()
    user = unique_user()
    created = client.create(user, "pw-1")
    assert created["user_id"] == user and len(created["session_id"]) == 22
    assert [client.call("increment")["count"] for _ in range(3)] == [1, 2, 3]
    # A second login is a new session of the same account: its state starts empty.
    other = server.client()
    other.login(user, "pw-1")
    assert other.session["session_id"] != client.session["session_id"]
    assert other.call("increment") == {"count": 1}
    assert client.call("increment") == {"count": 4}


def test_the_account_package_over_db_connection(seed_server, storage):
    server = seed_server(**storage)
    client = server.client()
    user = unique_user()
    client.create(user, "first")
    with pytest.raises(TotoClientError) as taken:
        server.client().create(user, "again")
    assert taken.value.code == 1006
    # A wrong password is the answer, and that answer names no session.
    status, _, body = server.client().request(
        json.dumps({"method": "account.login", "parameters": {"user_id": user, "password": "wrong"}}).encode(),
        sign=False,
    )
    answer = json.loads(body)
    assert answer["error"]["code"] == 1005 and "session" not in answer
    assert server.client().call("account.check_password", {"user_id": user, "password": "first"}) == {"valid": True}
    assert server.client().call("account.check_password", {"user_id": user, "password": "nope"}) == {"valid": False}
    # change_password ends the user's other sessions and keeps the caller's.
    bystander = server.client()
    bystander.login(user, "first")
    assert client.call("account.change_password", {"password": "first", "new_password": "second"}) == {"changed": True}
    assert client.call("increment") == {"count": 1}
    with pytest.raises(TotoClientError) as ended:
        bystander.call("increment")
    assert ended.value.code == 1007
    with pytest.raises(TotoClientError):
        server.client().login(user, "first")
    server.client().login(user, "second")
    # generate_password (awaited, async method) replaces the password and ends every session.
    fresh = server.client().call("account.forgot_password", {"user_id": user})["password"]
    with pytest.raises(TotoClientError) as reset:
        client.call("increment")
    assert reset.value.code == 1007
    client.login(user, fresh)
    assert client.call("account.logout") == {"authenticated": False}
    with pytest.raises(TotoClientError) as out:
        client.call("increment")
    assert out.value.code == 1007


def test_create_session_is_awaitable_from_async_code(seed_server):
    server = seed_server()
    user = unique_user()
    server.client().create(user, "pw")
    client = server.client()
    answer = client.call("async_sign_in", {"user_id": user, "password": "pw"})
    assert answer == {"user_id": user, "is_handlers": True}
    assert client.session["user_id"] == user
    assert client.call("increment") == {"count": 1}
    with pytest.raises(TotoClientError) as wrong:
        server.client().call("async_sign_in", {"user_id": user, "password": "bad"})
    assert wrong.value.code == 1005


def test_dict_proxy(seed_server, storage):
    server = seed_server(**storage)
    client = server.client()
    client.create(unique_user(), "pw")
    written = client.call("state_proxy", {"step": "write", "name": "Zoë"})
    assert written == {"missing": None, "has_name": True, "has_other": False}
    # Falsy values come back as stored (the original answered None for them: docs/compat.md).
    assert client.call("state_proxy", {"step": "read"}) == {
        "zero": 0,
        "empty": "",
        "items": [],
        "name": "Zoë",
        "keys": ["empty", "items", "name", "zero"],
        "len": 4,
        "get": "fallback",
    }
    assert client.call("state_proxy", {"step": "replace"}) == {"keys": ["replaced"]}
    assert client.call("state_proxy", {"step": "read"})["keys"] == ["replaced"]
    assert client.call("state_proxy", {"step": "drop"}) == {"keys": []}
    assert client.call("state_proxy", {"step": "read"})["len"] == 0


def test_refresh_reads_what_another_request_saved(seed_server):
    server = seed_server()
    client = server.client()
    client.create(unique_user(), "pw")
    client.call("increment")
    twin = server.client()
    twin.session = dict(client.session)
    twin.call("increment")
    assert client.call("refresh") == {"before": 2, "after": 2}


def test_toto_session_is_importable():
    from toto.session import TotoSession
    from toto.sessions import Session

    assert TotoSession is Session


def _post(server, method, parameters, session_id=None, hmac=None):
    body = json.dumps({"method": method, "parameters": parameters}).encode()
    headers = {"content-type": "application/json"}
    if session_id is not None:
        headers["x-toto-session-id"] = session_id
    if hmac is not None:
        headers["x-toto-hmac"] = hmac
    return exchange(server.url, body, headers), body


def test_public_methods_never_fail_because_of_the_session(seed_server, storage):
    server = seed_server(**storage)
    client = server.client()
    user = unique_user()
    session = client.create(user, "pw")
    sid = session["session_id"]
    body = json.dumps({"method": "public", "parameters": {"text": "hi"}}).encode()
    good = exchange(server.url, body, {"x-toto-session-id": sid, "x-toto-hmac": user_id_hmac(user, body)})
    assert good.json["result"] == {"user_id": user, "echo": "hi"} and good.json["session"]["session_id"] == sid
    # Unknown, badly signed or unsigned: the public method runs without the session.
    for headers in (
        {"x-toto-session-id": "A" * 22, "x-toto-hmac": user_id_hmac(user, body)},
        {"x-toto-session-id": sid, "x-toto-hmac": "bm90IGl0"},
        {"x-toto-session-id": sid},
        {"x-toto-session-id": "not a session id!"},
    ):
        answer = exchange(server.url, body, headers)
        assert answer.status == 200
        assert answer.json == {"result": {"user_id": None, "echo": "hi"}}, headers
        assert "x-toto-hmac" not in answer.headers
    # @authenticated keeps its answers: 1004 without a session, 1007 unknown, 1008 badly signed.
    for headers, code in (
        ({}, 1004),
        ({"x-toto-session-id": "A" * 22, "x-toto-hmac": "x"}, 1007),
        ({"x-toto-session-id": sid, "x-toto-hmac": "bm90IGl0"}, 1008),
        ({"x-toto-session-id": sid}, 1008),
    ):
        answer, _ = _post(server, "increment", {}, headers.get("x-toto-session-id"), headers.get("x-toto-hmac"))
        assert answer.json["error"]["code"] == code, headers
        assert "session" not in answer.json
    # Nothing ran: the counter starts at 1 for the properly signed call.
    assert client.call("increment") == {"count": 1}


def test_a_batch_refuses_only_its_authenticated_entries(seed_server):
    server = seed_server()
    user = unique_user()
    sid = server.client().create(user, "pw")["session_id"]
    body = json.dumps(
        {"batch": {"a": {"method": "public", "parameters": {"text": "x"}}, "b": {"method": "increment"}}}
    ).encode()
    answer = exchange(server.url, body, {"x-toto-session-id": sid, "x-toto-hmac": "wrong"}).json
    assert answer["batch"]["a"] == {"result": {"user_id": None, "echo": "x"}}
    assert answer["batch"]["b"]["error"]["code"] == 1008


def test_public_calls_without_a_session_id_do_not_touch_the_storage(seed_server):
    with TcpProxy(REDIS_HOST, REDIS_PORT) as proxy, redis_storage("127.0.0.1", proxy.port) as options:
        server = seed_server(**options)
        sid = server.client().create(unique_user(), "pw")["session_id"]
        proxy.cut()
        plain, _ = _post(server, "public", {"text": "no storage"})
        assert plain.status == 200 and plain.json == {"result": {"user_id": None, "echo": "no storage"}}
        named, _ = _post(server, "public", {"text": "x"}, session_id=sid)
        assert named.status == 503 and named.json["error"]["code"] == 1013
