"""Route declarations: what each API serves, and which API answers a path that no route matches.

A dialect (one API: its routes and its error envelope) declares its routes on
a :class:`Dialect`; ``create_app`` registers them with Quart, wraps each
handler so that errors come out in the dialect's envelope, and builds the
OpenAPI document from the same declarations.

Where two APIs share a prefix (``/api/models/...``, ``/health``), the owner of
a path that matches no route is decided by :class:`PathOwners`: exact paths
first, then patterns, then the longest prefix. Patterns are matched against
the whole path with ``re.DOTALL``, so a newline or any other byte in a
segment cannot move a path from one API to another.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import pydantic
from quart import current_app
from werkzeug.routing import BaseConverter, PathConverter

from llmd.core.auth import POLICIES
from llmd.errors import LlmdError

Handler = Callable[..., Awaitable[Any]]
# Renders a typed error as (json body, status) in the dialect's envelope; the path is the request's.
ErrorRenderer = Callable[[LlmdError, str], tuple[Any, int]]


class SegmentConverter(BaseConverter):
    """One path segment, any characters but ``/`` (newlines included), as werkzeug's default but for ``\\n``."""

    regex = r"[^/]+"
    part_isolating = True


class AnyPathConverter(PathConverter):
    """Several segments (a hub id such as ``owner/repo``), any characters, newlines included."""

    regex = r"[^/](?s:.)*?"
    part_isolating = False


# Registered on the app's url_map, replacing werkzeug's "default" and "path", whose "." stops at a newline.
CONVERTERS = {"default": SegmentConverter, "string": SegmentConverter, "path": AnyPathConverter}


@dataclass
class Route:
    """One HTTP (or WebSocket) route and what the OpenAPI document says of it."""

    path: str
    methods: tuple[str, ...]
    handler: Handler
    summary: str
    auth: str  # who may call it: "public", "inference" or "admin" (docs/security.md)
    body: type[pydantic.BaseModel] | None = None
    response: type[pydantic.BaseModel] | None = None
    query: type[pydantic.BaseModel] | None = None
    sse: bool = False  # the route can answer text/event-stream
    text: bool = False  # the route answers plain text or HTML
    description: str = ""
    websocket: bool = False  # registered with app.add_websocket; the handler owns its errors


@dataclass
class Dialect:
    """One API: a family of routes that share one error envelope.

    ``prefixes``, ``paths`` and ``patterns`` say which unmatched paths get
    this API's envelope (see :class:`PathOwners`); ``error_schema`` is the
    envelope's JSON schema for the OpenAPI document.
    """

    name: str
    title: str
    render_error: ErrorRenderer
    error_schema: dict[str, Any]
    prefixes: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # exact paths owned outside the prefixes
    patterns: tuple[str, ...] = ()  # regular expressions (full match, DOTALL) for paths inside others' prefixes
    # Path prefixes whose POST bodies are uploads a handler streams (Ollama's blobs): not bounded by
    # server.max_body_bytes, only what waits unread in memory is (create_app's request class).
    upload_prefixes: tuple[str, ...] = ()
    routes: list[Route] = field(default_factory=list)

    def route(self, path: str, methods: tuple[str, ...] = ("GET",), *, summary: str, auth: str,
              body: type[pydantic.BaseModel] | None = None,
              response: type[pydantic.BaseModel] | None = None,
              query: type[pydantic.BaseModel] | None = None,
              sse: bool = False, text: bool = False, description: str = "") -> Callable[[Handler], Handler]:
        """Decorator: declare a handler for ``path``; ``auth`` is its policy (public, inference, admin)."""
        if auth not in POLICIES:
            raise ValueError(f"route {path} of {self.name}: auth must be one of {', '.join(POLICIES)}")

        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(path, tuple(methods), fn, summary, auth, body, response, query, sse, text,
                                     description or (fn.__doc__ or "").strip()))
            return fn

        return deco

    def websocket(self, path: str, *, summary: str, auth: str, description: str = "") -> Callable[[Handler], Handler]:
        """Decorator: declare a WebSocket handler for ``path``.

        The handler speaks the dialect's own message protocol, so it reports
        its errors as messages itself; only unexpected exceptions are caught
        (logged, and the socket closed with code 1011).
        """
        if auth not in POLICIES:
            raise ValueError(f"WebSocket {path} of {self.name}: auth must be one of {', '.join(POLICIES)}")

        def deco(fn: Handler) -> Handler:
            self.routes.append(Route(path, ("GET",), fn, summary, auth,
                                     description=description or (fn.__doc__ or "").strip(), websocket=True))
            return fn

        return deco


class PathOwners:
    """Which API answers a path that matched no route (a 404 or 405 comes in that API's envelope).

    Exact paths win, then patterns (full match over the whole path, with
    ``re.DOTALL``), then the longest matching prefix; a path nobody claims
    goes to ``fallback``.
    """

    def __init__(self, dialects: list[Dialect], fallback: Dialect) -> None:
        self.fallback = fallback
        self._exact = {p: d for d in reversed(dialects) for p in d.paths}
        self._patterns = [(re.compile(p, re.DOTALL), d) for d in dialects for p in d.patterns]
        self._prefixes = sorted(((p, d) for d in dialects for p in d.prefixes), key=lambda x: -len(x[0]))

    def owner(self, path: str) -> Dialect:
        """The dialect whose envelope an unmatched ``path`` gets."""
        found = self._exact.get(path)
        if found is not None:
            return found
        for rx, d in self._patterns:
            if rx.fullmatch(path):
                return d
        for prefix, d in self._prefixes:
            if path.startswith(prefix):
                return d
        return self.fallback



def is_static_path(path: str) -> bool:
    """Whether some route of the app is declared for exactly ``path`` (a rule without parameters)."""
    return any(rule.rule == path for rule in current_app.url_map.iter_rules())
