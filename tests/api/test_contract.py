"""The error contract, checked on every declared route.

Bad input never gives a 500 and never leaks a traceback; every error comes in
its dialect's envelope and names the field at fault. The routes are read from
``app.extensions["llmd_dialects"]``, so a new route is covered as soon as it
is declared; a new dialect must add its envelope to ``ENVELOPES``.
"""

from __future__ import annotations

import asyncio
import collections.abc
import copy
import json
import re
import types
import typing
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import annotated_types
import pydantic
import pytest
from pydantic.fields import FieldInfo

from llmd.http import create_app
from llmd.http.body import INT64_MAX, INT64_MIN, MAX_DEPTH
from llmd.http.fields import StrictModel
from llmd.http.routing import Dialect, Route

LEAKS = ("Traceback", 'File "')


# -- envelopes -----------------------------------------------------------------

def _openai(body: Any, status: int) -> str:
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert set(err) >= {"message", "type", "param", "code"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    assert isinstance(err["code"], str) and err["code"]
    if status < 500:
        assert err["type"] != "server_error", f"a {status} is a client error: {err}"
    return f"{err['param']} {err['message']}"


def _detail(body: Any, status: int) -> str:
    assert isinstance(body, dict) and set(body) == {"detail"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    return body["detail"]


def _admin(body: Any, status: int) -> str:
    assert isinstance(body, dict) and "error" in body, body
    err = body["error"]
    assert isinstance(err.get("code"), str) and err["code"]
    assert isinstance(err.get("message"), str) and err["message"]
    return err["message"]


def _error_text(body: Any, status: int) -> str:
    """Seed 000: ``{"error": "text"}``."""
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
    return body["error"]


def _ops(body: Any, status: int) -> str:
    """Seed 002: ``{"error": {"code", "message", "details"}, "timestamp", "path"}``."""
    text = _admin(body, status)
    assert "timestamp" in body and "path" in body, body
    return text


def _manager(body: Any, status: int) -> str:
    """Seed 004: ``{"success": false, "message", "error": "CODE", "timestamp"}``."""
    assert isinstance(body, dict) and body.get("success") is False, body
    assert isinstance(body.get("message"), str) and body["message"]
    assert isinstance(body.get("error"), str) and body["error"]
    assert "timestamp" in body
    return body["message"]


def _llama_server(body: Any, status: int) -> str:
    """llama.cpp's server: ``{"error": {"code": <status>, "message", "type"}}``."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    err = body["error"]
    assert err.get("code") == status and isinstance(err.get("type"), str) and err["type"], body
    assert isinstance(err.get("message"), str) and err["message"]
    return err["message"]


def _anthropic(body: Any, status: int) -> str:
    """The Anthropic Messages API: ``{"type": "error", "error": {"type", "message"}}``; the message names the
    field."""
    assert isinstance(body, dict) and set(body) == {"type", "error"} and body["type"] == "error", body
    err = body["error"]
    assert isinstance(err, dict) and set(err) == {"type", "message"}, err
    assert isinstance(err["message"], str) and err["message"]
    assert isinstance(err["type"], str) and err["type"]
    if status < 500:
        assert err["type"] != "api_error", f"a {status} is a client error: {err}"
    return err["message"]


def _ollama(body: Any, status: int) -> str:
    """The Ollama API: ``{"error": "text"}`` and nothing else; the text names the field."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"], body
    return body["error"]


# dialect name -> checker(body, status) returning the text that should name the field
# (API-MAP.md gives each dialect's envelope)
ENVELOPES: dict[str, Callable[[Any, int], str]] = {
    "openai": _openai,
    "llama_local": _detail,
    "docs": _detail,
    "console": _detail,  # the web console's files: the fallback's envelope, as the docs
    "admin": _admin,
    "easyviz": _error_text,
    "api_v1": _admin,
    "inference_service": _ops,
    "llm_manager": _manager,
    "anthropic": _anthropic,
    "llama_server": _llama_server,
    "ollama": _ollama,
}

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Routes whose "model" names a model to make, not one that must exist: Ollama's pull (a registry name) and
# create (the new name; its "from" is checked as a model).
NEW_MODEL_ROUTES = {"/api/pull", "/api/create"}


@pytest.fixture
def app(fake_core):
    return create_app(fake_core)


@pytest.fixture
def client(app):
    return app.test_client()


def all_routes(app) -> list[tuple[Dialect, Route]]:
    """Every declared HTTP route (WebSocket routes have no HTTP method to misuse)."""
    out = [(d, r) for d in app.extensions["llmd_dialects"] for r in d.routes
           if not getattr(r, "websocket", False) and any(m in HTTP_METHODS for m in r.methods)]
    assert out
    return out


def concrete(path: str, value: str = "tiny") -> str:
    """A real URL for a route path: every ``<conv:name>`` gets ``value``."""
    return re.sub(r"<(?:\w+:)?\w+>", value, path)


async def check(client, dialect: Dialect, method: str, url: str, *, data: bytes | None = None,
                status: int | tuple[int, ...] | None = None, names: str | None = None,
                problems: list[str], what: str, server_error_ok: bool = False) -> tuple[int, str]:
    """Send one request; record every broken rule in ``problems``."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    try:
        # a route that never answers would otherwise hang the whole suite
        r = await asyncio.wait_for(client.open(url, method=method, data=data, headers=headers), 30)
    except TimeoutError:
        problems.append(f"{method} {url} [{what}]: no complete answer within 30 s")
        return 0, ""
    text = await r.get_data(as_text=True)
    where = f"{method} {url} [{what}] -> {r.status_code}: {text[:300]}"
    for leak in LEAKS:
        if leak in text:
            problems.append(f"{where}: leaks {leak!r}")
    if r.status_code >= 500 and not server_error_ok and (status is None or r.status_code not in _tuple(status)):
        problems.append(f"{where}: a server error for bad input")
    if status is not None and r.status_code not in _tuple(status):
        problems.append(f"{where}: expected {status}")
    if r.status_code < 400:
        return r.status_code, text
    checker = ENVELOPES.get(dialect.name)
    if checker is None:
        problems.append(f"dialect {dialect.name!r} has no envelope checker in ENVELOPES")
        return r.status_code, text
    try:
        named = checker(json.loads(text), r.status_code)
    except (AssertionError, ValueError) as exc:
        problems.append(f"{where}: not the {dialect.name} envelope ({exc})")
        return r.status_code, text
    if names is not None and names not in named:
        problems.append(f"{where}: the error does not name {names!r}")
    return r.status_code, text


def _tuple(x: int | tuple[int, ...]) -> tuple[int, ...]:
    return x if isinstance(x, tuple) else (x,)


def report(problems: list[str]) -> None:
    assert not problems, f"{len(problems)} contract violations:\n" + "\n".join(problems)


# -- request bodies from the schemas ------------------------------------------

def _resolve(schema: dict, root: dict) -> dict:
    while "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    return schema


def _options(schema: dict, root: dict) -> list[dict]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        return [_resolve(s, root) for s in schema["anyOf"]]
    return [schema]


def _types(schema: dict, root: dict) -> set[str]:
    out = set()
    for opt in _options(schema, root):
        if "enum" in opt or "const" in opt:
            out.add(opt.get("type", "string"))
        else:
            out.add(opt.get("type", "any"))
    return out


def example(schema: dict, root: dict) -> Any:
    """A minimal value that the schema accepts (required fields only)."""
    opts = [o for o in _options(schema, root) if o.get("type") != "null"] or _options(schema, root)
    s = opts[0]
    if "enum" in s:
        return s["enum"][0]
    if "const" in s:
        return s["const"]
    t = s.get("type")
    if t == "string":
        if s.get("examples"):  # a field whose pattern no plain word matches carries its own example
            return s["examples"][0]
        return "tiny".ljust(s.get("minLength", 0), "y")  # matches the name patterns too
    if t == "integer":
        return int(max(1, s.get("minimum", 1)))
    if t == "number":
        return float(s.get("minimum", 0.5))
    if t == "boolean":
        return False
    if t == "array":
        return [example(s.get("items", {"type": "string"}), root)] * max(1, s.get("minItems", 1))
    if t == "object":
        return {k: example(v, root) for k, v in s.get("properties", {}).items() if k in s.get("required", [])}
    if t == "null":
        return None
    return "tiny"


def wrong_values(schema: dict, root: dict) -> list[Any]:
    """Values of JSON types the field does not accept."""
    types = _types(schema, root)
    if "any" in types:
        return []
    out: list[Any] = []
    if "object" not in types:
        out.append({"unexpected": "object"})
    if not types & {"integer", "number"}:
        out.append(12345)
    if "string" not in types:
        out.append("a string")
    if "boolean" not in types:
        out.append(True)
    if "null" not in types:
        out.append(None)
    return out


def out_of_range(schema: dict, root: dict) -> list[Any]:
    """Values of the right type outside the field's bounds."""
    out: list[Any] = []
    for opt in _options(schema, root):
        t = opt.get("type")
        if t in ("integer", "number"):
            step = 1 if t == "integer" else 0.5
            if "minimum" in opt:
                out.append(opt["minimum"] - step)
            if "exclusiveMinimum" in opt:
                out.append(opt["exclusiveMinimum"])
            if "maximum" in opt:
                out.append(opt["maximum"] + step)
            if "exclusiveMaximum" in opt:
                out.append(opt["exclusiveMaximum"])
            if t == "number":
                out = [float(v) for v in out]
        elif t == "string":
            if opt.get("minLength", 0) >= 1:
                out.append("")
            if "maxLength" in opt:
                out.append("x" * (opt["maxLength"] + 1))
        elif t == "array" and opt.get("minItems", 0) >= 1:
            out.append([])
    return out


def body_routes(app) -> list[tuple[Dialect, Route, dict, dict]]:
    out = []
    for d, r in all_routes(app):
        if r.body is None:
            continue
        schema = r.body.model_json_schema()
        base = example(schema, schema)
        if "model" in schema.get("properties", {}):
            base["model"] = "tiny"
        # the generated body must be one the route's model accepts, or the checks below mean nothing
        r.body.model_validate_json(json.dumps(base), strict=True)
        out.append((d, r, schema, base))
    return out


def test_every_body_route_is_walked(app):
    walked = {(r.path, m) for _, r, _, _ in body_routes(app) for m in r.methods}
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/generate", "/llmd/v1/models",
                 "/v1/responses", "/v1/responses/input_tokens"):
        assert (path, "POST") in walked
    for d in app.extensions["llmd_dialects"]:
        assert d.name in ENVELOPES, f"add the envelope of dialect {d.name!r} to ENVELOPES"


