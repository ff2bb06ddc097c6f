"""Issue 12 item 2 from the clients' side: the exact requests of the iOS client (2012 and
2017 generations, read from github JeremyOT/TotoClient-iOS) and toto.js's signature over
non-ASCII text, replayed byte for byte against the server (PROTOCOL.md section 4,
docs/compat.md "Signing")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from urllib.parse import quote

import pytest
from toto.signing import toto_js_hmac, user_id_hmac, utf16_low_bytes
from toto.testing import unique_user

from tests.compat.conftest import exchange

TEXT = "café/日本 ✓"  # non-ASCII, and a "/" that NSJSONSerialization writes as "\/"


def ns_json(value: object) -> bytes:
    """What NSJSONSerialization (options 0) writes: compact, UTF-8, "/" escaped."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).replace("/", "\\/").encode("utf-8")


class IOSClient:
    """The requests TotoService builds: POST / with {"method", "parameters"} (or {"batch"}),
    content-type application/json, and once signed in x-toto-session-id plus, when it signs
    (always in 2012; ``signsRequests``, off by default, in 2017), x-toto-hmac over the body
    it serialized, also for GET calls that send the parameters in the query instead."""

    def __init__(self, url: str, signs: bool) -> None:
        self.url = url
        self.signs = signs
        self.session: dict[str, str] | None = None

    def _headers(self, body: bytes) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.session and self.session.get("user_id"):
            headers["x-toto-session-id"] = self.session["session_id"]
            if self.signs:
                headers["x-toto-hmac"] = user_id_hmac(self.session["user_id"], body)
        return headers

    def _read(self, answer) -> dict:
        assert answer.status == 200, answer.body
        envelope = answer.json
        if "session" in envelope:
            self.session = envelope["session"]
            # Both generations check the answer's signature with the user id as UTF-8.
            if self.session.get("user_id"):
                assert answer.headers["x-toto-hmac"] == user_id_hmac(self.session["user_id"], answer.body)
        return envelope

    def call(self, method: str, parameters: dict | None = None) -> dict:
        # The key order of an NSDictionary is its own: "parameters" first here, and the
        # server must hash the bytes as sent rather than rebuild them.
        body = ns_json({"parameters": parameters or {}, "method": method})
        return self._read(exchange(self.url, body, self._headers(body)))

    def get(self, method: str, parameters: dict) -> dict:
        body = ns_json({"method": method, "parameters": parameters})  # signed, never sent
        query = "&".join(f"{quote(k)}={quote(str(v))}" for k, v in parameters.items())
        return self._read(exchange(f"{self.url}/{quote(method)}?{query}", None, self._headers(body), "GET"))

    def batch(self, calls: dict[str, tuple[str, dict]]) -> dict:
        body = ns_json({"batch": {key: {"method": m, "parameters": p} for key, (m, p) in calls.items()}})
        return self._read(exchange(self.url, body, self._headers(body)))


def _session_calls(client: IOSClient) -> None:
    user = unique_user().replace("user", "User")  # mixed case: the server lower-cases it
    created = client.call("account.create", {"user_id": user, "password": "pw/1"})
    assert created["result"]["user_id"] == user.lower() == client.session["user_id"]
    assert client.call("note", {"text": TEXT})["result"] == {"note": TEXT, "user_id": user.lower()}
    listed = client.get("list_items", {"tag": TEXT, "page": 2})
    assert listed["result"] == {"params": {"tag": TEXT, "page": "2"}, "user_id": user.lower()}
    first, second = str(uuid.uuid4()).upper(), str(uuid.uuid4()).upper()  # TCUUID's request ids
    answers = client.batch({first: ("increment", {}), second: ("note", {"text": TEXT + "!"})})["batch"]
    assert answers == {
        first: {"result": {"count": 1}},
        second: {"result": {"note": TEXT + "!", "user_id": user.lower()}},
    }
    assert client.call("account.logout")["result"] == {"authenticated": False}


@pytest.mark.parametrize(
    ("generation", "signs", "options"),
    [
        ("2012", True, {}),
        ("2017 signing", True, {}),
        ("2017 default", False, {"hmac_enabled": False}),
    ],
)
def test_ios_client_requests(seed_server, storage, generation, signs, options):
    server = seed_server(**storage, **options)
    _session_calls(IOSClient(server.url, signs))


def test_ios_2017_default_needs_hmac_enabled_false(seed_server):
    """Unsigned requests are refused by default (1008 for @authenticated methods) and served
    with hmac_enabled=False, which still signs the answers."""
    server = seed_server()
    client = IOSClient(server.url, signs=False)
    client.call("account.create", {"user_id": unique_user(), "password": "pw"})
    assert client.call("increment")["error"]["code"] == 1008
    assert client.get("list_items", {"a": "b"})["result"]["user_id"] is None  # public: runs without it


def test_toto_js_signature_over_non_ascii_text(seed_server, storage):
    server = seed_server(**storage)
    user = "émile-" + uuid.uuid4().hex[:6]  # the key is non-ASCII too
    session = server.client().create(user, "pw")
    body_text = json.dumps({"method": "note", "parameters": {"text": TEXT}}, ensure_ascii=False, separators=(",", ":"))
    body = body_text.encode("utf-8")  # what XMLHttpRequest sends for a JS string
    assert toto_js_hmac(user, body_text) != user_id_hmac(user, body)
    headers = {"content-type": "application/json", "x-toto-session-id": session["session_id"]}
    for signature, answer_key in (
        (toto_js_hmac(user, body_text), utf16_low_bytes(user)),
        (user_id_hmac(user, body), user.encode()),
    ):
        answer = exchange(server.url, body, {**headers, "x-toto-hmac": signature})
        assert answer.json["result"] == {"note": TEXT, "user_id": user}
        # The answer is signed in the form the request was: toto.js checks with its key's low bytes.
        expected = base64.b64encode(hmac.new(answer_key, answer.body, hashlib.sha1).digest()).decode()
        assert answer.headers["x-toto-hmac"] == expected
    for signature in (toto_js_hmac(user + "x", body_text), toto_js_hmac(user, body_text + " ")):
        answer = exchange(server.url, body, {**headers, "x-toto-hmac": signature})
        assert answer.json["error"]["code"] == 1008


def test_toto_js_low_bytes_match_jssha():
    """jsSHA's "ASCII" input keeps charCodeAt(i) & 0xff of each UTF-16 code unit."""
    assert utf16_low_bytes("aé日😀") == bytes([0x61, 0xE9, 0xE5, 0x3D, 0x00])


def test_hmac_enabled_false_accepts_any_request_signature(seed_server):
    server = seed_server(hmac_enabled=False)
    user = unique_user()
    session = server.client().create(user, "pw")
    body = json.dumps({"method": "increment"}).encode()
    headers = {"x-toto-session-id": session["session_id"]}
    for extra in ({}, {"x-toto-hmac": "wrong"}):
        answer = exchange(server.url, body, {**headers, **extra})
        assert "result" in answer.json
        assert answer.headers["x-toto-hmac"] == user_id_hmac(user, answer.body)
