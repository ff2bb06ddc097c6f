"""The OpenAPI 3.1 document (issue 16), and schemathesis fuzzing the server through it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from toto.testing.server import ServerProcess

from tests.explorer.conftest import DESCRIBED, TYPED_APP, http

#: Examples schemathesis found (its --generation-database), kept in git so every run replays them
#: first. Runs work on a copy, so the tree stays clean; TOTO_TEST_UPDATE_FUZZ_CORPUS=1 adds what a run finds.
FUZZ_CORPUS = Path(__file__).parent / "fuzz-corpus"


def document(server: ServerProcess) -> dict:
    status, headers, body = http(server.url + "/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    return json.loads(body)


def resolve(doc: dict, schema: dict) -> dict:
    return doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema


def test_each_method_is_a_post_with_its_schemas(described: ServerProcess):
    doc = document(described)
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/account/create",
        "/account/login",
        "/account/logout",
        "/account/update",
        "/add",
        "/greet",
        "/hello",
        "/later",
        "/notes/add",
        "/notes/list",
        "/step",
        "/toto/describe",
    }
    add = doc["paths"]["/add"]["post"]
    assert list(doc["paths"]["/add"]) == ["post"] and add["operationId"] == "add"
    body = add["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["parameters"]
    assert resolve(doc, body["properties"]["parameters"])["properties"]["a"] == {"type": "integer"}
    success, failure = add["responses"]["200"]["content"]["application/json"]["schema"]["anyOf"]
    assert success["properties"]["result"] == {"type": "integer"}
    envelope = resolve(doc, failure)
    assert envelope["required"] == ["error"] and resolve(doc, envelope["properties"]["error"])["required"] == ["code"]
    assert {"400", "413", "415", "503"} <= set(add["responses"])
    greet = doc["paths"]["/greet"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert greet["properties"]["parameters"] == {"type": "object", "required": ["name"]}
    every_ref = json.dumps(doc)
    for name in doc["components"]["schemas"]:
        assert f'"#/components/schemas/{name}"' in every_ref or name in ("TotoError",)


def test_signing_headers_are_security_schemes(described: ServerProcess, start_server):
    doc = document(described)
    schemes = doc["components"]["securitySchemes"]
    assert {n: (s["in"], s["name"]) for n, s in schemes.items()} == {
        "sessionId": ("header", "x-toto-session-id"),
        "hmac": ("header", "x-toto-hmac"),
    }
    assert "HMAC-SHA1" in schemes["hmac"]["description"]
    assert doc["paths"]["/notes/add"]["post"]["security"] == [{"sessionId": [], "hmac": []}]
    assert doc["paths"]["/hello"]["post"]["security"] == [{}, {"sessionId": [], "hmac": []}]

    session_key = document(start_server(cwd=TYPED_APP, **DESCRIBED, hmac_mode="session_key"))
    assert set(session_key["components"]["securitySchemes"]) == {"sessionId", "hmac", "timestamp"}
    assert "HMAC-SHA256" in session_key["components"]["securitySchemes"]["hmac"]["description"]
    off = document(start_server(cwd=TYPED_APP, **DESCRIBED, hmac_mode="off"))
    assert off["paths"]["/notes/add"]["post"]["security"] == [{"sessionId": []}]


def test_paths_are_below_root(start_server):
    server = start_server(cwd=TYPED_APP, **DESCRIBED, root="/api/v1")
    doc = document_at(server, "/api/v1/openapi.json")
    assert "/api/v1/add" in doc["paths"]
    status, _, body = http(
        server.url + "/api/v1/add",
        json.dumps({"parameters": {"a": 1, "b": 1}}).encode(),
        {"Content-Type": "application/json"},
    )
    assert json.loads(body)["result"] == 2
    assert http(server.url + "/openapi.json")[0] == 404


def document_at(server: ServerProcess, path: str) -> dict:
    status, _, body = http(server.url + path)
    assert status == 200, body
    return json.loads(body)


@pytest.mark.parametrize("hmac_mode", ["user_id", "session_key"])
def test_schemathesis_finds_no_server_error(start_server, tmp_path, hmac_mode: str):
    """Every operation fuzzed from the document: no 5xx, answers as the document says, and no
    unexpected exception in the server's log (each would have been an answer with code 1000)."""
    server = start_server(cwd=TYPED_APP, **DESCRIBED, hmac_mode=hmac_mode)
    corpus = FUZZ_CORPUS
    if not os.environ.get("TOTO_TEST_UPDATE_FUZZ_CORPUS"):
        corpus = tmp_path / "corpus"
        shutil.copytree(FUZZ_CORPUS, corpus)
    command = [
        os.path.join(os.path.dirname(sys.executable), "schemathesis"),
        "run",
        server.url + "/openapi.json",
        "--checks",
        "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        "--phases",
        "examples,coverage,fuzzing",
        "--max-examples",
        "25",
        "--workers",
        "1",
        "--seed",
        "16",
        "--generation-database",
        str(corpus),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "No issues found" in run.stdout, run.stdout[-3000:]
    log = server.output()
    assert " ERROR " not in log and "Traceback" not in log, log[-5000:]