# -- bad bodies --------------------------------------------------------------------

async def test_bodies_that_are_not_json_objects(app, client):
    problems: list[str] = []
    for d, r, _, _ in body_routes(app):
        for method in r.methods:
            url = concrete(r.path)
            for what, data in [("not JSON", b"this is not json"), ("truncated JSON", b'{"a": '),
                               ("JSON array", b"[1, 2, 3]"), ("JSON string", b'"x"'), ("JSON null", b"null"),
                               ("empty body", b""), ("invalid UTF-8", b'{"a": "\xff\xfe"}')]:
                await check(client, d, method, url, data=data, status=400, problems=problems, what=what)
    report(problems)


async def test_empty_object_names_a_missing_field(app, client):
    problems: list[str] = []
    for d, r, schema, _ in body_routes(app):
        required = schema.get("required", [])
        if not required:
            continue
        for method in r.methods:
            _, text = await check(client, d, method, concrete(r.path), data=b"{}", status=400,
                                  problems=problems, what="empty object")
            if not any(f in text for f in required):
                problems.append(f"{method} {r.path} [empty object]: names none of the required {required}: {text}")
    report(problems)


async def test_required_fields_with_a_wrong_type(app, client):
    problems: list[str] = []
    count = 0
    for d, r, schema, base in body_routes(app):
        for field in schema.get("required", []):
            for value in wrong_values(schema["properties"][field], schema):
                body = {**base, field: value}
                for method in r.methods:
                    count += 1
                    await check(client, d, method, concrete(r.path), data=json.dumps(body).encode(), status=400,
                                names=field, problems=problems, what=f"{field}={value!r}")
    assert count >= 20
    report(problems)


