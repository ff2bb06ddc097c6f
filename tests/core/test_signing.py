"""Request and response signing (PROTOCOL.md section 4) in all three modes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time

import pytest
from toto.client import TotoClient, TotoClientError
from toto.signing import decode_session_key, session_key_request_hmac


def sha1_b64(key: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode(), body, hashlib.sha1).digest()).decode()


def test_user_id_mode_signs_like_the_original_clients(server, user_id):
    c = server.client()
    c.create(user_id, "pw")
    sid = c.session["session_id"]
    body = json.dumps({"method": "whoami", "parameters": {}}).encode()
    # Computed here independently of toto.signing, the way the JS client does it.
    headers = {"x-toto-session-id": sid, "x-toto-hmac": sha1_b64(user_id, body), "Content-Type": "application/json"}
    status, response_headers, answer = c.request(body, headers=headers, sign=False)
    assert status == 200 and json.loads(answer)["result"] == {"user_id": user_id}
    assert response_headers["x-toto-hmac"] == sha1_b64(user_id, answer)
    assert response_headers["x-toto-hmac"].endswith("=")  # standard padded base64 (compat)


def test_create_and_login_answers_are_signed_with_the_new_user(server, user_id):
    c = server.client()
    body = json.dumps({"method": "account.create", "parameters": {"user_id": user_id, "password": "pw"}}).encode()
    status, headers, answer = c.request(body, sign=False)
    assert headers["x-toto-hmac"] == sha1_b64(user_id, answer)
    body = json.dumps({"method": "account.login", "parameters": {"user_id": user_id, "password": "pw"}}).encode()
    status, headers, answer = c.request(body, sign=False)
    assert headers["x-toto-hmac"] == sha1_b64(user_id, answer)


@pytest.mark.parametrize("hmac_header", [None, "", "AAAA", "not base64 at all ü"])
def test_missing_or_wrong_hmac_is_1008_and_does_not_run(server, user_id, hmac_header):
    c = server.client()
    c.create(user_id, "pw")
    c.call("state.set", {"mark": "before"})
    body = json.dumps({"method": "state.set", "parameters": {"mark": "forged"}}).encode()
    headers = {"x-toto-session-id": c.session["session_id"], "Content-Type": "application/json"}
    if hmac_header is not None:
        headers["x-toto-hmac"] = hmac_header
    status, response_headers, answer = c.request(body, headers=headers, sign=False)
    assert status == 200 and json.loads(answer)["error"]["code"] == 1008
    assert "x-toto-hmac" not in response_headers
    assert c.call("state.get", {"keys": ["mark"]}) == {"mark": "before"}


def test_signature_of_another_user_is_refused(server, user_id):
    victim, attacker = server.client(), server.client()
    victim.create(user_id, "pw")
    attacker.create(user_id + "-attacker", "pw")
    body = json.dumps({"method": "whoami"}).encode()
    headers = {
        "x-toto-session-id": victim.session["session_id"],
        "x-toto-hmac": sha1_b64(user_id + "-attacker", body),
    }
    _, _, answer = attacker.request(body, headers=headers, sign=False)
    assert json.loads(answer)["error"]["code"] == 1008


def test_get_requests_sign_the_empty_body(server, user_id):
    c = server.client()
    c.create(user_id, "pw")
    assert c.get("whoami") == {"user_id": user_id}


@pytest.fixture
def key_server(start_server):
    return start_server(hmac_mode="session_key")


def test_session_key_mode_round_trip(key_server, user_id):
    c = key_server.client(hmac_mode="session_key")
    answer = c.create(user_id, "pw")
    key = answer["key"]
    assert re.fullmatch(r"[A-Za-z0-9_\-]{43}", key) and len(decode_session_key(key)) == 32
    assert c.call("whoami") == {"user_id": user_id}
    assert c.get("whoami") == {"user_id": user_id}
    login = c.login(user_id, "pw")
    assert login["key"] != key  # every session has its own key
    assert c.call("whoami") == {"user_id": user_id}


def _signed(
    c: TotoClient, method: str, stamp: int, body: bytes, target: str = "/", nonce: str | None = None
) -> dict[str, str]:
    key = decode_session_key(c.session["key"])
    headers = {
        "x-toto-session-id": c.session["session_id"],
        "x-toto-timestamp": str(stamp),
        "x-toto-hmac": session_key_request_hmac(key, method, target, str(stamp), body, nonce),
        "Content-Type": "application/json",
    }
    if nonce is not None:
        headers["x-toto-nonce"] = nonce
    return headers


def test_session_key_replay_is_1015(key_server, user_id):
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    body = json.dumps({"method": "counter.increment"}).encode()
    headers = _signed(c, "POST", int(time.time()), body)
    first = json.loads(c.request(body, headers=headers, sign=False)[2])
    replay = json.loads(c.request(body, headers=headers, sign=False)[2])
    assert first["result"] == 1
    assert replay["error"]["code"] == 1015
    assert c.call("state.get", {"keys": ["count"]}) == {"count": 1}


def test_400_identical_calls_in_a_second_are_all_answered(key_server, user_id):
    # The same call on one session 400 times, all stamped with the same second: each
    # carries its own x-toto-nonce, so none is a replay.
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    body = json.dumps({"method": "echo", "parameters": {}}).encode()
    stamp = int(time.time())
    for n in range(400):
        headers = _signed(c, "POST", stamp, body, nonce=f"nonce-{n:012d}")
        status, _, answer = c.request(body, headers=headers, sign=False)
        assert status == 200 and "error" not in json.loads(answer), (n, answer)


def test_the_client_sends_identical_calls_without_replay_errors(key_server, user_id):
    # The client once stamped each repeat a second later than the one before, so 400
    # identical calls ran past the 300 s window ("Signature expired"); a nonce per call
    # keeps every stamp at the current second.
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    assert all(c.call("echo") == {} for _ in range(400))
    assert [c.call("counter.increment") for _ in range(5)] == [1, 2, 3, 4, 5]


def test_a_replayed_nonce_and_signature_is_1015(key_server, user_id):
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    body = json.dumps({"method": "counter.increment"}).encode()
    stamp = int(time.time())
    first = _signed(c, "POST", stamp, body, nonce="n" * 16)
    assert json.loads(c.request(body, headers=first, sign=False)[2])["result"] == 1
    assert json.loads(c.request(body, headers=first, sign=False)[2])["error"]["code"] == 1015
    # The same call with another nonce in the same second is a new request.
    second = _signed(c, "POST", stamp, body, nonce="m" * 16)
    assert json.loads(c.request(body, headers=second, sign=False)[2])["result"] == 2
    # The nonce is signed: swapping it under the same signature is a wrong signature.
    forged = dict(first, **{"x-toto-nonce": "o" * 16})
    assert json.loads(c.request(body, headers=forged, sign=False)[2])["error"]["code"] == 1008
    assert c.call("state.get", {"keys": ["count"]}) == {"count": 2}


@pytest.mark.parametrize("nonce", ["short", "x" * 65, "has space in it!!", "ünïcödé-nonce-text"])
def test_a_malformed_nonce_is_1008(key_server, user_id, nonce):
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    body = json.dumps({"method": "counter.increment"}).encode()
    headers = _signed(c, "POST", int(time.time()), body, nonce=nonce.encode("utf-8").decode("latin-1"))
    status, _, answer = c.request(body, headers=headers, sign=False)
    assert status == 200 and json.loads(answer)["error"]["code"] == 1008
    assert c.call("state.get", {"keys": ["count"]}) == {"count": None}


@pytest.mark.parametrize("skew", [-400, 400])
def test_session_key_stale_timestamp_is_1015(key_server, user_id, skew):
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    body = json.dumps({"method": "whoami"}).encode()
    headers = _signed(c, "POST", int(time.time()) + skew, body)
    assert json.loads(c.request(body, headers=headers, sign=False)[2])["error"]["code"] == 1015


def test_session_key_signature_covers_method_and_target(key_server, user_id):
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    body = json.dumps({"parameters": {}}).encode()
    headers = _signed(c, "POST", int(time.time()), body, target="/echo")
    _, _, answer = c.request(body, "/whoami", headers=headers, sign=False)
    assert json.loads(answer)["error"]["code"] == 1008
    headers = _signed(c, "POST", int(time.time()), body, target="/whoami")
    _, _, answer = c.request(body, "/whoami", headers=headers, sign=False)
    assert json.loads(answer)["result"] == {"user_id": user_id}


def test_session_key_user_id_signature_is_refused(key_server, user_id):
    c = key_server.client(hmac_mode="session_key")
    c.create(user_id, "pw")
    body = json.dumps({"method": "whoami"}).encode()
    headers = {
        "x-toto-session-id": c.session["session_id"],
        "x-toto-hmac": sha1_b64(user_id, body),
        "x-toto-timestamp": str(int(time.time())),
    }
    assert json.loads(c.request(body, headers=headers, sign=False)[2])["error"]["code"] == 1008


def test_off_mode_needs_no_signature(start_server, user_id):
    srv = start_server(hmac_mode="off")
    c = srv.client(hmac_mode="off")
    c.create(user_id, "pw")
    body = json.dumps({"method": "whoami"}).encode()
    status, headers, answer = c.request(body, headers={"x-toto-session-id": c.session["session_id"]}, sign=False)
    assert json.loads(answer)["result"] == {"user_id": user_id}
    assert "x-toto-hmac" not in headers


def test_client_rejects_a_bad_response_signature(key_server, user_id):
    # A client that expects user_id signatures talking to a session_key server sees
    # signatures it cannot verify: it must refuse them with 1009.
    c = key_server.client(hmac_mode="user_id")
    with pytest.raises(TotoClientError) as err:
        c.create(user_id, "pw")
    assert err.value.code == 1009
