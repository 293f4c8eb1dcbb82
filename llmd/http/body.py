"""Reading request bodies, WebSocket messages and query strings into validated models, or typed 400s.

Every JSON text a client sends goes through :func:`load_json_object` first:
it must be an object, nested at most ``MAX_DEPTH`` levels, with no integer
outside the signed 64-bit range and no non-finite number (``NaN``,
``Infinity``, or a float too large to represent). A violation is a
:class:`ValidationError` that names the field at fault (``messages[0].content``),
so no parser below ever sees a body that could exhaust the stack or overflow a
C integer. Then pydantic validates the text strictly against the route's model.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pydantic
from quart import request

from llmd.errors import InvalidJSONError, ValidationError

MAX_DEPTH = 64  # objects and arrays inside each other; real requests (tools, JSON schemas) stay far below
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


def field_name(loc: tuple[Any, ...]) -> str:
    """``("messages", 0, "content")`` -> ``messages[0].content``."""
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def validation_error(exc: pydantic.ValidationError, prefix: str = "") -> ValidationError:
    """The first pydantic error as a typed error naming the field (under ``prefix``); all of them in details."""
    errors = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        # Union members add their type name to loc (e.g. "str", "list[str]"); drop them.
        loc = tuple(x for x in loc if not (isinstance(x, str) and ("[" in x or x in ("str", "int", "float", "bool"))))
        name = field_name(loc)
        if prefix:
            name = f"{prefix}.{name}" if name != "body" else prefix
        errors.append({"field": name, "message": e["msg"], "type": e["type"]})
    first = errors[0] if errors else {"field": prefix or "body", "message": "invalid request"}
    return ValidationError(f"{first['field']}: {first['message']}", field=first["field"], details=errors)


def check_json_value(value: Any, root: str = "") -> None:
    """Refuse nesting deeper than ``MAX_DEPTH``, 64-bit-overflowing integers and non-finite numbers.

    Iterative, so a hostile depth cannot exhaust the stack here either; the
    error names the path of the offending value.
    """
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 0)]
    while stack:
        item, loc, depth = stack.pop()
        if isinstance(item, dict):
            if depth >= MAX_DEPTH:
                raise _at(root, loc, f"nested more than {MAX_DEPTH} levels deep")
            stack.extend((v, loc + (k,), depth + 1) for k, v in item.items())
        elif isinstance(item, list):
            if depth >= MAX_DEPTH:
                raise _at(root, loc, f"nested more than {MAX_DEPTH} levels deep")
            stack.extend((v, loc + (i,), depth + 1) for i, v in enumerate(item))
        elif isinstance(item, bool):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise _at(root, loc, "integer out of range (it must fit in 64 bits)")
        elif isinstance(item, float) and not math.isfinite(item):
            raise _at(root, loc, "must be a finite number (not NaN or Infinity)")


def _at(root: str, loc: tuple[Any, ...], what: str) -> ValidationError:
    name = field_name(loc) if loc else (root or "body")
    if root and loc:
        name = f"{root}.{name}"
    return ValidationError(f"{name}: {what}", field=name)


def load_json_object(raw: bytes | str, *, what: str = "the request body", field: str = "body") -> dict[str, Any]:
    """Parse JSON text that must be an object, within the limits above; typed errors name ``field`` otherwise."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValidationError(f"{what} is nested more than {MAX_DEPTH} levels deep", field=field) from None
    except json.JSONDecodeError as exc:
        raise InvalidJSONError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
                               field=field) from None
    except (ValueError, UnicodeDecodeError):
        raise InvalidJSONError(f"{what} is not valid UTF-8 JSON", field=field) from None
    if not isinstance(data, dict):
        raise InvalidJSONError(f"{what} must be a JSON object", field=field)
    check_json_value(data)
    return data


def parse_model(model: type[pydantic.BaseModel], raw: bytes | str) -> Any:
    """Validate JSON text against ``model`` strictly (no "1" for 1, no "yes" for true)."""
    load_json_object(raw)
    try:
        return model.model_validate_json(raw, strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None


def validate_value(model: type[pydantic.BaseModel], value: Any, prefix: str) -> Any:
    """Validate an already parsed value (one item of a batch) strictly; errors name ``prefix.field``."""
    if not isinstance(value, dict):
        raise ValidationError(f"{prefix}: must be a JSON object", field=prefix)
    check_json_value(value, prefix)
    try:
        return model.model_validate(value, strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc, prefix) from None


async def parse_body(model: type[pydantic.BaseModel]) -> Any:
    """Read the request body and validate it against ``model``."""
    raw = await request.get_data(as_text=False)
    if not raw or not raw.strip():
        raise InvalidJSONError("the request body must be a JSON object", field="body")
    return parse_model(model, raw)


async def parse_optional_body(model: type[pydantic.BaseModel]) -> Any:
    """A body that may be left out (``curl -X POST .../start``): absent means the model's defaults.

    A request that says it sends JSON must send a JSON object, so an empty
    body with ``Content-Type: application/json`` is still a 400.
    """
    raw = await request.get_data(as_text=False)
    if raw and raw.strip():
        return parse_model(model, raw)
    if (request.content_type or "").startswith("application/json"):
        raise InvalidJSONError("the request body must be a JSON object (or leave it out)", field="body")
    return model()


def parse_query(model: type[pydantic.BaseModel]) -> Any:
    """Validate query parameters against ``model`` (lax: query values are strings)."""
    try:
        return model.model_validate(dict(request.args))
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None


def parse_args(model: type[pydantic.BaseModel], args: Any) -> Any:
    """Validate a WebSocket handshake's query parameters (``websocket.args``) against ``model``."""
    try:
        return model.model_validate(dict(args))
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None
