"""Cookie sessions (``use_cookies``) against requests another site can make a visitor's browser
send: links, forms, ``<script>`` tags (JSONP). PROTOCOL.md section 3, toto.origins; the
socket form of the same rule is in toto.testing.sockets. Raw HTTP with the headers a browser
sends (``Origin``, ``Sec-Fetch-Site``, ``Referer``), on every transport."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from toto.testing import ServerProcess, unique_user

from tests.conftest import BASIC_APP, FAST

SECRET = "the cross-site tests' cookie secret"
#: The modes docs/compat.md names for web apps on cookies (no signatures a page could make).
COOKIE_MODES = {"off": {"hmac_mode": "off"}, "unsigned": {"hmac_enabled": False}}
EVIL = "https://evil.example"
#: What a browser sends when another site's link, image or script reaches the server.
CROSS_SITE_LINK = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Referer": EVIL + "/page"}
CROSS_SITE_SCRIPT = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Dest": "script", "Referer": EVIL + "/page"}
FORM = "application/x-www-form-urlencoded"


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()
        self.cookies = [c for c in response.headers.get_all("Set-Cookie") or [] if c.startswith("toto-session-id=")]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def send(server: ServerProcess, verb: str, target: str, headers: dict[str, str], body: bytes | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(verb, target, body=body, headers=headers)
        return Answer(conn.getresponse())
    finally:
        conn.close()


def own(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{server.port}"


def sign_up(server: ServerProcess) -> tuple[str, str]:
    """An account made by the site's own script (a JSON POST): its user id and session cookie."""
    user = unique_user()
    body = json.dumps({"method": "account.create", "parameters": {"user_id": user, "password": "a long secret"}})
    answer = send(server, "POST", "/", {"Content-Type": "application/json", "Origin": own(server)}, body.encode())
    assert answer.cookies, answer.body
    return user, answer.cookies[0].split(";", 1)[0]


def user_of(answer: Answer) -> str | None:
    """Whom ``whoami`` ran as (None: no session, 1004)."""
    envelope = answer.json
    if "error" in envelope:
        assert envelope["error"]["code"] == 1004, envelope
        return None
    return str(envelope["result"]["user_id"])


@pytest.fixture(scope="module")
def sites(http_transport: str) -> Iterator[Callable[..., ServerProcess]]:
    """``sites(mode, **options)``: a cookie-session server of the basic app, one per set of options."""
    started: dict[str, ServerProcess] = {}

    def site(mode: str = "off", **options: Any) -> ServerProcess:
        key = json.dumps([mode, options], sort_keys=True)
        if key not in started:
            settings = {**FAST, "use_cookies": True, "cookie_secret": SECRET, **COOKIE_MODES.get(mode, {}), **options}
            started[key] = ServerProcess(settings, cwd=BASIC_APP).start()
        return started[key]

    yield site
    for server in started.values():
        server.close()


@pytest.mark.parametrize("mode", COOKIE_MODES)
def test_jsonp_never_answers_with_the_cookie_session(sites, mode: str) -> None:
    server = sites(mode)
    user, cookie = sign_up(server)
    for headers in ({}, CROSS_SITE_SCRIPT, {"Sec-Fetch-Site": "same-origin"}, {"Origin": own(server)}):
        answer = send(server, "GET", "/secret?jsonp=steal", {"Cookie": cookie, **headers})
        assert b"only-for-" not in answer.body and user.encode() not in answer.body, (headers, answer.body)
        assert answer.json["error"]["code"] == 1004, "a JSONP call runs as if no cookie came"
        assert not answer.cookies, "nor does its answer set or clear the cookie"
    # The same method, not as JSONP, from the site's own page: the cookie's session.
    mine = send(server, "GET", "/secret", {"Cookie": cookie, "Sec-Fetch-Site": "same-origin"})
    assert mine.json["result"] == {"user_id": user, "secret": "only-for-" + user}


@pytest.mark.parametrize("mode", COOKIE_MODES)
def test_requests_another_site_can_send_run_without_the_cookie(sites, mode: str) -> None:
    server = sites(mode)
    user, cookie = sign_up(server)
    foreign = {
        "a link (a browser of today)": ("GET", CROSS_SITE_LINK, None),
        "a link of another site on this one (same-site)": ("GET", {"Sec-Fetch-Site": "same-site"}, None),
        "a link (a browser without Sec-Fetch-Site)": ("GET", {"Referer": EVIL + "/page"}, None),
        "a link without a Referer (rel=noreferrer)": ("GET", {}, None),
        "a form": ("POST", {"Origin": EVIL, "Content-Type": FORM, "Sec-Fetch-Site": "cross-site"}, b"x=1"),
        "a form (a browser without Sec-Fetch-Site)": ("POST", {"Origin": EVIL, "Content-Type": FORM}, b"x=1"),
        "a sandboxed page": ("POST", {"Origin": "null", "Content-Type": FORM}, b"x=1"),
        "a form without Origin": ("POST", {"Content-Type": FORM}, b"x=1"),
    }
    for what, (verb, headers, body) in foreign.items():
        answer = send(server, verb, "/whoami", {"Cookie": cookie, **headers}, body)
        assert user_of(answer) is None, f"{what} ran as the visitor"
        assert not answer.cookies, f"the answer to {what} set or cleared the cookie"
    mine = {
        "a link on the site's own page": ("GET", {"Sec-Fetch-Site": "same-origin"}, None),
        "a typed or bookmarked address": ("GET", {"Sec-Fetch-Site": "none"}, None),
        "a link on its own page (a browser without Sec-Fetch-Site)": ("GET", {"Referer": own(server) + "/app"}, None),
        "its own form": ("POST", {"Origin": own(server), "Content-Type": FORM, "Sec-Fetch-Site": "same-origin"}, b""),
        "its own form (a browser without Sec-Fetch-Site)": ("POST", {"Origin": own(server), "Content-Type": FORM}, b""),
        "its own script (JSON)": ("POST", {"Origin": own(server), "Content-Type": "application/json"}, b"{}"),
        "a client that is not a browser (JSON)": ("POST", {"Content-Type": "application/json"}, b"{}"),
        "a client that is not a browser (a custom header)": ("GET", {"X-Requested-With": "XMLHttpRequest"}, None),
    }
    for what, (verb, headers, body) in mine.items():
        answer = send(server, verb, "/whoami", {"Cookie": cookie, **headers}, body)
        assert user_of(answer) == user, f"{what} lost the visitor's session"
        assert answer.cookies, f"the answer to {what} renews the cookie"


