"""The error contract, checked on every declared route.

Bad input never gives a 500 and never leaks a traceback; every error comes in
its dialect's envelope and names the field at fault. The routes are read from
``app.extensions["llmd_dialects"]``, so a new route is covered as soon as it
is declared; a new dialect must add its envelope to ``ENVELOPES``.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Callable

import pytest

from llmd.http import create_app
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


# dialect name -> checker(body, status) returning the text that should name the field
# (API-MAP.md gives each dialect's envelope)
ENVELOPES: dict[str, Callable[[Any, int], str]] = {
    "openai": _openai,
    "llama_local": _detail,
    "docs": _detail,
    "admin": _admin,
    "easyviz": _error_text,
    "api_v1": _admin,
    "inference_service": _ops,
    "llm_manager": _manager,
}

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


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
        return "tiny"
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
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/generate", "/llmd/v1/models"):
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
        if "model" not in schema.get("properties", {}):
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
    for component in ("fleet", "inference", "models", "monitor", "sessions", "downloads", "hub", "auth"):
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
