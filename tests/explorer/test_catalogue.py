"""The method catalogue and toto.describe (issue 16): what a server says it serves."""

from __future__ import annotations

import json

from toto.testing.server import ServerProcess

from tests.explorer.conftest import DESCRIBED, TYPED_APP, http, post


def test_describe_is_off_by_default(start_server):
    server = start_server(cwd=TYPED_APP, database="memory")
    assert post(server, "/toto/describe", {})["error"]["code"] == 1001
    assert post(server, "/", {"method": "toto.describe"})["error"]["code"] == 1001
    for path in ("/openapi.json", "/_explorer", "/_explorer/toto-client.js"):
        status, _, body = http(server.url + path)
        assert status == 200 and json.loads(body)["error"]["code"] == 1001, (path, body)
    # The log says how to turn them on, once.
    hints = [line for line in server.output().splitlines() if "start the server with --describe" in line]
    assert len(hints) == 1, server.output()


def test_describe_lists_every_method_and_nothing_else(described: ServerProcess):
    answer = post(described, "/toto/describe", {})
    result = answer["result"]
    names = [m["name"] for m in result["methods"]]
    assert names == sorted(names)
    assert set(names) == {
        "account.create",
        "account.login",
        "account.logout",
        "account.update",
        "add",
        "greet",
        "hello",
        "later",
        "notes.add",
        "notes.list",
        "step",
        "toto.describe",
    }
    # Not methods: a module attribute (json, imported by methods/__init__.py), a private
    # module, a module without invoke, a package.
    assert result["errors"] == {}
    assert result["hmac_mode"] == "user_id" and result["root"] == "/"


def test_describe_knows_how_each_method_is_called(described: ServerProcess):
    methods = {m["name"]: m for m in post(described, "/toto/describe", {})["result"]["methods"]}
    assert methods["hello"] == {
        "name": "hello",
        "doc": "Greets whoever calls: no type hints, so no checks (it reads what it is given itself).",
        "requires": [],
        "authenticated": False,
        "optional_session": False,
        "anonymous_session": False,
        "style": "plain",
        "parameters": None,
        "result": None,
    }
    assert methods["greet"]["requires"] == ["name"]
    assert methods["notes.add"]["authenticated"] and methods["notes.list"]["authenticated"]
    assert methods["account.login"]["optional_session"] and not methods["account.login"]["authenticated"]
    assert methods["account.logout"]["authenticated"]
    assert (methods["step"]["style"], methods["later"]["style"], methods["add"]["style"]) == (
        "async",
        "callback",
        "plain",
    )


def test_describe_gives_json_schemas_of_declared_types(described: ServerProcess):
    result = post(described, "/toto/describe", {})["result"]
    methods = {m["name"]: m for m in result["methods"]}
    schemas = result["schemas"]

    def resolve(schema):
        return schemas[schema["$ref"].rsplit("/", 1)[1]] if "$ref" in schema else schema

    numbers = resolve(methods["add"]["parameters"])
    assert numbers["properties"] == {"a": {"type": "integer"}, "b": {"type": "integer"}}
    assert sorted(numbers["required"]) == ["a", "b"]
    assert methods["add"]["result"] == {"type": "integer"}
    note = resolve(methods["notes.add"]["parameters"])
    assert note["required"] == ["title"]
    assert sorted(note["properties"]["priority"]["enum"]) == ["high", "low"]
    assert resolve(methods["notes.add"]["result"])["properties"] == {"count": {"type": "integer"}}
    step = resolve(methods["step"]["parameters"])
    assert step["required"] == ["start"] and step["properties"]["by"]["default"] == 1
    assert methods["step"]["result"] == {"type": "array", "items": {"type": "integer"}}


def test_a_method_that_fails_to_import_is_reported_not_fatal(tmp_path, start_server):
    methods = tmp_path / "methods"
    methods.mkdir()
    (methods / "__init__.py").write_text("")
    (methods / "good.py").write_text("def invoke(handler, parameters):\n    return 'good'\n")
    (methods / "broken.py").write_text("import not_a_module_anywhere\n\ndef invoke(handler, parameters):\n    pass\n")
    server = start_server(cwd=str(tmp_path), database="memory", describe=True)
    result = post(server, "/toto/describe", {})["result"]
    assert [m["name"] for m in result["methods"] if not m["name"].startswith(("account.", "toto."))] == ["good"]
    assert "not_a_module_anywhere" in result["errors"]["broken"]
    assert post(server, "/good", {})["result"] == "good"


def test_app_without_builtin_accounts_lists_none(start_server):
    server = start_server(cwd=TYPED_APP, **{**DESCRIBED, "builtin_accounts": False})
    names = [m["name"] for m in post(server, "/toto/describe", {})["result"]["methods"]]
    assert "toto.describe" in names and not any(n.startswith("account.") for n in names)
