"""Route declarations shared by every dialect.

A dialect declares its routes on a :class:`Dialect`; ``create_app`` registers
them with Quart, wraps each handler so errors are rendered in the dialect's
envelope, and builds the OpenAPI document from the same declarations.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import pydantic
from quart import current_app, request

from llmd.errors import InvalidJSONError, LlmdError, MethodNotAllowedError, ValidationError

Handler = Callable[..., Awaitable[Any]]
# Renders a typed error as (json body, status, extra headers).
ErrorRenderer = Callable[[LlmdError, str], tuple[Any, int]]


@dataclass
class Route:
    """One HTTP (or WebSocket) route and what the OpenAPI document says of it."""

    path: str
    methods: tuple[str, ...]
    handler: Handler
    summary: str
    body: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    sse: bool = False  # the route can answer text/event-stream
    text: bool = False  # the route answers plain text or HTML
    public: bool = False
    description: str = ""
    websocket: bool = False  # registered with app.add_websocket; the handler owns its errors
    # Who may call it: "public", "inference" or "admin" (docs/security.md). None is a bug
    # that the auth matrix test catches: every route must state its policy.
    auth: str | None = None


@dataclass
class Dialect:
    """A family of routes that share one error envelope."""

    name: str
    title: str
    render_error: ErrorRenderer
    prefixes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # exact paths owned outside the prefixes
    routes: list[Route] = field(default_factory=list)
    patterns: tuple[str, ...] = ()  # regular expressions (full match) for paths owned inside others' prefixes

    def route(self, path: str, methods: tuple[str, ...] = ("GET",), *, summary: str,
              body: type[pydantic.BaseModel] | None = None,
              response: type[pydantic.BaseModel] | None = None,
              query: type[pydantic.BaseModel] | None = None,
              sse: bool = False, text: bool = False, public: bool = False,
              description: str = "", auth: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: declare a handler for ``path``; ``auth`` is its policy (public, inference, admin)."""

        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(path, tuple(methods), fn, summary, body, response, query,
                                     sse, text, public, description or (fn.__doc__ or "").strip(),
                                     auth="public" if public else auth))
            return fn

        return deco

    def websocket(self, path: str, *, summary: str, description: str = "",
                  auth: str | None = None) -> Callable[[Handler], Handler]:
        """Decorator: declare a WebSocket handler for ``path``.

        The handler speaks the dialect's own message protocol, so it reports
        its errors as messages itself; only unexpected exceptions are caught
        (logged, and the socket closed with code 1011).
        """

        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(path, ("GET",), fn, summary, public=False,
                                     description=description or (fn.__doc__ or "").strip(), websocket=True,
                                     auth=auth))
            return fn

        return deco

    def owns(self, path: str) -> bool:
        """True if an unmatched ``path`` should get this dialect's envelope."""
        return (path in self.paths or any(path.startswith(p) for p in self.prefixes)
                or any(re.fullmatch(p, path) for p in self.patterns))


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def validation_error(exc: pydantic.ValidationError) -> ValidationError:
    """The first pydantic error as a typed error naming the field; all of them in details."""
    errors = []
    for e in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-")))
        # Union members add their type name to loc (e.g. "str", "list[str]"); drop them.
        loc = tuple(x for x in loc if not (isinstance(x, str) and ("[" in x or x in ("str", "int", "float", "bool"))))
        errors.append({"field": _field_name(loc), "message": e["msg"], "type": e["type"]})
    first = errors[0] if errors else {"field": "body", "message": "invalid request"}
    return ValidationError(f"{first['field']}: {first['message']}", field=first["field"], details=errors)


def load_json_object(raw: bytes | str, *, what: str = "the request body", field: str = "body") -> dict[str, Any]:
    """Parse JSON text that must be an object; typed errors name ``field`` otherwise."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJSONError(f"{what} is not valid JSON: {exc}", field=field) from None
    if not isinstance(data, dict):
        raise InvalidJSONError(f"{what} must be a JSON object", field=field)
    return data


def parse_model(model: type[pydantic.BaseModel], raw: bytes | str) -> Any:
    """Validate JSON text against ``model`` strictly (no "1" for 1, no "yes" for true)."""
    data = load_json_object(raw)
    try:
        return model.model_validate_json(raw if isinstance(raw, (bytes, str)) else json.dumps(data), strict=True)
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None


async def parse_body(model: type[pydantic.BaseModel]) -> Any:
    """Read the request body and validate it against ``model``."""
    raw = await request.get_data(as_text=False)
    if not raw or not raw.strip():
        raise InvalidJSONError("the request body must be a JSON object", field="body")
    return parse_model(model, raw)


def parse_query(model: type[pydantic.BaseModel]) -> Any:
    """Validate query parameters against ``model`` (lax: query values are strings)."""
    try:
        return model.model_validate(dict(request.args))
    except pydantic.ValidationError as exc:
        raise validation_error(exc) from None


class StrictModel(pydantic.BaseModel):
    """Base for request bodies: unknown fields are ignored, as OpenAI clients send many."""

    model_config = pydantic.ConfigDict(extra="ignore")


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with a ``Z``, as seeds 002 and 004 write timestamps."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def static_path_refusal(path: str) -> MethodNotAllowedError:
    """A 405 for a static path (``/api/models/search``) that a broader rule (``/api/models/<id>``) caught.

    Its ``Allow`` header lists the methods of the rule declared for exactly
    that path, not those of the rule that matched.
    """
    methods = sorted({m for r in current_app.url_map.iter_rules() if r.rule == path
                      for m in (r.methods or ())} - {"HEAD", "OPTIONS"})
    return MethodNotAllowedError(f"{request.method} is not allowed on {path}",
                                 headers={"Allow": ", ".join(methods)} if methods else None)
