"""Paths under a prefix that several APIs share are answered by exactly one API, whatever bytes they hold.

``/api/models/...`` is the LLM Inference Service's registry and the LLM
Manager's hub (``/api/models/search``, ``/api/models/{hub_id}/info``,
``.../favorite``); ``/api/chat/...`` and ``/api/completions/...`` are the LLM
Manager's inside paths nobody else owns; ``/health`` is the LLaMA Local API's
next to ``/api/health``, ``/api/v1/health`` and ``/api/v1/llm/health/``;
``/v1/messages`` and every path below it are the Anthropic Messages API's inside
the OpenAI API's ``/v1/``; ``/`` and every path nobody claims get the LLaMA
Local API's ``{"detail"}``.

:func:`expected_api` writes those rules down independently of
``PathOwners`` and the route table. Each shape of a path segment
(newlines, encoded slashes, invalid UTF-8, NUL, very long segments, ...) is
put into every route under a shared prefix and into the prefixes
themselves, and sent with each method:

* through the Quart test client (every shape, every method), and
* on the wire to a real Hypercorn server on a Unix socket, percent-encoded
  byte by byte (``%0A``, ``%2F``, ``%FF``, ...), as a client would send it.

An error must come in the envelope of the API :func:`expected_api` names; a
success must come from a route of that API; nothing may redirect (werkzeug's
308 for an empty segment, ``//``, is off: a 404 in the owner's envelope) or
fail with a 5xx. The same shapes, and ids that look like numbers, also go into
every parameter of every route of every API; and a request target with raw
bytes that HTTP forbids is refused by Hypercorn before any API sees it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import pytest

from llmd.http import create_app

# -- the rules, written down --------------------------------------------------

# The LLM Manager's hub paths inside the LLM Inference Service's /api/models.
HUB_PATHS = {"/api/models/search", "/api/models/categories", "/api/models/trending", "/api/models/stats",
             "/api/models/sync"}
HUB_ID_ROUTE = re.compile(r"/api/models/.+/(?:info|favorite)", re.DOTALL)
DOCS_PATHS = {"/docs", "/redoc", "/openapi.json"}
# The Ollama API's exact paths (its /api/chat and /api/generate sit beside the LLM Manager's /api/chat/...).
OLLAMA_PATHS = {"/", "/api/version", "/api/tags", "/api/ps", "/api/show", "/api/chat", "/api/generate", "/api/embed",
                "/api/embeddings", "/api/pull", "/api/delete", "/api/copy", "/api/create", "/api/push", "/api/blobs"}
# The LLM Manager's system routes inside the LLM Inference Service's /api/system/.
MANAGER_SYSTEM = ("/api/system/resources", "/api/system/load", "/api/system/health")


def expected_api(path: str) -> str:
    """The API that answers ``path`` (as the server decodes it), by the table "Who answers a path that two
    APIs share" in docs/api.md."""
    path = "/" + path.lstrip("/")  # the router merges leading slashes (werkzeug)
    if path in OLLAMA_PATHS or path.startswith("/api/blobs/"):
        return "ollama"
    if path in HUB_PATHS or HUB_ID_ROUTE.fullmatch(path):
        return "llm_manager"
    if path in MANAGER_SYSTEM or path.startswith(tuple(p + "/" for p in MANAGER_SYSTEM)):
        return "llm_manager"
    if path.startswith(("/api/models", "/api/monitoring/", "/api/system/", "/api/config/")) or path in (
            "/api/system", "/api/config", "/ws/monitor"):
        return "inference_service"
    if path.startswith(("/api/chat/", "/api/completions/")) or path == "/api/health":
        return "llm_manager"
    if path.startswith("/api/v1/llm/"):
        return "easyviz"
    if path.startswith("/api/v1/"):
        return "api_v1"
    if path in DOCS_PATHS or path.startswith("/docs/"):
        return "docs"
    if path == "/console" or path.startswith("/console/"):
        return "console"  # the web console (docs/console.md)
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    if path.startswith("/v1/"):
        return "openai"
    # /health, /generate, /model-info, and everything nobody claims: the LLaMA Local API
    return "llama_local"


def envelope_apis(body: Any) -> set[str]:
    """The APIs whose error envelope ``body`` is (admin and api_v1 share one, as do docs, the console and
    llama_local)."""
    if not isinstance(body, dict):
        return set()
    if body.get("success") is False and isinstance(body.get("message"), str) and isinstance(body.get("error"), str) \
            and "timestamp" in body:
        return {"llm_manager"}
    if set(body) == {"detail"} and isinstance(body["detail"], str):
        return {"llama_local", "docs", "console"}
    if set(body) == {"type", "error"} and body["type"] == "error" and isinstance(body["error"], dict) \
            and set(body["error"]) == {"type", "message"}:
        return {"anthropic"}
    err = body.get("error")
    if set(body) == {"error"} and isinstance(err, str) and err:
        return {"easyviz", "ollama"}
    if isinstance(err, dict) and isinstance(err.get("message"), str) and isinstance(err.get("code"), str):
        if set(body) == {"error"} and {"type", "param"} <= set(err):
            return {"openai"}
        if set(body) == {"error", "timestamp", "path"} and "details" in err:
            return {"inference_service"}
        if set(body) == {"error"} and "details" in err:
            return {"admin", "api_v1"}
    return set()