async def test_optional_fields_with_a_wrong_type(app, client):
    problems: list[str] = []
    for d, r, schema, base in body_routes(app):
        for field, prop in schema.get("properties", {}).items():
            if field in schema.get("required", []):
                continue
            # null is a fine value for an optional field; a JSON object rarely is
            for value in [v for v in wrong_values(prop, schema) if v is not None][:2]:
                body = {**base, field: value}
                for method in r.methods:
                    await check(client, d, method, concrete(r.path), data=json.dumps(body).encode(), status=400,
                                names=field, problems=problems, what=f"{field}={value!r}")
    report(problems)


async def test_out_of_range_values(app, client):
    problems: list[str] = []
    count = 0
    for d, r, schema, base in body_routes(app):
        for field, prop in schema.get("properties", {}).items():
            for value in out_of_range(prop, schema):
                body = {**base, field: value}
                for method in r.methods:
                    count += 1
                    await check(client, d, method, concrete(r.path), data=json.dumps(body).encode(), status=400,
                                names=field, problems=problems, what=f"{field}={str(value)[:20]!r}")
    assert count >= 20  # temperature, top_p, max_tokens, top_k, ... on several routes
    report(problems)


async def test_unknown_model(app, client):
    problems: list[str] = []
    walked = 0
    for d, r, schema, base in body_routes(app):
        if "model" not in schema.get("properties", {}) or r.path in NEW_MODEL_ROUTES:
            continue
        body = {**base, "model": "no-such-model-xyz"}
        for method in r.methods:
            walked += 1
            expected = 404 if d.name == "openai" else (400, 404)
            _, text = await check(client, d, method, concrete(r.path), data=json.dumps(body).encode(),
                                  status=expected, names="no-such-model-xyz", problems=problems,
                                  what="unknown model")
            if d.name == "openai" and '"model_not_found"' not in text:
                problems.append(f"{method} {r.path} [unknown model]: code is not model_not_found: {text}")
    assert walked >= 4
    report(problems)


# -- routing errors ----------------------------------------------------------------

def _router_status(app, url: str, method: str) -> int | None:
    """404 or 405 as the URL map decides for ``method url``; None when a route matches."""
    from werkzeug.exceptions import MethodNotAllowed, NotFound

    try:
        app.url_map.bind("localhost").match(url, method=method)
    except NotFound:
        return 404
    except MethodNotAllowed:
        return 405
    return None


async def test_unknown_paths_get_the_dialects_envelope(app, client):
    problems: list[str] = []
    dialects = app.extensions["llmd_dialects"]
    for d in dialects:
        urls = [p.rstrip("/") + "/no-such-route-xyz" for p in d.prefixes]
        if not urls:
            # a dialect of exact paths only: unknown root paths are its to answer only if it is the fallback
            continue
        for url in urls:
            for method in ("GET", "POST"):
                # Under a prefix with id routes (/api/models/<model_id>) the "unknown" path is an id: the
                # router then says 405 for a method that id route lacks. Ask the router what to expect.
                expected = _router_status(app, url, method)
                if expected is None:
                    continue  # a real route matched: the bad-input tests cover it
                await check(client, d, method, url, data=b"{}" if method == "POST" else None, status=expected,
                            problems=problems, what="unknown path")
    # paths nobody owns: the LLaMA Local API's {"detail": ...}
    local = next(d for d in dialects if d.name == "llama_local")
    owners = app.extensions["llmd_owners"]
    unowned = [u for u in ("/no-such-route-xyz", "/api/v9/nothing", "/favicon.ico", "/x/y/z")
               if owners.owner(u) is owners.fallback]
    assert unowned
    for url in unowned:
        await check(client, local, "GET", url, status=404, problems=problems, what="unowned path")
    report(problems)


