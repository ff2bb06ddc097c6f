"""Issue 12 items 3 and 4: the handler surface seed code uses and cookie sessions with
credentialed CORS (docs/compat.md "Handler" and "Cookies")."""

from __future__ import annotations

import json
import re

import pytest
from toto.client import TotoClientError
from toto.testing import unique_user

from tests.compat.conftest import exchange

SECRET = "a cookie secret of this test"


def _post(url: str, method: str, parameters: dict, headers: dict | None = None):
    body = json.dumps({"method": method, "parameters": parameters}).encode()
    return exchange(url, body, {"content-type": "application/json", **(headers or {})})


def _cookie_jar(answer, jar: dict[str, str]) -> dict[str, str]:
    for line in answer.cookies:
        name, _, rest = line.partition("=")
        value = rest.split(";", 1)[0]
        if "max-age=0" in line.lower():
            jar.pop(name, None)
        else:
            jar[name] = value
    return jar


def _cookie_header(jar: dict[str, str]) -> dict[str, str]:
    return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}


def test_get_argument_and_arguments(seed_server):
    server = seed_server()
    answer = exchange(f"{server.url}/surface?what=arguments&one=%20x%20&many=1&many=2", method="GET")
    assert answer.json["result"] == {"one": "x", "many": ["1", "2"], "default": "dflt"}
    form = exchange(
        f"{server.url}/surface",
        b"what=arguments&one=form&many=a",
        {"content-type": "application/x-www-form-urlencoded"},
    )
    assert form.json["result"] == {"one": "form", "many": ["a"], "default": "dflt"}
    missing = exchange(f"{server.url}/surface?what=missing_argument", method="GET")
    assert missing.json["error"] == {"code": 1003, "value": "Missing argument absent"}


def test_cookies_and_signed_cookies(seed_server):
    server = seed_server(cookie_secret=SECRET)
    answer = _post(server.url, "surface", {"what": "set_cookies"})
    jar = _cookie_jar(answer, {})
    plain = next(c for c in answer.cookies if c.startswith("plain="))
    signed = next(c for c in answer.cookies if c.startswith("signed="))
    assert "HttpOnly" in plain and "HttpOnly" in signed and "secret-value" not in signed
    read = _post(server.url, "surface", {"what": "read_cookies"}, _cookie_header(jar))
    assert read.json["result"] == {"plain": "hello", "signed": "secret-value"}
    # An altered signed value reads as None, never as what the client wrote.
    jar["signed"] = jar["signed"].replace("|", "|0", 1)
    altered = _post(server.url, "surface", {"what": "read_cookies"}, _cookie_header(jar))
    assert altered.json["result"] == {"plain": "hello", "signed": None}
    cleared = _post(server.url, "surface", {"what": "clear_cookie"})
    assert any(c.startswith("plain=") and "Max-Age=0" in c for c in cleared.cookies)


def test_signed_cookies_need_a_cookie_secret(seed_server):
    server = seed_server()
    answer = _post(server.url, "surface", {"what": "set_cookies"})
    assert answer.json["error"]["code"] == 1000 and "cookie_secret" in answer.json["error"]["value"]


def test_info_raw_and_redirect(seed_server):
    server = seed_server()
    info = _post(server.url, "surface", {"what": "info"}).json["result"]
    assert info["same_id"] and info["is_uuid"] and re.fullmatch(r"[0-9a-f-]{36}", info["transaction_id"])
    assert info["response_type"] == "application/json" and info["debug"] is False
    assert info["db"] == "MemoryStorage" and info["path"] == "/"
    other = _post(server.url, "surface", {"what": "info"}).json["result"]
    assert other["transaction_id"] != info["transaction_id"]
    raw = _post(server.url, "surface", {"what": "raw"})
    assert raw.headers["content-type"] == "text/csv" and raw.body == b"a,b\n1,2\n"
    moved = _post(server.url, "surface", {"what": "redirect"})
    assert moved.status == 302 and moved.headers["location"] == "/elsewhere?from=surface"
    kept = _post(server.url, "surface", {"what": "redirect_status", "status": 307})
    assert kept.status == 307 and kept.headers["location"] == "/elsewhere"
    refused = _post(server.url, "surface", {"what": "redirect_status", "status": 200})
    assert refused.json["error"]["code"] == 1000, "a redirect's status is 3xx: 200 with a Location is refused"
    assert "location" not in refused.headers


