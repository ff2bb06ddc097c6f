"""An OpenAPI 3.1 document of a server, made from its method catalogue.

Each method is ``POST <root>/a/b/c`` with the body ``{"parameters": {...}}`` (PROTOCOL.md
section 1), its parameters and result as JSON Schema (from the types ``invoke`` declares,
see ``toto.validation``), the answer envelopes of section 2 and the signing headers of
section 4 as security schemes. OpenAPI 3.1 schemas are JSON Schema 2020-12, which is what
msgspec writes, so the method schemas go in unchanged.
"""

from __future__ import annotations

from typing import Any

from toto import __version__
from toto.catalogue import Catalogue, MethodInfo

_SESSION = {
    "type": "object",
    "description": "The request's session; send session_id back as x-toto-session-id.",
    "properties": {
        "session_id": {"type": "string"},
        "expires": {"type": "number", "description": "unix seconds"},
        "user_id": {"type": ["string", "null"]},
    },
    "required": ["session_id", "expires"],
}
_ERROR = {
    "type": "object",
    "properties": {
        "code": {"type": "integer", "description": "a Toto error code (PROTOCOL.md section 7)"},
        "value": {"description": "a message, or what the method raised"},
    },
    "required": ["code"],
}
_ERROR_ANSWER = {
    "type": "object",
    "properties": {
        "error": {"$ref": "#/components/schemas/TotoError"},
        "session": {"$ref": "#/components/schemas/TotoSession"},
    },
    "required": ["error"],
}
_SIGNING = {
    "user_id": "base64(HMAC-SHA1(key = the session's user_id as UTF-8, message = the exact body bytes)); "
    "answers that carry a session are signed the same way",
    "session_key": "base64(HMAC-SHA256(key = the session's key, HTTP verb + '\\n' + path and query + '\\n' + "
    "x-toto-timestamp + '\\n' + x-toto-nonce + '\\n' + body)), the nonce fresh for every request (16 to 64 of "
    "A-Z a-z 0-9 _ -; a request without x-toto-nonce leaves out its line); answers are signed over "
    "x-toto-timestamp + '\\n' + body",
}
_STATUS_ERRORS = {
    "400": "malformed request (1011)",
    "413": "request body larger than max_body_size (1011)",
    "415": "unsupported content type (1012)",
    "503": "storage or event bus unavailable (1013)",
}


def build(catalogue: Catalogue, hmac_mode: str, root: str, method_select: str) -> dict[str, Any]:
    """The OpenAPI document as plain data, ready to serialize."""
    prefix = "/" + root.strip("/") if root.strip("/") else ""
    schemes: dict[str, Any] = {
        "sessionId": {"type": "apiKey", "in": "header", "name": "x-toto-session-id", "description": "a session_id"}
    }
    signed = ["sessionId"]
    if hmac_mode in _SIGNING:
        schemes["hmac"] = {"type": "apiKey", "in": "header", "name": "x-toto-hmac", "description": _SIGNING[hmac_mode]}
        signed.append("hmac")
    if hmac_mode == "session_key":
        schemes["timestamp"] = {
            "type": "apiKey",
            "in": "header",
            "name": "x-toto-timestamp",
            "description": "integer unix seconds; within signature_window of the server's clock, each signature once",
        }
        signed.append("timestamp")
    requirement: dict[str, list[str]] = {name: [] for name in signed}
    paths: dict[str, Any] = {}
    if method_select != "parameter":
        for name, info in catalogue.methods.items():
            parameters, result = catalogue.schemas[name]
            paths[prefix + "/" + name.replace(".", "/")] = {"post": _operation(info, parameters, result, requirement)}
    components = {
        **catalogue.components,
        "TotoSession": _SESSION,
        "TotoError": _ERROR,
        "TotoErrorAnswer": _ERROR_ANSWER,
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Toto API",
            "version": __version__,
            "description": "Every method of this server. Errors of a call answer HTTP 200 with an error object; "
            f"requests that name a session are signed in hmac_mode {hmac_mode!r}.",
        },
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": schemes},
    }


def _operation(info: MethodInfo, parameters: Any, result: Any, requirement: dict[str, list[str]]) -> dict[str, Any]:
    if parameters is None:
        parameters = {"type": "object"}
        if info.requires:
            parameters = {**parameters, "required": list(info.requires)}
    body: dict[str, Any] = {"type": "object", "properties": {"parameters": parameters}}
    if info.requires or info.parameters_type is not None:
        body["required"] = ["parameters"]
    answer = {
        "type": "object",
        "properties": {
            "result": {} if result is None else result,
            "session": {"$ref": "#/components/schemas/TotoSession"},
        },
    }
    hmac_header = {"description": "the answer's signature, when it carries a session", "schema": {"type": "string"}}
    operation: dict[str, Any] = {
        "operationId": info.name,
        "summary": info.doc.split("\n", 1)[0],
        "description": info.doc,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "200": {
                "description": "the result, or an error object (every application error answers 200)",
                "headers": {"x-toto-hmac": hmac_header},
                "content": {
                    "application/json": {
                        "schema": {"anyOf": [answer, {"$ref": "#/components/schemas/TotoErrorAnswer"}]}
                    }
                },
            },
            **{
                status: {
                    "description": text,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TotoErrorAnswer"}}},
                }
                for status, text in _STATUS_ERRORS.items()
            },
        },
        "security": [requirement] if info.authenticated else [{}, requirement],
        "x-toto": {
            "method": info.name,
            "style": info.style,
            "requires": list(info.requires),
            "authenticated": info.authenticated,
            "optional_session": info.optional_session,
        },
    }
    return operation
