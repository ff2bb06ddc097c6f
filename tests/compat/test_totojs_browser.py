"""Issue 12 item 2 in a real browser: headless Chromium runs a page of our own that signs
as toto.js does (the low byte of each UTF-16 code unit, XMLHttpRequest, its headers) and
creates an account, logs in, makes signed calls with non-ASCII parameters and a batch,
from another origin (PROTOCOL.md section 4, docs/compat.md "Signing")."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from toto.signing import toto_js_hmac, user_id_hmac

from tests.browser.pages import PageServer
from tests.browser.test_cors_browser import Chromium

PAGE = (Path(__file__).parent / "totojs_page.html").read_bytes()
TEXT = "naïve café ✓ 日本 😀"  # Latin-1, BMP and a surrogate pair: low bytes differ from UTF-8


@pytest.fixture
def page_server() -> Iterator[PageServer]:
    server = PageServer(PAGE)
    yield server
    server.close()


@pytest.fixture
def chromium() -> Iterator[Chromium]:
    browser = Chromium()
    yield browser
    browser.close()


def test_a_toto_js_style_client_in_chromium(seed_server, page_server, chromium):
    server = seed_server()
    user = f"Émile-{uuid.uuid4().hex[:6]}"  # non-ASCII: the key's low bytes differ from its UTF-8
    body = json.dumps({"method": "note", "parameters": {"text": TEXT}}, ensure_ascii=False, separators=(",", ":"))
    assert toto_js_hmac(user.lower(), body) != user_id_hmac(user.lower(), body.encode())
    chromium.open(f"{page_server.origin}/?{urlencode({'api': server.url + '/', 'user': user, 'text': TEXT})}")
    report = chromium.wait_report(page_server.reports)
    chromium.stop()
    assert "exception" not in report, report
    uid = user.lower()
    for step in ("create", "login"):
        assert report[step]["response"]["result"]["user_id"] == uid, report[step]
    # toto.js checks an answer with the user id it held: none before create; at login the
    # one create gave, and the login (signed with it, as toto.js signs) is answered in kind.
    assert report["create"]["responseSigned"] is None
    assert report["login"]["responseSigned"] is True
    assert report["newSession"] is True
    assert report["note"]["response"]["result"] == {"note": TEXT, "user_id": uid}, report["note"]
    assert report["note"]["responseSigned"] is True
    assert report["count"]["response"]["result"] == {"count": 1}
    batch = report["batch"]["response"]["batch"]
    assert batch == {
        "first": {"result": {"note": TEXT + " ✓✓", "user_id": uid}},
        "second": {"result": {"count": 2}},
        "third": {"result": {"user_id": uid, "echo": TEXT}},
    }
    assert report["batch"]["responseSigned"] is True
    # A signature that is wrong either way is refused.
    assert report["tampered"]["response"]["error"]["code"] == 1008