def test_retrieve_session_by_id(seed_server):
    server = seed_server()
    user = unique_user()
    sid = server.client().create(user, "pw")["session_id"]
    link = server.client()  # a link: GET, no session header, no signature (user_id mode lets it name a session)

    def by_id(session_id: str) -> dict:
        status, _, body = link.request(path=f"/session_by_id?session_id={session_id}", method="GET", sign=False)
        return json.loads(body)

    assert by_id(sid)["result"] == {"user_id": user, "same": True}
    assert by_id("B" * 22)["result"] == {"user_id": None, "same": True}, "an unknown session is None, as the original's"
    # A request with a body must be signed for the session it names, as the original checked.
    with pytest.raises(TotoClientError) as refused:
        server.client().call("session_by_id", {"session_id": sid})
    assert refused.value.code == 1008


def test_cookie_sessions(seed_server, storage):
    # Unsigned, as the original served web apps (hmac_enabled defaulted to False there).
    server = seed_server(**storage, use_cookies=True, cookie_secret=SECRET, hmac_enabled=False)
    jar: dict[str, str] = {}
    visits = []
    for _ in range(3):
        answer = _post(server.url, "visit", {}, _cookie_header(jar))
        visits.append(answer.json["result"]["visits"])
        jar = _cookie_jar(answer, jar)
        cookie = next(c for c in answer.cookies if c.startswith("toto-session-id="))
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie and "expires=" in cookie
        assert answer.json["result"]["session_id"] not in cookie.split(";")[0].split("=", 1)[1].split("|")[0]
    assert visits == [1, 2, 3]
    # A forged or altered cookie names no session: the visit starts a new one.
    forged = _post(server.url, "visit", {}, {"Cookie": f"toto-session-id={answer.json['result']['session_id']}"})
    assert forged.json["result"]["visits"] == 1


def test_cookie_sessions_are_signed_like_header_sessions(seed_server):
    server = seed_server(use_cookies=True, cookie_secret=SECRET)
    user = unique_user()
    jar = _cookie_jar(_post(server.url, "account.create", {"user_id": user, "password": "pw"}), {})
    assert jar["toto-session-id"]
    # user_id mode checks signatures wherever the session id came from.
    counted = _post(server.url, "increment", {}, {**_cookie_header(jar), "x-toto-hmac": "-"})
    assert counted.json["error"]["code"] == 1008
    body = json.dumps({"method": "increment", "parameters": {}}).encode()
    from toto.signing import user_id_hmac

    signed = exchange(server.url, body, {**_cookie_header(jar), "x-toto-hmac": user_id_hmac(user, body)})
    assert signed.json["result"] == {"count": 1}


def test_cookie_sessions_unsigned_mode(seed_server):
    server = seed_server(use_cookies=True, cookie_secret=SECRET, hmac_enabled=False)
    user = unique_user()
    jar = _cookie_jar(_post(server.url, "account.create", {"user_id": user, "password": "pw"}), {})
    assert _post(server.url, "increment", {}, _cookie_header(jar)).json["result"] == {"count": 1}
    assert _post(server.url, "increment", {}, _cookie_header(jar)).json["result"] == {"count": 2}
    out = _post(server.url, "account.logout", {}, _cookie_header(jar))
    assert out.json["result"] == {"authenticated": False}
    assert any(c.startswith("toto-session-id=") and "Max-Age=0" in c for c in out.cookies)
    assert _post(server.url, "increment", {}, _cookie_header(jar)).json["error"]["code"] == 1007


def test_credentialed_cors(seed_server):
    allowed = "https://app.example"
    server = seed_server(use_cookies=True, cookie_secret=SECRET, allow_origin=f"{allowed} https://b.example")
    good = _post(server.url, "public", {}, {"Origin": allowed})
    assert good.headers["access-control-allow-origin"] == allowed
    assert good.headers["access-control-allow-credentials"] == "true"
    assert "Origin" in good.headers["vary"]
    other = _post(server.url, "public", {}, {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-credentials" not in other.headers
    preflight = exchange(
        server.url, None, {"Origin": allowed, "Access-Control-Request-Method": "POST"}, method="OPTIONS"
    )
    assert preflight.status == 204 and preflight.headers["access-control-allow-credentials"] == "true"
    # allow_origin=* never goes with credentials.
    star = seed_server(use_cookies=True, cookie_secret=SECRET)
    answer = _post(star.url, "public", {}, {"Origin": allowed})
    assert answer.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in answer.headers


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"use_cookies": True}, "use_cookies needs cookie_secret"),
        ({"use_cookies": True, "cookie_secret": SECRET, "cookie_samesite": "None"}, "secure_cookies"),
    ],
)
def test_cookie_option_mistakes_stop_the_server_with_one_line(seed_server, options, message):
    with pytest.raises(RuntimeError) as failed:
        seed_server(**options)
    assert message in str(failed.value) and "Traceback" not in str(failed.value)
