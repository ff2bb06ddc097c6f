"""Error codes of the Toto protocol (PROTOCOL.md section 7) and the exception that carries them.

The ``ERROR_*`` names are the original's (1000-1010) plus ours (1011-1018); ``from
toto.exceptions import *`` and ``from toto.invocation import *`` give all of them and
``TotoException``, as the original's modules did.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ERROR_INVALID_HMAC",
    "ERROR_INVALID_METHOD",
    "ERROR_INVALID_RESPONSE_HMAC",
    "ERROR_INVALID_SESSION_ID",
    "ERROR_INVALID_USER_ID",
    "ERROR_MALFORMED_REQUEST",
    "ERROR_MISSING_METHOD",
    "ERROR_MISSING_PARAMS",
    "ERROR_NOT_AUTHORIZED",
    "ERROR_NOT_FOUND",
    "ERROR_SERVER",
    "ERROR_SERVICE_UNAVAILABLE",
    "ERROR_SESSION_CONFLICT",
    "ERROR_SIGNATURE_EXPIRED",
    "ERROR_TOO_MANY_LOGINS",
    "ERROR_UNSUPPORTED_CONTENT_TYPE",
    "ERROR_USER_ID_EXISTS",
    "ERROR_USER_NOT_FOUND",
    "ERROR_VERB_NOT_ALLOWED",
    "TotoException",
]

ERROR_SERVER = 1000
ERROR_INVALID_METHOD = 1001
ERROR_MISSING_METHOD = 1002
ERROR_MISSING_PARAMS = 1003
ERROR_NOT_AUTHORIZED = 1004
ERROR_USER_NOT_FOUND = 1005
ERROR_USER_ID_EXISTS = 1006
ERROR_INVALID_SESSION_ID = 1007
ERROR_INVALID_HMAC = 1008
ERROR_INVALID_RESPONSE_HMAC = 1009
ERROR_INVALID_USER_ID = 1010
ERROR_MALFORMED_REQUEST = 1011
ERROR_UNSUPPORTED_CONTENT_TYPE = 1012
ERROR_SERVICE_UNAVAILABLE = 1013
ERROR_TOO_MANY_LOGINS = 1014
ERROR_SIGNATURE_EXPIRED = 1015
ERROR_NOT_FOUND = 1016
ERROR_VERB_NOT_ALLOWED = 1017
ERROR_SESSION_CONFLICT = 1018

#: HTTP status for the codes that are not answered with 200 (PROTOCOL.md section 2).
HTTP_STATUS = {
    ERROR_MALFORMED_REQUEST: 400,
    ERROR_NOT_FOUND: 404,
    ERROR_VERB_NOT_ALLOWED: 405,
    ERROR_UNSUPPORTED_CONTENT_TYPE: 415,
    ERROR_SERVICE_UNAVAILABLE: 503,
}


class TotoException(Exception):
    """An error answered to the client as ``{"error": {"code": code, "value": value}}``.

    Methods raise it with their own codes; ``value`` may be any serializable object.
    ``status`` overrides the HTTP status (200 unless the code is one of the transport
    errors 1011, 1012 or 1013).

    As in the original, ``e.__dict__`` is ``{"value": value, "code": code}`` and ``str(e)``
    / ``repr(e)`` are that dict's (seed code logs and returns ``e.__dict__``); the status
    lives in a slot, outside that dict.
    """

    __slots__ = ("_status",)

    def __init__(self, code: int, value: Any, status: int | None = None) -> None:
        super().__init__(code, value)
        self.value = value
        self.code = code
        self._status = status

    @property
    def status(self) -> int:
        return self._status if self._status is not None else HTTP_STATUS.get(self.code, 200)

    @status.setter
    def status(self, status: int) -> None:
        self._status = status

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "value": self.value}

    def __str__(self) -> str:
        return str(self.__dict__)

    def __repr__(self) -> str:
        return repr(self.__dict__)


class StorageUnavailable(TotoException):
    """Raised by storage backends when the database cannot be reached (answered as 1013/503)."""

    def __init__(self, value: str = "Storage is unavailable; try again shortly.") -> None:
        super().__init__(ERROR_SERVICE_UNAVAILABLE, value)


class DuplicateAccount(Exception):
    """Raised by ``Storage.create_account`` when the user id is already taken."""


class PluginError(Exception):
    """A configuration or plugin problem found at startup; the message says what to do."""