def test_the_rules_themselves():
    assert expected_api("/api/models") == "inference_service"
    assert expected_api("/api/models/x") == "inference_service"
    assert expected_api("/api/models/search") == "llm_manager"
    assert expected_api("/api/models/search\n") == "inference_service"
    assert expected_api("/api/models/a\nb/info") == "llm_manager"
    assert expected_api("/api/models/a/b/favorite") == "llm_manager"
    assert expected_api("/api/models/a/info\n") == "inference_service"
    assert expected_api("/api/models//info") == "inference_service"  # an empty hub id is no hub id
    assert expected_api("/api/chat/x") == "llm_manager"
    assert expected_api("/api/chat") == expected_api("/") == expected_api("/api/blobs/x") == "ollama"
    assert expected_api("/api/chat\n") == expected_api("/api/tags/x") == "llama_local"
    assert expected_api("/health") == expected_api("/health/x") == "llama_local"
    assert expected_api("//api/models/x") == "inference_service"
    assert expected_api("/v1/messages") == expected_api("/v1/messages/count_tokens") == "anthropic"
    assert expected_api("/v1/messages/a\nb") == expected_api("/v1/messages/") == "anthropic"
    assert expected_api("/v1/messagesx") == expected_api("/v1/messages\n") == expected_api("/v1/x") == "openai"


# -- the shapes -----------------------------------------------------------------

# One path segment as the server sees it once decoded (quote() encodes it for the wire).
SHAPES: dict[str, str] = {
    "plain": "x",
    "newline inside": "a\nb",
    "newline alone": "\n",
    "newline after": "x\n",
    "newline before": "\nx",
    "crlf": "a\r\nb",
    "tab": "a\tb",
    "space": "a b",
    "NUL": "a\x00b",
    "control chars": "\x01\x1f\x7f",
    "latin-1 and newline": "\u00dd\n\u00dd",
    "invalid UTF-8 (decoded as U+FFFD)": "\ufffd",
    "emoji": "\U0001f600",
    "encoded slash": "a/b",
    "encoded slash alone": "/",
    "two encoded slashes": "a//b",
    "encoded slash before": "/x",
    "dot": ".",
    "dot dot": "..",
    "percent sign": "%",
    "an encoded escape": "%2F",
    "question mark": "?",
    "hash": "#",
    "backslash": "\\",
    "the word info": "info",
    "the word favorite": "favorite",
    "a hub route inside": "a/info",
    "a hub path": "search",
    "a hub path with newline": "search\n",
    "long": "x" * 5000,
    "long multibyte": "\u00e9" * 1500,
    "long newlines": "\n" * 1000,
}

# Where the shapes go, besides every parameter of every route under a shared prefix.
SHARED_PREFIXES = ("/api/models", "/api/chat", "/api/completions", "/health", "/api/health", "/api/v1/health",
                   "/api/v1/llm/health/", "/api/system", "/api/config", "/v1/messages", "/")
METHODS = ("GET", "POST", "PUT", "DELETE")
_PARAM = re.compile(r"<(?:\w+:)?\w+>")


def _is_shared(path: str) -> bool:
    return path.startswith(("/api/models", "/api/chat/", "/api/completions/", "/api/system/",
                            "/api/config", "/v1/messages")) or path in (
        "/health", "/api/health", "/api/v1/health", "/api/v1/llm/health/")


def templates(app) -> list[str]:
    """Paths with ``{s}`` where a shape goes: every route under a shared prefix, with each of its
    parameters in turn, with a segment after it and glued to its end; and each prefix itself."""
    out: list[str] = []
    for d in app.extensions["llmd_dialects"]:
        for r in d.routes:
            if r.websocket or not _is_shared(r.path):
                continue
            pieces = _PARAM.split(r.path)  # the literal parts around the parameters
            for i in range(len(pieces) - 1):
                fill = ["{s}" if j == i else "x" for j in range(len(pieces) - 1)] + [""]
                out.append("".join(piece + value for piece, value in zip(pieces, fill, strict=True)))
            plain = _PARAM.sub("x", r.path)
            out += [plain.rstrip("/") + "/{s}", plain + "{s}"]
    for prefix in SHARED_PREFIXES:
        out += [prefix.rstrip("/") + "/{s}", prefix + "{s}", prefix.rstrip("/") + "/{s}/{s}"]
    out += ["/{s}/api/models/x", "/api/{s}/models", "/{s}" + "/api/models/x/info"]
    return sorted(set(out))


