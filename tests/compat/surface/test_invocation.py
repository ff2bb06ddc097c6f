"""The original's ``toto.invocation`` decorators, in methods written its way, over HTTP."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from toto.client import TotoClientError
from toto.testing import unique_user as user

from tests.compat.surface.conftest import DATABASES


def test_star_import_gives_the_original_names_and_the_exception_keeps_its_shape() -> None:
    """What ``from toto.invocation import *`` binds, read in a fresh interpreter as a method module would."""
    probe = (
        "from toto.invocation import *\n"
        "import json\n"
        "e = TotoException(ERROR_NOT_AUTHORIZED, 'Not authorized')\n"
        "names = sorted(n for n in dir() if n.startswith('ERROR_'))\n"
        "print(json.dumps({'names': names, 'str': str(e), 'repr': repr(e), 'dict': e.__dict__,\n"
        "  'decorators': [callable(d) for d in (authenticated, optionally_authenticated, anonymous_session,\n"
        "    authenticated_with_parameter, requires, asynchronous, raw_response, jsonp, error_redirect,\n"
        "    default_parameters)], 'extra': [coroutine.__module__, Return.__name__, TaskQueue.__name__]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    original = [
        "ERROR_SERVER", "ERROR_INVALID_METHOD", "ERROR_MISSING_METHOD", "ERROR_MISSING_PARAMS",
        "ERROR_NOT_AUTHORIZED", "ERROR_USER_NOT_FOUND", "ERROR_USER_ID_EXISTS", "ERROR_INVALID_SESSION_ID",
        "ERROR_INVALID_HMAC", "ERROR_INVALID_RESPONSE_HMAC", "ERROR_INVALID_USER_ID",
    ]  # fmt: skip
    assert set(original) <= set(seen["names"])
    assert seen["dict"] == {"value": "Not authorized", "code": 1004}
    assert seen["str"] == str({"value": "Not authorized", "code": 1004}) == seen["repr"]
    assert all(seen["decorators"])
    assert seen["extra"] == ["tornado.gen", "Return", "TaskQueue"]


# -- jsonp ---------------------------------------------------------------------------------------


def test_jsonp_wraps_the_result_in_the_callback_as_javascript(seed_server) -> None:
    server = seed_server()
    client = server.client()
    status, headers, body = client.request(path="/feed?jsonp=jQuery12_3.done&limit=5", method="GET", sign=False)
    assert status == 200
    assert headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert headers["X-Content-Type-Options"] == "nosniff"
    text = body.decode("ascii")  # non-ASCII is escaped, so the script is ASCII whatever the page's charset
    found = re.fullmatch(r"/\*\*/jQuery12_3\.done\((.*)\);", text)
    assert found, text
    assert json.loads(found.group(1)) == {"items": ["a", "ü", "</script>"], "limit": "5"}
    assert "jsonp" not in found.group(1), "the callback parameter is taken out of the parameters"


def test_jsonp_without_the_callback_is_an_ordinary_call(seed_server) -> None:
    server = seed_server()
    assert server.client().call("feed", {"limit": 2}) == {"items": ["a", "ü", "</script>"], "limit": 2}


@pytest.mark.parametrize(
    "callback",
    ["alert(1)//", "x;alert(1)", "a b", "1abc", "a..b", "a.", "cb</script>", "é", "a" * 129, "a-b", "a[0]"],
)
def test_a_jsonp_callback_that_is_not_a_javascript_name_is_refused(seed_server, callback: str) -> None:
    server = seed_server()
    client = server.client()
    status, headers, body = client.request(
        json.dumps({"method": "feed", "parameters": {"jsonp": callback}}).encode(), content_type="application/json"
    )
    assert status == 400
    assert headers["Content-Type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == 1011 and "JavaScript function name" in error["value"]
    assert "Traceback" not in server.output()


def test_jsonp_with_its_own_parameter_name_over_a_session_named_by_parameter(seed_server) -> None:
    server = seed_server()
    client = server.client()
    name = user()
    session = client.create(name, "pw")
    anonymous = server.client()  # a <script> tag: no headers, no signature
    status, headers, body = anonymous.request(
        path=f"/members?callback=show&session_id={session['session_id']}", method="GET", sign=False
    )
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    found = re.fullmatch(r"/\*\*/show\((.*)\);", body.decode("ascii"))
    assert found and json.loads(found.group(1)) == {"user_id": name}
    status, headers, body = anonymous.request(path="/members?callback=show", method="GET", sign=False)
    assert json.loads(body)["error"]["code"] == 1004, "no session: the ordinary error answer, not a script"


# -- raw_response ----------------------------------------------------------------------------------


def test_raw_response_sends_the_bytes_with_the_methods_content_type(seed_server) -> None:
    server = seed_server()
    client = server.client()
    status, headers, body = client.request(path="/download", method="GET", sign=False)
    assert status == 200
    assert headers["Content-Type"] == "application/octet-stream"
    assert body == b"\x00\x01raw"
    status, headers, body = client.request(path="/download?as=csv&count=3", method="GET", sign=False)
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert body.decode("utf-8") == "name,count\nZoë,3\n"
    status, headers, body = client.request(path="/download?as=csv", method="HEAD", sign=False)
    assert status == 200 and body == b"" and headers["Content-Type"] == "text/csv; charset=utf-8"


# -- error_redirect --------------------------------------------------------------------------------


def test_error_redirect_sends_the_mapped_error_to_its_page(seed_server) -> None:
    server = seed_server()
    client = server.client()
    status, headers, body = client.request(path="/pages/private", method="GET", sign=False)
    assert status == 302 and headers["Location"] == "/login.html", "1004 maps to the login page"
    assert body == b""
    client.create(user(), "pw")
    assert client.call("pages.private")["user_id"], "no error: the ordinary answer"
    status, headers, body = client.request(
        json.dumps({"method": "pages.private", "parameters": {"fail": True}}).encode()
    )
    assert status == 302 and headers["Location"] == "/error.html", "an unmapped error goes to the default"


def test_error_redirect_maps_status_codes_and_answers_unmapped_errors_as_usual(seed_server) -> None:
    server = seed_server()
    client = server.client()
    status, headers, _ = client.request(path="/pages/strict?missing=1", method="GET", sign=False)
    assert status == 302 and headers["Location"] == "/missing.html", "an exception's status_code, as Tornado's"
    with pytest.raises(TotoClientError) as caught:
        client.call("pages.strict")
    assert caught.value.code == 1003, "no default: the error is answered as it was raised"


def test_error_redirect_inside_a_batch_answers_the_entry(seed_server) -> None:
    server = seed_server()
    results = server.client().batch({"a": ("pages.private", {}), "b": ("feed", {})})
    assert isinstance(results["a"], TotoClientError) and results["a"].code == 1004
    assert results["b"]["items"][0] == "a"


# -- default_parameters ----------------------------------------------------------------------------


def test_default_parameters_fill_in_what_is_missing_with_a_fresh_copy_each_call(seed_server) -> None:
    client = seed_server().client()
    assert client.call("greet") == {"greeting": "hello world", "tags": ["seen"]}
    assert client.call("greet") == {"greeting": "hello world", "tags": ["seen"]}, "the default list is not shared"
    assert client.call("greet", {"name": "Zoë", "tags": ["x"]}) == {"greeting": "hello Zoë", "tags": ["x", "seen"]}
    assert client.get("greet", name="get") == {"greeting": "hello get", "tags": ["seen"]}
    with pytest.raises(TotoClientError) as caught:
        client.call("greet", ["not", "an", "object"])
    assert caught.value.code == 1011


# -- sessions: anonymous_session and authenticated_with_parameter ------------------------------------


@pytest.mark.parametrize("database", DATABASES)
def test_anonymous_session_gives_a_caller_without_one_a_session_that_keeps_state(seed_server, database) -> None:
    server = seed_server(database)
    client = server.client()
    assert client.call("visits") == {"visits": 1, "user_id": None}
    anonymous = client.session
    assert anonymous and anonymous["session_id"] and not anonymous.get("user_id")
    assert client.call("visits") == {"visits": 2, "user_id": None}
    assert client.session["session_id"] == anonymous["session_id"], "the same anonymous session"
    other = server.client()
    assert other.call("visits")["visits"] == 1, "another caller gets its own"
    name = user()
    client.create(name, "pw")
    assert client.call("visits") == {"visits": 1, "user_id": name}, "a signed-in caller keeps its own session"
    # A caller whose session ended gets a new anonymous one instead of an error.
    stale = server.client()
    stale.session = {"session_id": "A" * 22, "user_id": None, "expires": 0}
    assert stale.call("visits") == {"visits": 1, "user_id": None}
    assert stale.session["session_id"] != "A" * 22


@pytest.mark.parametrize("database", DATABASES)
def test_authenticated_with_parameter_takes_the_session_from_session_id(seed_server, database) -> None:
    server = seed_server(database)
    owner = server.client()
    name = user()
    session_id = owner.create(name, "pw")["session_id"]
    link = server.client()  # a link: GET, no session header, no signature
    status, _, body = link.request(path=f"/link?session_id={session_id}&x=1", method="GET", sign=False)
    answer = json.loads(body)
    assert status == 200 and answer["result"] == {"user_id": name, "parameters": {"x": "1"}}
    assert answer["session"]["session_id"] == session_id
    assert owner.call("link") == {"user_id": name, "parameters": {}}, "the header's session still counts"
    for query, code in (("", 1004), ("?session_id=" + "B" * 22, 1007)):
        status, _, body = link.request(path="/link" + query, method="GET", sign=False)
        assert json.loads(body)["error"]["code"] == code, query
    # A body signed for another user than the session's is refused.
    forged = json.dumps({"method": "link", "parameters": {"session_id": session_id}}).encode()
    status, _, body = link.request(forged, headers={"x-toto-hmac": "AAAA"}, content_type="application/json")
    assert json.loads(body)["error"]["code"] == 1008
    owner.logout()
    status, _, body = link.request(path=f"/link?session_id={session_id}", method="GET", sign=False)
    assert json.loads(body)["error"]["code"] == 1007, "a session that ended names no one"