async def test_wrong_method_is_405(app, client):
    problems: list[str] = []
    methods_by_path: dict[str, set[str]] = {}
    owner: dict[str, Dialect] = {}
    for d, r in all_routes(app):
        methods_by_path.setdefault(r.path, set()).update(r.methods)
        owner.setdefault(r.path, d)
    for path, methods in methods_by_path.items():
        wrong = [m for m in ("DELETE", "PUT", "PATCH", "POST", "GET") if m not in methods][:2]
        for method in wrong:
            await check(client, owner[path], method, concrete(path), data=b"{}" if method != "GET" else None,
                        status=405, names=method, problems=problems, what="wrong method")
        if wrong:
            r = await client.open(concrete(path), method=wrong[0])
            allow = {m.strip() for m in r.headers.get("Allow", "").split(",") if m.strip()}
            if r.status_code == 405 and not set(methods) <= allow:
                problems.append(f"{wrong[0]} {path}: 405 with Allow {sorted(allow)}, expected {sorted(methods)}")
    report(problems)


async def test_routes_are_owned_by_their_dialect(app):
    """Errors raised before a handler (404, 405, 413) use the owner's envelope: it must be the route's dialect."""
    owners = app.extensions["llmd_owners"]
    for d, r in all_routes(app):
        path = concrete(r.path)
        first = owners.owner(path)
        assert first is d, f"{r.path} is declared by {d.name} but errors before its handler render as {first.name}"


async def test_body_too_large_is_413(core_factory):
    core = await core_factory(**{"server.max_body_bytes": 2048})
    app = create_app(core)
    client = app.test_client()
    problems: list[str] = []
    for d, r, _schema, base in body_routes(app):
        big = {**base, "padding": "x" * 4096}
        for method in r.methods:
            await check(client, d, method, concrete(r.path), data=json.dumps(big).encode(), status=413,
                        problems=problems, what="too large")
        # just under the limit is fine as far as size goes
        small = json.dumps({**base, "padding": "x" * 1000}).encode()
        for method in r.methods:
            resp = await client.open(concrete(r.path), method=method, data=small,
                                     headers={"Content-Type": "application/json"})
            if resp.status_code == 413:
                problems.append(f"{method} {r.path}: 413 for a body under the limit")
    report(problems)


# -- unexpected failures -------------------------------------------------------------

async def test_unexpected_exceptions_are_500_in_envelope_without_leaks(app, client, fake_core, monkeypatch):
    import inspect

    secret = "secret-internal-detail-42"

    async def explode(*args, **kwargs):
        raise RuntimeError(secret)

    # every public coroutine method of every core component a handler calls fails unexpectedly
    patched = []
    for component in ("fleet", "inference", "models", "monitor", "sessions", "downloads", "hub", "auth", "history",
                      "settings", "alerts", "backups", "responses"):
        obj = getattr(fake_core, component)
        for name, _fn in inspect.getmembers(type(obj), inspect.iscoroutinefunction):
            if not name.startswith("_"):
                monkeypatch.setattr(obj, name, explode)
                patched.append(f"{component}.{name}")
    assert {"inference.generate", "inference.embed", "monitor.health", "models.list", "fleet.serving"} <= set(patched)
    problems: list[str] = []
    bodies = {(r.path, r.handler): base for _, r, _, base in body_routes(app)}
    status_of: dict[tuple[str, str], int] = {}
    for d, r in all_routes(app):
        if getattr(r, "sse", False) and set(r.methods) <= {"GET", "HEAD"} and "<" not in r.path:
            # a daemon-wide event feed (e.g. /api/downloads/events) is endless by design and calls
            # no core method; tests/e2e/test_downloads_e2e.py reads it from a live daemon
            continue
        for method in r.methods:
            if method not in HTTP_METHODS:
                continue
            base = bodies.get((r.path, r.handler))
            data = json.dumps(base).encode() if base is not None else None
            status, text = await check(client, d, method, concrete(r.path), data=data, server_error_ok=True,
                                       problems=problems, what="core raises")
            if secret in text:
                problems.append(f"{method} {r.path}: the exception's message reached the client")
            # the hub routes reach a hub that tests point at a closed port: a typed 502 is the truth there
            upstream = status == 502 and "HUB_UNAVAILABLE" in text
            if status >= 500 and status != 500 and not upstream:
                problems.append(f"{method} {r.path}: an unexpected exception should be a 500, got {status}")
            status_of[(method, r.path)] = status
    for key in [("POST", "/v1/chat/completions"), ("POST", "/v1/completions"), ("POST", "/v1/embeddings"),
                ("POST", "/generate"), ("GET", "/health"), ("GET", "/model-info"), ("GET", "/v1/models")]:
        assert status_of.get(key) == 500, (key, status_of.get(key))
    report(problems)


async def test_plain_http_to_a_websocket_route(app, client):
    """A WebSocket path asked for over plain HTTP is a client error in the dialect's envelope."""
    problems: list[str] = []
    ws = [(d, r) for d in app.extensions["llmd_dialects"] for r in d.routes if getattr(r, "websocket", False)]
    if not ws:
        pytest.skip("no WebSocket routes are declared")
    for d, r in ws:
        status, _ = await check(client, d, "GET", concrete(r.path, "session-1"), problems=problems,
                                what="plain HTTP to a WebSocket route")
        if not 400 <= status < 500:
            problems.append(f"GET {r.path}: expected a 4xx, got {status}")
    report(problems)


# -- the limits of JSON: nesting depth, 64-bit integers, finite numbers ----------------------
#
# Every body and WebSocket message is parsed by llmd.http.body.load_json_object: at most
# MAX_DEPTH containers inside each other, no integer outside int64, no NaN or Infinity. The
# walk below sends what Python's json.dumps would refuse or rewrite (NaN, 1e400, 2**70) as
# raw bytes, into every numeric field of every route's body model, nested models included.