def wire(template: str, segment: str) -> str:
    """The request target: the template with ``segment`` percent-encoded byte by byte (UTF-8)."""
    return template.replace("{s}", quote(segment, safe=""))


# -- the check ------------------------------------------------------------------------

def problem(app, method: str, target: str, status: int, ctype: str, text: str) -> str | None:
    """What is wrong with one answer, or None."""
    path = unquote(target)  # what Hypercorn and the test client hand the app (invalid UTF-8 becomes U+FFFD)
    want = expected_api(path)
    where = f"{method} {target[:120]!r} (decoded {path[:80]!r}) -> {status}"
    if 300 <= status < 400:
        return f"{where}: a redirect ({text[:100]!r}), not an answer of {want}"
    if status >= 500 and status != 502:  # 502: the test's hub (127.0.0.1:9) is down, by design
        return f"{where}: a server error: {text[:200]}"
    if status >= 400:
        try:
            body = json.loads(text)
        except ValueError:
            return f"{where}: not JSON ({ctype}): {text[:200]!r}"
        apis = envelope_apis(body)
        if want not in apis:
            return f"{where}: answered in the envelope of {sorted(apis) or 'nobody'}, not {want}: {text[:200]}"
        return None
    # a success: the route that served it must be the expected API's
    adapter = app.url_map.bind("llmd")
    try:
        endpoint, _ = adapter.match(path, method)
    except Exception as exc:  # noqa: BLE001 - a success with no route is reported
        return f"{where}: a success, yet no route matches ({exc!r})"
    served_by = app.extensions["llmd_routes"][endpoint][0].name
    if served_by != want:
        return f"{where}: served by {served_by}, not {want}"
    return None


def report(problems: list[str], sent: int) -> None:
    assert sent > 0
    assert not problems, f"{len(problems)} of {sent} answers broke the rules:\n" + "\n".join(problems[:60])


@pytest.fixture
def app(fake_core):
    return create_app(fake_core)


async def test_every_shape_on_every_shared_prefix(app):
    """Through the Quart test client (which decodes the target as Hypercorn does)."""
    client = app.test_client()
    problems: list[str] = []
    sent = 0
    for template in templates(app):
        for segment in SHAPES.values():
            target = wire(template, segment)
            for method in METHODS:
                data = b"{}" if method in ("POST", "PUT") else None
                headers = {"Content-Type": "application/json"} if data is not None else {}
                r = await asyncio.wait_for(client.open(target, method=method, data=data, headers=headers), 30)
                sent += 1
                found = problem(app, method, target, r.status_code, r.headers.get("Content-Type", ""),
                                await r.get_data(as_text=True))
                if found:
                    problems.append(found)
    report(problems, sent)


# Ids that look like numbers to one parser and not to another: Unicode digits ("²" is a digit to
# str.isdigit, not to int()), numbers past SQLite's INTEGER, and the APIs' id prefixes with them.
ID_SHAPES = ["\u00b2", "\u0661", "9" * 19, "9" * 40, "-1", "0", "00", "1e3", " 1", "+1", "1_0",
             "model-\u00b2", "model-" + "9" * 30, "deploy_\u00b2", "deploy_" + "9" * 19, "task_\u00b2",
             "task-" + "9" * 30, "key_\u00b2"]


async def test_every_parameter_of_every_route_takes_any_shape(app):
    """Every parameter of every route (shared prefix or not) gets each shape, with the route's own methods:
    never a 5xx but the designed ones (502: the test's hub is down), always the route's API's envelope."""
    client = app.test_client()
    problems: list[str] = []
    sent = 0
    owners = app.extensions["llmd_owners"]
    adapter = app.url_map.bind("llmd")
    # a path a route declares exactly is its API's whatever the method (/api/models/search vs {model_id})
    static = {r.path: d.name for d in app.extensions["llmd_dialects"] for r in d.routes if "<" not in r.path}
    for d in app.extensions["llmd_dialects"]:
        for r in d.routes:
            pieces = _PARAM.split(r.path)
            if r.websocket or len(pieces) == 1:
                continue
            for i in range(len(pieces) - 1):
                for segment in [*SHAPES.values(), *ID_SHAPES]:
                    fill = [quote(segment, safe="") if j == i else "x" for j in range(len(pieces) - 1)] + [""]
                    target = "".join(piece + value for piece, value in zip(pieces, fill, strict=True))
                    for method in r.methods:
                        data = b"{}" if method in ("POST", "PUT") else None
                        headers = {"Content-Type": "application/json"} if data is not None else {}
                        resp = await asyncio.wait_for(client.open(target, method=method, data=data,
                                                                  headers=headers), 30)
                        sent += 1
                        status, text = resp.status_code, await resp.get_data(as_text=True)
                        path = unquote(target)
                        where = f"{method} {target[:100]!r} -> {status}"
                        if status >= 500 and status not in (502, 503):
                            problems.append(f"{where}: a server error: {text[:200]}")
                        elif status >= 400:
                            try:
                                endpoint, _ = adapter.match(path, method)
                                want = static.get(path) or app.extensions["llmd_routes"][endpoint][0].name
                            except Exception:  # noqa: BLE001 - no route: the owner of the path answers
                                want = owners.owner("/" + path.lstrip("/")).name
                            try:
                                apis = envelope_apis(json.loads(text))
                            except ValueError:
                                apis = set()
                            if want not in apis:
                                problems.append(f"{where}: not in the envelope of {want}: {text[:200]}")
    report(problems, sent)


