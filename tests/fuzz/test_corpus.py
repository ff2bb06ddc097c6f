"""Inputs that once broke something (issue 13), kept as exact HTTP requests in ``corpus/``:
each is answered in the protocol's shape with the status and code it must have."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from toto.testing.server import ServerProcess

from tests.fuzz.conftest import SENT
from tests.fuzz.wire import Wire, check_envelope, decode_answer

CORPUS = Path(__file__).parent / "corpus"

#: What each input must be answered with: (HTTP status, error code or None for a success).
EXPECTED = {
    "batch-of-100-logins": (200, None),
    "content-length-negative": (400, 1011),
    "header-100k": (431, 1011),
    "header-with-nul": (400, 1011),
    "json-infinity": (400, 1011),
    "json-nan": (400, 1011),
    "json-nested-100000": (400, 1011),
    "multipart-1000-fields": (400, 1011),
    "multipart-part-without-headers": (400, 1011),
    "multipart-part-without-name": (400, 1011),
    "multipart-without-boundary": (400, 1011),
    "path-outside-root-verb-put": (405, 1017),
    "request-line-100k": (414, 1011),
    "urlencoded-10000-fields": (400, 1011),
    "urlencoded-not-utf8": (400, 1011),
}


def test_every_corpus_input_has_an_expectation():
    assert sorted(p.stem for p in CORPUS.glob("*.http")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_input(fuzzed: ServerProcess, name: str) -> None:
    answer = Wire(fuzzed.port, SENT).send_raw((CORPUS / f"{name}.http").read_bytes())
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in lines[1:])}
    envelope = decode_answer(headers[b"content-type"].decode(), body[: int(headers[b"content-length"])])
    check_envelope(envelope)
    expected_status, expected_code = EXPECTED[name]
    assert status == expected_status, (status, envelope)
    if expected_code is None:
        assert "error" not in envelope, envelope
    else:
        assert envelope["error"]["code"] == expected_code, envelope
    if name == "batch-of-100-logins":
        checked = [e for e in envelope["batch"].values() if e.get("error", {}).get("code") != 1014]
        assert len(checked) == 1, json.dumps(envelope)[:500]