RAW = "__llmd_raw_json__"  # a placeholder string replaced by raw JSON text after json.dumps
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400")
HUGE_INTS = (str(2**70), str(-(2**70)), str(INT64_MAX + 1), str(INT64_MIN - 1))
BOUND_WORDS = ("less than", "greater than")  # the message of a range check, wrong for NaN
QUERY_TOKENS = ("nan", "inf", "-inf", "99999999999999999999999", "-99999999999999999999999")
DEEP = 5000  # far beyond the C parser's recursion limit


def with_raw(body: Any, raw: str) -> bytes:
    """``body`` as JSON with the placeholder string replaced by ``raw`` (text json.dumps cannot write)."""
    text = json.dumps(body)
    assert text.count(json.dumps(RAW)) == 1, text
    return text.replace(json.dumps(RAW), raw).encode()


def arrays(depth: int) -> str:
    """``depth`` arrays inside each other: ``[[[...]]]``."""
    return "[" * depth + "]" * depth


def objects(depth: int) -> str:
    """``depth`` objects inside each other: ``{"a": {"a": ... {}}}``."""
    return '{"a": ' * (depth - 1) + "{}" + "}" * (depth - 1)


@dataclass(frozen=True)
class Step:
    """One key on the way to a field: ``key`` holds a ``model`` (a list of them when ``in_list``)."""

    key: str
    model: type[pydantic.BaseModel] | None
    in_list: bool


@dataclass(frozen=True)
class NumberField:
    """A numeric field somewhere in a request model."""

    steps: tuple[Step, ...]
    kind: str  # "integer" or "number"
    constraints: tuple[Any, ...]
    owner: type[pydantic.BaseModel]  # the model that declares it

    @property
    def name(self) -> str:
        """The dotted path an error names: ``config.temperature``, ``requests[0].max_tokens``."""
        out = ""
        for s in self.steps:
            out += ("." if out else "") + s.key + ("[0]" if s.in_list else "")
        return out

    def bound(self, lower: bool) -> int | float | None:
        """The field's lower (or upper) bound; None if it has none."""
        names = ("ge", "gt") if lower else ("le", "lt")
        for c in self.constraints:
            for n in names:
                v = getattr(c, n, None)
                if v is not None and isinstance(c, (annotated_types.Ge, annotated_types.Gt, annotated_types.Le,
                                                    annotated_types.Lt, annotated_types.Interval)):
                    return v
        return None

    def allows_inf_nan(self) -> bool:
        if self.owner.model_config.get("allow_inf_nan", True):
            return True
        return any(getattr(c, "allow_inf_nan", None) is True for c in self.constraints)


