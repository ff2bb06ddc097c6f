"""Validation from the types ``invoke`` declares (issue 16): 1003 naming the parameter, before the method runs."""

from __future__ import annotations

import json
import urllib.parse

from toto.testing.server import ServerProcess

from tests.explorer.conftest import http, post


def error(answer):
    assert "result" not in answer, answer
    return answer["error"]["code"], answer["error"]["value"]


def test_a_wrong_type_names_the_parameter_and_what_was_expected(described: ServerProcess):
    assert post(described, "/add", {"parameters": {"a": 1, "b": 2}})["result"] == 3
    assert error(post(described, "/add", {"parameters": {"a": 1, "b": "2"}})) == (
        1003,
        "Invalid parameter 'b': expected int, got str",
    )
    assert error(post(described, "/add", {"parameters": {"a": 1.5, "b": 2}})) == (
        1003,
        "Invalid parameter 'a': expected int, got float",
    )
    assert error(post(described, "/add", {"parameters": {"a": 1}})) == (1003, "Missing parameters: b")
    assert error(post(described, "/add", {"parameters": [1, 2]})) == (
        1003,
        "Invalid parameters: expected object, got array",
    )
    assert error(post(described, "/", {"method": "add"})) == (1003, "Missing parameters: a")


def test_nested_and_enumerated_fields(described: ServerProcess):
    client = described.client()
    client.create("typed-nested", "pw")
    assert client.call("notes.add", {"title": "one", "tags": ["a"]}) == {"count": 1}
    for parameters, message in (
        ({"title": "x", "tags": ["a", 2]}, "Invalid parameter 'tags[1]': expected str, got int"),
        ({"title": "x", "priority": "urgent"}, "Invalid parameter 'priority': invalid enum value 'urgent'"),
        ({"tags": []}, "Missing parameters: title"),
    ):
        try:
            client.call("notes.add", parameters)
        except Exception as exc:
            assert (exc.code, exc.value) == (1003, message)
        else:
            raise AssertionError(f"{parameters} was accepted")
    # None of the refused calls ran: one note, with the defaults the dataclass declares.
    assert client.call("notes.list") == [{"title": "one", "tags": ["a"], "priority": "low"}]


def test_the_method_gets_the_declared_type(described: ServerProcess):
    # A msgspec.Struct with defaults (async method) and a dataclass (callback style).
    assert post(described, "/step", {"parameters": {"start": 10, "by": 5}})["result"] == [10, 15, 20]
    assert post(described, "/later", {"parameters": {"text": "quiet"}})["result"] == "QUIET"
    # A TypedDict answers a dict of the declared fields only: what was not declared is not passed on.
    assert post(described, "/add", {"parameters": {"a": 1, "b": 2, "c": "ignored"}})["result"] == 3


def test_query_and_form_text_is_read_as_the_declared_type(described: ServerProcess):
    status, _, body = http(described.url + "/step?" + urllib.parse.urlencode({"start": "3", "times": "2"}))
    assert status == 200 and json.loads(body)["result"] == [3, 4]
    status, _, body = http(described.url + "/add?a=1&b=two")
    assert json.loads(body)["error"] == {"code": 1003, "value": "Invalid parameter 'b': expected int, got str"}
    form = urllib.parse.urlencode({"a": "40", "b": "2"}).encode()
    status, _, body = http(described.url + "/add", form, {"Content-Type": "application/x-www-form-urlencoded"})
    assert json.loads(body)["result"] == 42


def test_batch_entries_are_checked_one_by_one(described: ServerProcess):
    answer = post(
        described,
        "/",
        {
            "batch": {
                "good": {"method": "add", "parameters": {"a": 2, "b": 3}},
                "bad": {"method": "add", "parameters": {"a": 2, "b": None}},
                "async": {"method": "step", "parameters": {"start": "x"}},
                "untyped": {"method": "hello", "parameters": {"name": 7}},
            }
        },
    )["batch"]
    assert answer["good"] == {"result": 5}
    assert answer["bad"]["error"] == {"code": 1003, "value": "Invalid parameter 'b': expected int, got null"}
    assert answer["async"]["error"] == {"code": 1003, "value": "Invalid parameter 'start': expected int, got str"}
    assert answer["untyped"] == {"result": {"hello": 7}}


def test_methods_without_hints_behave_as_before(described: ServerProcess):
    # No type: anything goes through to the method, as it always did.
    assert post(described, "/hello", {"parameters": {"name": [1, {"x": None}]}})["result"] == {
        "hello": [1, {"x": None}]
    }
    assert post(described, "/greet", {"parameters": {}})["error"] == {"code": 1003, "value": "Missing parameters: name"}


def test_types_are_checked_with_describe_off_too(start_server):
    from tests.explorer.conftest import TYPED_APP

    server = start_server(cwd=TYPED_APP, database="memory")
    assert post(server, "/add", {"parameters": {"a": "1", "b": 2}})["error"]["code"] == 1003
    assert post(server, "/add", {"parameters": {"a": 1, "b": 2}})["result"] == 3
