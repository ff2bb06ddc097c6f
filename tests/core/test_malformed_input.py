"""Malformed forms, NaN and Infinity, and paths or verbs that are not served (issue 13): each is
the client's error in the protocol's shape (400/1011, 404/1016, 405/1017), never a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest


def strict_json(data: bytes) -> Any:
    """What JSON.parse accepts: no NaN, no Infinity."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    return json.loads(data, parse_constant=refuse)


@pytest.fixture
def quiet_server(start_server):
    """A server whose log is read at the end of the test: it must hold no traceback."""
    srv = start_server(database="memory", logging="info")
    yield srv
    log = srv.output()
    assert "Traceback" not in log, log[-3000:]
    assert "HTTPInputError" not in log, log[-3000:]


MULTIPART = "multipart/form-data; boundary=xyz"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (MULTIPART, b"--xyz\r\nContent-Disposition: form-data\r\n\r\nno name\r\n--xyz--\r\n"),
        (MULTIPART, b"--xyz\r\nno headers at all"),
        (MULTIPART, b"--xyz\r\nContent-Disposition: form-data; name=a\r\n\r\n" + b"x" * 100),
        ("multipart/form-data", b"--xyz\r\n\r\n--xyz--"),  # no boundary
        (
            MULTIPART,
            b"".join(b"--xyz\r\nContent-Disposition: form-data; name=f%d\r\n\r\nv\r\n" % i for i in range(10_000))
            + b"--xyz--\r\n",
        ),
        ("application/x-www-form-urlencoded", b"&".join(b"f%d=v" % i for i in range(10_000))),
    ],
)
def test_malformed_or_huge_forms_are_400_1011(quiet_server, content_type, body):
    status, _, data = quiet_server.client().request(body, "/echo", content_type=content_type, sign=False)
    assert status == 400 and strict_json(data)["error"]["code"] == 1011, (status, data[:300])


def test_a_good_form_still_works(quiet_server):
    status, _, data = quiet_server.client().request(
        b"a=1&b=2&b=3", "/echo", content_type="application/x-www-form-urlencoded", sign=False
    )
    assert (status, strict_json(data)) == (200, {"result": {"a": ["1"], "b": ["2", "3"]}})


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_refused_on_input(quiet_server, token):
    body = b'{"method": "echo", "parameters": {"x": ' + token + b"}}"
    status, _, data = quiet_server.client().request(body, sign=False)
    assert status == 400 and strict_json(data)["error"]["code"] == 1011


def test_nan_and_infinity_are_never_written(quiet_server):
    status, _, data = quiet_server.client().request(b'{"method": "not_a_number"}', sign=False)
    answer = strict_json(data)  # the JavaScript client must be able to read the answer
    assert answer["error"]["code"] == 1000


def test_a_path_outside_root_is_404_1016(start_server):
    srv = start_server(root="/api")
    status, headers, data = srv.client().request(b"{}", "/elsewhere", sign=False)
    assert status == 404 and strict_json(data)["error"]["code"] == 1016
    assert headers["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("verb", ["PUT", "DELETE", "PATCH"])
def test_an_unserved_verb_is_405_1017(quiet_server, verb):
    status, _, data = quiet_server.client().request(b"{}", "/echo", method=verb, sign=False)
    assert status == 405 and strict_json(data)["error"]["code"] == 1017