def _members(tp: Any, metas: tuple[Any, ...] = (), in_list: bool = False) -> Iterator[tuple[Any, tuple, bool]]:
    """(type, constraints, inside a list) for each type an annotation admits."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *extra = typing.get_args(tp)
        yield from _members(base, metas + tuple(extra), in_list)
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            yield from _members(arg, metas, in_list)
    elif origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        for arg in typing.get_args(tp):
            if arg is not Ellipsis:
                yield from _members(arg, (), True)  # the list's own constraints are not its items'
    elif origin is typing.Literal or origin is dict:
        return  # literals are not numbers; a free dict is bounded by the parser alone
    else:
        yield tp, metas, in_list


def _flatten(metas: tuple[Any, ...]) -> tuple[Any, ...]:
    out: list[Any] = []
    for m in metas:
        out.extend(m.metadata if isinstance(m, FieldInfo) else [m])
    return tuple(out)


def request_models(model: type[pydantic.BaseModel]) -> Iterator[type[pydantic.BaseModel]]:
    """``model`` and every model nested in its fields."""
    seen: set[type] = set()
    todo = [model]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        yield m
        for info in m.model_fields.values():
            for tp, _, _ in _members(info.annotation):
                if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
                    todo.append(tp)


def number_fields(model: type[pydantic.BaseModel], steps: tuple[Step, ...] = (),
                  seen: frozenset = frozenset()) -> Iterator[NumberField]:
    """Every int and float field of ``model``, nested models (and lists of them) included."""
    for name, info in model.model_fields.items():
        key = info.alias or name
        for tp, metas, in_list in _members(info.annotation, tuple(info.metadata)):
            if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
                if tp not in seen:
                    yield from number_fields(tp, steps + (Step(key, tp, in_list),), seen | {model})
            elif tp is int or tp is float:  # bool is an int subclass, never "is int"
                yield NumberField(steps + (Step(key, None, in_list),), "integer" if tp is int else "number",
                                  _flatten(metas), model)


def placed(base: dict, field: NumberField, value: Any) -> dict:
    """A copy of ``base`` with ``value`` at ``field``, creating the models on the way as needed."""
    body = copy.deepcopy(base)
    cur = body
    for step in field.steps[:-1]:
        assert step.model is not None
        have = cur.get(step.key)
        if step.in_list:
            missing = not (isinstance(have, list) and have and isinstance(have[0], dict))
        else:
            missing = not isinstance(have, dict)
        if missing:  # absent, null, or another member of a union (a string for a list of parts)
            schema = step.model.model_json_schema()
            made = example(schema, schema)
            cur[step.key] = [made] if step.in_list else made
        cur = cur[step.key][0] if step.in_list else cur[step.key]
    last = field.steps[-1]
    cur[last.key] = [value] if last.in_list else value
    return body


def ws_message_models() -> list[type[pydantic.BaseModel]]:
    """The models WebSocket messages and handshakes are read into (not declared on their routes)."""
    from llmd.http.easyviz.schemas import WS_MESSAGES
    from llmd.http.llm_manager.download_routes import WsQuery

    return [*WS_MESSAGES.values(), WsQuery]


def all_request_models(app) -> dict[str, type[pydantic.BaseModel]]:
    """Every body and query model a route reads: ``where`` -> model."""
    out: dict[str, type[pydantic.BaseModel]] = {}
    for d, r in all_routes(app):
        for what, model in (("body", r.body), ("query", r.query)):
            if model is not None:
                out[f"{d.name} {'/'.join(r.methods)} {r.path} ({what} {model.__name__})"] = model
    for model in ws_message_models():
        out[f"WebSocket message {model.__module__}.{model.__name__}"] = model
    # the batch route reads an envelope, then each item on its own
    from llmd.http.api_v1.schemas import SpecBatchEnvelope, SpecBatchItem
    out["api_v1 batch envelope"] = SpecBatchEnvelope
    out["api_v1 batch item"] = SpecBatchItem
    # and any other model of the HTTP layer that is not a response: one read by a route that does not
    # declare it would otherwise escape the walk
    responses = {r.response for _, r in all_routes(app) if r.response is not None}
    todo, found = list(pydantic.BaseModel.__subclasses__()), set()
    while todo:
        m = todo.pop()
        if m not in found:
            found.add(m)
            todo.extend(m.__subclasses__())
    for m in sorted(found, key=lambda m: f"{m.__module__}.{m.__qualname__}"):
        if m.__module__.startswith("llmd.http") and m not in responses and not m.__name__.endswith("Response"):
            out.setdefault(f"model {m.__module__}.{m.__qualname__}", m)
    return out


def test_request_models_bound_every_number(app):
    """Every int has both bounds within 64 bits, no float takes NaN or Infinity, every model is strict."""
    problems: list[str] = []
    fields = 0
    for where, top in all_request_models(app).items():
        for model in request_models(top):
            if not issubclass(model, StrictModel):
                problems.append(f"{where}: {model.__name__} does not inherit StrictModel")
            if model.model_config.get("allow_inf_nan", True):
                problems.append(f"{where}: {model.__name__} allows NaN and Infinity")
        for f in number_fields(top):
            fields += 1
            if f.kind == "integer":
                lo, hi = f.bound(True), f.bound(False)
                if lo is None or hi is None:
                    problems.append(f"{where}: int field {f.name} has no {'lower' if lo is None else 'upper'} bound")
                elif not (INT64_MIN <= lo and hi <= INT64_MAX):
                    problems.append(f"{where}: int field {f.name} allows {lo}..{hi}, beyond 64 bits")
            elif f.allows_inf_nan():
                problems.append(f"{where}: float field {f.name} allows NaN and Infinity")
    assert fields >= 40
    report(problems)


def test_the_number_walk_reaches_nested_fields(app):
    """The walk below must see nested models, or its cover means little."""
    names = {(r.path, f.name) for _, r, _, _ in body_routes(app) for f in number_fields(r.body)}
    for expected in [("/v1/chat/completions", "seed"), ("/v1/completions", "seed"),
                     ("/api/models", "config.temperature"), ("/api/models", "resource_requirements.gpu_count"),
                     ("/api/v1/llm/generate/", "parameters.temperature"),
                     ("/api/v1/batch/generate", "requests[0].temperature"),
                     ("/api/models/<model_id>/start", "settings.n_ctx")]:
        assert expected in names, expected


async def test_deeply_nested_bodies_are_400(app, client):
    """5,000 levels (past the parser's recursion limit) and 65 levels (one past MAX_DEPTH): the dialect's 400."""
    problems: list[str] = []
    walked = 0
    too_deep = "x" + "[0]" * (MAX_DEPTH - 1)  # the path of the first container past the limit
    for d, r, _, base in body_routes(app):
        cases = [
            (f"x: {DEEP} arrays", with_raw({**base, "x": RAW}, arrays(DEEP)), None),
            (f"x: {DEEP} objects", with_raw({**base, "x": RAW}, objects(DEEP)), None),
            (f"bare {DEEP} arrays", arrays(DEEP).encode(), None),
            (f"bare {DEEP} objects", objects(DEEP).encode(), None),
            (f"{MAX_DEPTH + 1} levels", with_raw({**base, "x": RAW}, arrays(MAX_DEPTH)), too_deep),
        ]
        for method in r.methods:
            for what, data, names in cases:
                walked += 1
                await check(client, d, method, concrete(r.path), data=data, status=400, names=names,
                            problems=problems, what=what)
    assert walked >= 100
    report(problems)


async def test_nesting_at_the_limit_is_accepted(client):
    """MAX_DEPTH levels in all (the body is one) is a normal request."""
    ok_deep = arrays(MAX_DEPTH - 1)
    for url, body in [("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                                "max_tokens": 4, "x": RAW}),
                      ("/api/v1/generate", {"prompt": "hi", "max_tokens": 4, "x": RAW})]:
        r = await client.post(url, data=with_raw(body, ok_deep), headers={"Content-Type": "application/json"})
        assert r.status_code == 200, (url, await r.get_data(as_text=True))


async def test_non_finite_and_huge_numbers_name_the_field(app, client):
    """NaN, ±Infinity, 1e400 in every numeric field; 2**70 and just past int64 in every one too."""
    problems: list[str] = []
    covered: set[tuple[str, str, str]] = set()
    for d, r, _, base in body_routes(app):
        for f in number_fields(r.body):
            for token in NON_FINITE + HUGE_INTS:
                data = with_raw(placed(base, f, RAW), token)
                for method in r.methods:
                    _, text = await check(client, d, method, concrete(r.path), data=data, status=400, names=f.name,
                                          problems=problems, what=f"{f.name}={token}")
                    covered.add((r.path, f.name, token))
                    if token in NON_FINITE and any(w in text for w in BOUND_WORDS):
                        problems.append(f"{method} {r.path} [{f.name}={token}]: a range message for a "
                                        f"non-finite number: {text[:200]}")
    for path in ("/v1/chat/completions", "/v1/completions"):
        assert (path, "seed", str(2**70)) in covered
        assert (path, "temperature", "NaN") in covered
    assert ("/api/models", "config.temperature", "NaN") in covered
    assert ("/api/v1/llm/generate/", "parameters.temperature", "Infinity") in covered
    assert len(covered) >= 400
    report(problems)


async def test_seed_out_of_range_is_refused(client):
    """The tracker's case: ``seed: 2**70`` was accepted in silence; int64's own bounds are fine."""
    for url, body in [("/v1/chat/completions", {"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
                                                "max_tokens": 4}),
                      ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 4})]:
        for seed in (2**70, -(2**70), INT64_MAX + 1, INT64_MIN - 1):
            r = await client.post(url, data=with_raw({**body, "seed": RAW}, str(seed)),
                                  headers={"Content-Type": "application/json"})
            err = json.loads(await r.get_data(as_text=True))["error"]
            assert r.status_code == 400 and err["param"] == "seed", (url, seed, err)
        for seed in (INT64_MAX, INT64_MIN, 0):
            r = await client.post(url, data=json.dumps({**body, "seed": seed}).encode(),
                                  headers={"Content-Type": "application/json"})
            assert r.status_code == 200, (url, seed, await r.get_data(as_text=True))
        r = await client.post(url, data=with_raw({**body, "temperature": RAW}, "NaN"),
                              headers={"Content-Type": "application/json"})
        err = json.loads(await r.get_data(as_text=True))["error"]
        assert r.status_code == 400 and err["param"] == "temperature", err
        assert "finite" in err["message"] and not any(w in err["message"] for w in BOUND_WORDS), err


async def test_bad_numbers_in_queries_name_the_parameter(app, client):
    problems: list[str] = []
    walked = 0
    for d, r in all_routes(app):
        if r.query is None:
            continue
        for f in number_fields(r.query):
            assert len(f.steps) == 1, f"a query model with a nested number: {f.name}"
            for token in QUERY_TOKENS:
                url = f"{concrete(r.path)}?{urllib.parse.urlencode({f.name: token})}"
                for method in r.methods:
                    walked += 1
                    await check(client, d, method, url, status=400, names=f.name, problems=problems,
                                what=f"?{f.name}={token}")
    assert walked >= 30
    report(problems)


# -- WebSockets: a bad message is an error message; the socket stays open ----------------------

async def ws_recv(ws, timeout: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.receive(), timeout))


def chat_bad_messages() -> list[tuple[str, str | bytes, str | None]]:
    """(what, message, the field its error must name) for the chat socket."""
    from llmd.http.easyviz.schemas import WS_MESSAGES

    base = {"type": "chat_message", "message": "hi", "stream": False}
    too_deep = "x" + "[0]" * (MAX_DEPTH - 1)
    out: list[tuple[str, str | bytes, str | None]] = [
        (f"{DEEP} arrays", with_raw({**base, "x": RAW}, arrays(DEEP)).decode(), None),
        (f"bare {DEEP} arrays", arrays(DEEP), None),
        (f"{DEEP} objects", objects(DEEP), None),
        (f"{MAX_DEPTH + 1} levels", with_raw({**base, "x": RAW}, arrays(MAX_DEPTH)).decode(), too_deep),
        # a binary frame goes through the same parser as a text frame
        (f"{MAX_DEPTH + 1} levels, binary frame", with_raw({**base, "x": RAW}, arrays(MAX_DEPTH)), too_deep),
        (f"{DEEP} arrays, binary frame", arrays(DEEP).encode(), None),
        ("parameters.temperature=NaN", with_raw({**base, "parameters": {"temperature": RAW}}, "NaN").decode(),
         "parameters.temperature"),
        ("parameters.max_length=2**70", with_raw({**base, "parameters": {"max_length": RAW}}, str(2**70)).decode(),
         "parameters.max_length"),
        ("timestamp=2**70", with_raw({**base, "timestamp": RAW}, str(2**70)).decode(), "timestamp"),
    ]
    for kind, model in WS_MESSAGES.items():
        schema = model.model_json_schema()
        msg = {**example(schema, schema), "type": kind}
        for f in number_fields(model):
            for token in NON_FINITE + HUGE_INTS:
                out.append((f"{kind} {f.name}={token}", with_raw(placed(msg, f, RAW), token).decode(), f.name))
    return out


async def test_ws_chat_bad_messages_keep_the_socket_open(client, fake_core):
    cases = chat_bad_messages()
    assert len(cases) >= 30  # parameters.temperature, top_p, max_length with every bad token
    problems: list[str] = []
    async with client.websocket("/ws/chat/s1/") as ws:
        for what, raw, names in cases:
            await ws.send(raw)
            try:
                msg = await ws_recv(ws)
            except Exception as exc:  # noqa: BLE001 - the socket closed (1011) or nothing came
                problems.append(f"[{what}]: no error message ({exc!r})")
                break
            text = json.dumps(msg)
            if msg.get("type") != "error" or not isinstance(msg.get("error"), str):
                problems.append(f"[{what}]: not an error message: {text[:300]}")
            elif names is not None and names not in msg["error"]:
                problems.append(f"[{what}]: the error does not name {names!r}: {text[:300]}")
            if any(leak in text for leak in LEAKS):
                problems.append(f"[{what}]: leaks a traceback: {text[:300]}")
        # the same socket still answers
        await ws.send(json.dumps({"type": "chat_message", "message": "hi", "stream": False}))
        answer = await ws_recv(ws)
        assert answer["type"] == "assistant_message" and answer["content"], answer
    report(problems)
    rows = await fake_core.sessions.history("s1")
    assert [r["role"] for r in rows] == ["user", "assistant"]  # refused messages leave no trace


async def ws_next(ws, types_: tuple[str, ...]) -> dict[str, Any]:
    """The next message of one of ``types_``, skipping download events."""
    while True:
        msg = await ws_recv(ws)
        if msg.get("type") in types_:
            return msg
        assert msg.get("type") in ("snapshot", "progress", "status"), msg


async def test_ws_downloads_bad_messages_keep_the_socket_open(client):
    base = {"type": "subscribe", "task_id": "task_x"}
    cases: list[tuple[str, str | bytes, str | None]] = [
        (f"{DEEP} arrays", with_raw({**base, "x": RAW}, arrays(DEEP)).decode(), None),
        (f"bare {DEEP} arrays", arrays(DEEP), None),
        (f"{DEEP} objects, bytes", objects(DEEP).encode(), None),
        (f"{MAX_DEPTH + 1} levels", with_raw({**base, "x": RAW}, arrays(MAX_DEPTH)).decode(),
         "x" + "[0]" * (MAX_DEPTH - 1)),
        ("NaN", with_raw({"type": "ping", "n": RAW}, "NaN").decode(), "n"),
        ("1e400", with_raw({"type": "ping", "n": RAW}, "1e400").decode(), "n"),
        ("2**70", with_raw({"type": "ping", "n": RAW}, str(2**70)).decode(), "n"),
        ("not JSON", "not json", None),
        ("an array", "[1, 2]", None),
    ]
    problems: list[str] = []
    async with client.websocket("/ws/downloads") as ws:
        await ws_next(ws, ("snapshot",))
        for what, raw, names in cases:
            await ws.send(raw)
            try:
                msg = await ws_next(ws, ("error", "pong"))
            except Exception as exc:  # noqa: BLE001 - the socket closed (1011) or nothing came
                problems.append(f"[{what}]: no error message ({exc!r})")
                break
            text = json.dumps(msg)
            if msg.get("type") != "error" or not isinstance(msg.get("message"), str):
                problems.append(f"[{what}]: not an error message: {text[:300]}")
            elif names is not None and names not in msg["message"]:
                problems.append(f"[{what}]: the error does not name {names!r}: {text[:300]}")
            if any(leak in text for leak in LEAKS):
                problems.append(f"[{what}]: leaks a traceback: {text[:300]}")
        await ws.send(json.dumps({"type": "ping"}))
        assert (await ws_next(ws, ("pong", "error")))["type"] == "pong"
    report(problems)


# -- the OpenAI API of one model on its own port (llmd.http.port_app) -----------------------------

async def port_app_post(app, path: str, body: bytes) -> tuple[int, bytes]:
    """One POST through PortApp, the ASGI layer that rewrites the body's ``model``, as the daemon runs it."""
    from llmd.http.port_app import PortApp

    port = PortApp(app, "tiny", 4 * 1024 * 1024)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"localhost"), (b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode())],
             "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8001), "extensions": {}}
    inbox = [{"type": "http.request", "body": body, "more_body": False}]
    status, chunks = 0, []
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        nonlocal status
        if msg["type"] == "http.response.start":
            status = msg["status"]
        elif msg["type"] == "http.response.body":
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                done.set()

    await asyncio.wait_for(port(scope, receive, send), 30)
    return status, b"".join(chunks)


