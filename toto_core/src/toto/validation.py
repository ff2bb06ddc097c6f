"""Checking a call's parameters against the types its ``invoke`` declares.

A method opts in by annotating the ``parameters`` argument of ``invoke`` with a
``TypedDict``, a dataclass or a ``msgspec.Struct``. The check is built once, when the
method is first resolved; a method without such an annotation gets no check at all, so
it runs exactly as before and pays nothing per call.

msgspec does the work: one small, dependency-free, well-kept library (C extension, wheels
for every platform) that both converts a decoded body into the declared type and writes
the JSON Schema of that type, so the validation and the OpenAPI document can never
disagree. It is the ``types`` extra of toto-core.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import is_dataclass
from typing import Any

from toto.exceptions import ERROR_MISSING_PARAMS, TotoException

#: ``(parameters, from_text)`` -> the parameters as the declared type; ``from_text`` is true
#: for query and form arguments, which arrive as strings and may be read as numbers or booleans.
Validator = Callable[[Any, bool], Any]

_UNTYPED = (inspect.Parameter.empty, Any, dict, object)
_AT = re.compile(r"^(?P<detail>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")


class MethodTypeError(TypeError):
    """A method's type hints cannot be read or checked; the message names the method and the fix."""


def declared_types(invoke: Callable[..., Any], name: str) -> tuple[Any, Any]:
    """``(parameters type or None, result type or None)`` of a method's ``invoke``.

    Only a parameters annotation that describes fields counts (``TypedDict``, dataclass,
    ``msgspec.Struct``); ``dict``, ``Any`` or none at all mean "not declared".
    """
    function = inspect.unwrap(invoke)
    if not getattr(function, "__annotations__", None):
        return None, None
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception as exc:
        raise MethodTypeError(f"method {name!r}: its type hints cannot be evaluated ({exc})") from None
    try:
        argument = list(inspect.signature(function).parameters)[1]
    except (IndexError, ValueError):
        return None, None
    parameters = hints.get(argument)
    if parameters in _UNTYPED or typing.get_origin(parameters) is dict or not _has_fields(parameters):
        parameters = None
    result = hints.get("return")
    return parameters, None if result in (inspect.Parameter.empty, Any) else result


def _has_fields(annotation: Any) -> bool:
    if not isinstance(annotation, type):
        return False
    if typing.is_typeddict(annotation) or is_dataclass(annotation):
        return True
    return any(base.__module__.startswith("msgspec") and base.__name__ == "Struct" for base in annotation.__mro__)


def build_validator(parameters_type: Any, name: str) -> Validator:
    """The check for one method's parameters (see ``Validator``)."""
    try:
        import msgspec
    except ImportError:
        raise MethodTypeError(
            f"method {name!r} declares parameter types; checking them needs msgspec: "
            "pip install msgspec (the toto-core[types] extra)"
        ) from None
    convert = msgspec.convert
    error = msgspec.ValidationError
    try:
        msgspec.json.schema(parameters_type)  # a type msgspec cannot handle fails here, not on a call
    except (TypeError, ValueError) as exc:
        raise MethodTypeError(f"method {name!r}: its parameters type cannot be checked ({exc})") from None

    scalars = _scalar_fields(parameters_type)

    def validate(parameters: Any, from_text: bool) -> Any:
        if from_text and isinstance(parameters, dict):
            # A urlencoded form gives each field as a list of its values (the original's
            # shape); a field declared as one value takes the last one given.
            parameters = {k: v[-1] if k in scalars and isinstance(v, list) and v else v for k, v in parameters.items()}
        try:
            return convert(parameters, parameters_type, strict=not from_text)
        except error as exc:
            raise TotoException(ERROR_MISSING_PARAMS, describe_error(str(exc))) from None

    return validate


def _scalar_fields(parameters_type: Any) -> frozenset[str]:
    """The names of the fields declared as one value (not a list, tuple, set or object)."""
    import msgspec.inspect as mi

    info = mi.type_info(parameters_type)
    collections = (mi.ListType, mi.TupleType, mi.VarTupleType, mi.SetType, mi.FrozenSetType, mi.DictType)

    def many(t: Any) -> bool:
        if isinstance(t, mi.UnionType):
            return any(many(u) for u in t.types)
        return isinstance(t, collections)

    fields = getattr(info, "fields", ())
    return frozenset(f.encode_name for f in fields if not many(f.type))


def describe_error(message: str) -> str:
    """msgspec's ``Expected `int`, got `str` - at `$.count``` as a 1003 message naming the parameter."""
    found = _AT.match(message)
    detail, path = (found.group("detail"), found.group("path")) if found else (message, None)
    missing = _MISSING.match(detail)
    if not path:
        if missing:
            return f"Missing parameters: {missing.group('name')}"
        return "Invalid parameters: " + _plain(detail)
    return f"Invalid parameter '{path.lstrip('.')}': " + _plain(detail)


def _plain(detail: str) -> str:
    text = detail.replace("`", "")
    return text[:1].lower() + text[1:]