@pytest.mark.parametrize("mode", ["off", "unsigned", "user_id", "session_key"])
def test_account_methods_are_never_served_by_get(sites, mode: str) -> None:
    options = {"hmac_mode": mode} if mode in ("user_id", "session_key") else {}
    server = sites(mode, **options)
    user, _ = sign_up(server)
    for verb in ("GET", "HEAD"):
        login = send(server, verb, f"/account/login?user_id={user}&password=a+long+secret", {})
        assert login.status == 405 and login.headers["Allow"] == "POST", (verb, login.status)
        assert not login.cookies, "a link signs nobody in"
        if verb == "GET":
            assert login.json["error"]["code"] == 1017 and "POST" in login.json["error"]["value"]
    assert send(server, "GET", "/account/create?user_id=x&password=y", {}).status == 405


@pytest.mark.parametrize("mode", COOKIE_MODES)
def test_a_link_cannot_sign_the_visitor_out_or_in(sites, mode: str) -> None:
    """Login CSRF: a page of another site that signs the visitor into the attacker's account
    (by a link or a form) plants no cookie; a link to logout leaves the visitor signed in."""
    server = sites(mode)
    user, cookie = sign_up(server)
    attacker, _ = sign_up(server)
    for headers in (CROSS_SITE_LINK, {"Sec-Fetch-Site": "same-origin"}):
        out = send(server, "GET", "/account/logout", {"Cookie": cookie, **headers})
        assert out.status == 405 and not out.cookies, "a link signs nobody out, nor clears the cookie"
    form = f"user_id={attacker}&password=a+long+secret".encode()
    planted = send(
        server,
        "POST",
        "/account/login",
        {"Cookie": cookie, "Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": FORM},
        form,
    )
    assert not planted.cookies, "another site's form must not give the visitor a session cookie"
    after = send(server, "GET", "/whoami", {"Cookie": cookie, "Sec-Fetch-Site": "same-origin"})
    assert user_of(after) == user, "the visitor is still signed in as themselves"
    # The site's own login form works: its answer sets the cookie.
    signed_in = send(
        server,
        "POST",
        "/account/login",
        {"Origin": own(server), "Sec-Fetch-Site": "same-origin", "Content-Type": FORM},
        form,
    )
    assert signed_in.cookies and signed_in.json["result"]["user_id"] == attacker


def test_listed_origins_keep_the_cookie_whatever_way_they_are_written(sites) -> None:
    server = sites("off", allow_origin="https://app.example,  HTTPS://Admin.example:443/")
    user, cookie = sign_up(server)
    for origin in ("https://app.example", "https://admin.example"):
        answer = send(
            server, "POST", "/whoami", {"Cookie": cookie, "Origin": origin, "Content-Type": "application/json"}, b"{}"
        )
        assert user_of(answer) == user, origin
        assert answer.headers["Access-Control-Allow-Origin"] == origin
        assert answer.headers["Access-Control-Allow-Credentials"] == "true"
        link = send(
            server, "GET", "/whoami", {"Cookie": cookie, "Sec-Fetch-Site": "same-site", "Referer": origin + "/x"}
        )
        assert user_of(link) == user, "a link from a listed origin"
    other = send(
        server, "POST", "/whoami", {"Cookie": cookie, "Origin": EVIL, "Content-Type": "application/json"}, b"{}"
    )
    assert user_of(other) is None and "Access-Control-Allow-Credentials" not in other.headers


def test_an_answer_that_never_read_the_session_leaves_the_cookie(sites) -> None:
    server = sites("off")
    user, cookie = sign_up(server)
    same = {"Cookie": cookie, "Sec-Fetch-Site": "same-origin"}
    for target in ("/no_such_method", "/account/logout"):
        answer = send(server, "GET", target, same)
        assert "error" in answer.json and not answer.cookies, target
    assert user_of(send(server, "GET", "/whoami", same)) == user
    # Signing out does clear it.
    out = send(
        server, "POST", "/account/logout", {**same, "Origin": own(server), "Content-Type": "application/json"}, b"{}"
    )
    assert out.json["result"] == {"authenticated": False}
    assert out.cookies and "Max-Age=0" in out.cookies[0]