async def test_port_app_bounds_nesting_too(app):
    """PortApp parses the body itself (to pin the model): a hostile depth is the OpenAI 400, not a crash."""
    base = {"model": "other", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    for what, data, names in [(f"{DEEP} arrays", with_raw({**base, "x": RAW}, arrays(DEEP)), None),
                              (f"bare {DEEP} arrays", arrays(DEEP).encode(), None),
                              (f"{MAX_DEPTH + 1} levels", with_raw({**base, "x": RAW}, arrays(MAX_DEPTH)), "x[0]"),
                              ("seed 2**70", with_raw({**base, "seed": RAW}, str(2**70)), "seed"),
                              ("temperature NaN", with_raw({**base, "temperature": RAW}, "NaN"), "temperature")]:
        status, body = await port_app_post(app, "/v1/chat/completions", data)
        text = body.decode()
        assert status == 400, (what, status, text[:300])
        err = json.loads(text)["error"]
        assert not any(leak in text for leak in LEAKS)
        if names is not None:
            assert names in f"{err['param']} {err['message']}", (what, err)
    # and a good body still has its model pinned
    status, body = await port_app_post(app, "/v1/chat/completions", json.dumps(base).encode())
    assert status == 200 and json.loads(body)["model"] == "tiny", body[:300]


async def test_a_path_naming_an_unknown_users_home_is_a_400(client):
    """Found by the fuzz run: ``~<user>`` with no such user made expanduser() raise (a 500)."""
    r = await client.post("/llmd/v1/models", json={"path": "~no-such-user-here/m.gguf"})
    body = await r.get_json()
    assert r.status_code == 400 and body["error"]["message"].startswith("path:"), body