# -- on the wire: a real Hypercorn on a Unix socket -------------------------------------

# Request targets as raw bytes on the request line; the template's {s} gets each of these as is.
WIRE_SHAPES = ["%0A", "a%0Ab", "%0D%0A", "%00", "%2F", "a%2Fb", "%2F%2F", "%2Fx", "%FF", "%C3", "%C3%9D%0A",
               "%E2%82", "%C0%AF", "%ED%A0%80", "%25", "%252F", "%3F", "%23", "%5C", "%20", "%2E%2E", "..",
               "x%0A", "%0Ax", "info", "a%2Finfo", "search%0A", "%0A" * 1000, "%FF" * 2000, "y" * 8000]
WIRE_TEMPLATES = ["/api/models/{s}", "/api/models/{s}/info", "/api/models/{s}/favorite", "/api/models/a/{s}/info",
                  "/api/models/{s}/start", "/api/models/{s}/chat/completions", "/api/models/x/{s}",
                  "/api/models{s}", "/api/chat/{s}", "/api/chat{s}", "/api/completions/{s}", "/health{s}",
                  "/health/{s}", "/{s}", "/{s}/api/models/x", "/v1/messages{s}", "/v1/messages/{s}",
                  "/v1/messages/count_tokens{s}"]


async def _raw(sock: str, method: str, target: bytes) -> tuple[int, str, str]:
    """One HTTP/1.1 request with ``target`` exactly as given; (status, content type, body)."""
    reader, writer = await asyncio.open_unix_connection(sock)
    try:
        body = b"{}" if method in ("POST", "PUT") else b""
        writer.write(method.encode() + b" " + target + b" HTTP/1.1\r\nHost: llmd\r\nConnection: close\r\n"
                     b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                     + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
    head, _, payload = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        out = b""
        while payload:
            size, _, rest = payload.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            out, payload = out + rest[:n], rest[n + 2:]
        payload = out
    return status, headers.get("content-type", ""), payload.decode("utf-8", "replace")


@pytest.fixture
async def server(app):
    """``app`` behind a real Hypercorn on a Unix socket in a private directory; stopped after the test."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    root = Path(tempfile.mkdtemp(prefix="llmd-paths-"))  # short: a Unix socket path has ~100 bytes
    sock = root / "s.sock"
    config = Config()
    config.bind = [f"unix:{sock}"]
    config.accesslog = None
    config.graceful_timeout = 1.0
    stop = asyncio.Event()
    task = asyncio.ensure_future(serve(app, config, shutdown_trigger=stop.wait))
    try:
        for _ in range(200):
            if sock.exists() or task.done():
                break
            await asyncio.sleep(0.025)
        assert sock.exists(), f"Hypercorn did not listen on {sock}: {task}"
        yield str(sock)
    finally:
        stop.set()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
        shutil.rmtree(root, ignore_errors=True)


async def test_every_byte_shape_on_the_wire(app, server):
    """Percent-encoded bytes (``%0A``, ``%2F``, ``%FF``, long runs) as a client sends them to the daemon."""
    problems: list[str] = []
    sent = 0
    for template in WIRE_TEMPLATES:
        for shape in WIRE_SHAPES:
            target = template.replace("{s}", shape)
            for method in ("GET", "POST", "DELETE"):
                status, ctype, text = await _raw(server, method, target.encode("ascii"))
                sent += 1
                found = problem(app, method, target, status, ctype, text)
                if found:
                    problems.append(found)
    report(problems, sent)


async def test_raw_bytes_that_http_forbids_are_refused_before_any_api(server):
    """A request target with a raw space, control byte or non-ASCII byte is not HTTP: Hypercorn refuses
    it with a bare 400 before any API sees it, and keeps serving."""
    for target in (b"/api/models/\xc3\x9d/info", b"/api/models/\xff", b"/health\x7f"):
        status, _, _ = await _raw(server, "GET", target)
        assert status == 400, target
    status, _, text = await _raw(server, "GET", b"/health")
    assert status == 200, text
