"""What the core checks once, before any storage is called: user ids and account fields.

Every backend gets only values it can keep as given, so a bad value gets the same
answer on every backend (1010 for a user id, 1011 for an account field) and no
backend needs checks of its own. The rules are the intersection of what the
backends store: account fields are JSON data whose integers fit 64 bits (MongoDB),
whose text is valid Unicode (PostgreSQL, MySQL) and whose keys hold no NUL (BSON).
"""

from __future__ import annotations

import json
import math
import unicodedata
from typing import Any

from toto.exceptions import ERROR_INVALID_USER_ID, ERROR_MALFORMED_REQUEST, TotoException

#: The longest user id, in characters (the SQL column is this wide).
MAX_USER_ID = 256
#: The most bytes of JSON (UTF-8) the account fields of one create or update may take.
MAX_FIELDS_BYTES = 8 * 1024 * 1024
#: How deeply account field values may nest (MongoDB documents nest at most 100 levels).
MAX_FIELD_DEPTH = 32
_INT64 = (-(2**63), 2**63 - 1)
# Control, format, surrogate, private-use and unassigned characters: invisible or unstorable.
_BAD_IN_USER_ID = frozenset(("Cc", "Cf", "Cs", "Co", "Cn"))


def normalize_user_id(user_id: Any) -> str:
    """The user id as stored: stripped and lower-cased (compat); 1010 when it is not a string,
    is empty, is longer than ``MAX_USER_ID`` or holds control characters."""
    if not isinstance(user_id, str):
        raise TotoException(ERROR_INVALID_USER_ID, "Invalid user ID: it must be a string.")
    user_id = user_id.strip().lower()
    if not user_id:
        raise TotoException(ERROR_INVALID_USER_ID, "Invalid user ID: it is empty.")
    if len(user_id) > MAX_USER_ID:
        raise TotoException(ERROR_INVALID_USER_ID, f"Invalid user ID: longer than {MAX_USER_ID} characters.")
    if any(unicodedata.category(c) in _BAD_IN_USER_ID for c in user_id):
        raise TotoException(ERROR_INVALID_USER_ID, "Invalid user ID: it contains control characters.")
    return str(user_id)


def check_account_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` when every backend can store them as given, else 1011 naming the first field
    that cannot be stored and why."""
    for name, value in fields.items():
        if not isinstance(name, str) or not name:
            raise _unstorable(repr(name), "field names must be non-empty text")
        _check_key(name, name)
        _check_value(value, name, 1)
    size = len(json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))
    if size > MAX_FIELDS_BYTES:
        raise _unstorable(", ".join(fields), f"{size} bytes of JSON, more than {MAX_FIELDS_BYTES}")
    return fields


def _check_value(value: Any, path: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        _check_text(value, path)
    elif isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _unstorable(path, "integers must fit in 64 bits")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise _unstorable(path, "numbers must be finite")
    elif isinstance(value, (list, tuple, dict)):
        if depth >= MAX_FIELD_DEPTH:
            raise _unstorable(path, f"values may nest at most {MAX_FIELD_DEPTH} levels")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise _unstorable(path, "object keys must be text")
                _check_key(key, path)
                _check_value(item, f"{path}.{key}", depth + 1)
        else:
            for index, item in enumerate(value):
                _check_value(item, f"{path}[{index}]", depth + 1)
    else:
        raise _unstorable(path, f"{type(value).__name__} values are not JSON data")


def _check_key(key: str, path: str) -> None:
    _check_text(key, path)
    if "\x00" in key:
        raise _unstorable(path, "names and keys may not hold NUL characters")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _unstorable(path, "text must be valid Unicode (it holds a lone surrogate)") from None


def _unstorable(path: str, reason: str) -> TotoException:
    return TotoException(ERROR_MALFORMED_REQUEST, f"Account field {path} cannot be stored: {reason}.")
