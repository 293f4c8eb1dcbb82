"""The auth matrix: every route of the URL map x every kind of credential, with auth on.

The app is served by a real Hypercorn on 127.0.0.1 (a FakeEngine core), so
HTTP routes answer with real status lines (streams are not read past their
headers) and WebSocket routes go through a real handshake. Routes are read
from the app itself, so a route added later is walked as soon as it exists;
one declared without a policy stops ``create_app`` (tested below). Only auth
outcomes are asserted: 401/403 where the policy says so, neither elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

import httpx
import pytest
import websockets
from hypercorn.asyncio import serve
from hypercorn.config import Config as HypercornConfig

from llmd.core.auth import POLICIES
from llmd.http import create_app
from llmd.http.routing import Dialect

LAN = {"client": ("192.0.2.10", 40000)}  # an address that is not loopback
UNREACHABLE = "http://127.0.0.1:9"  # hub and registry calls fail at once, and stay on this machine

# credential name -> (what it is, expected class): "anon" fails authentication, "inference" and "admin" pass it
CREDENTIALS = ("none", "bad key", "bad token", "expired token", "inference key", "model-limited key",
               "admin key", "admin token")


def expected(policy: str, cred: str) -> int | None:
    """401, 403, or None (neither) for ``cred`` on a route whose policy is ``policy``."""
    if policy == "public":
        return None
    if cred in ("none", "bad key", "bad token", "expired token"):
        return 401
    if policy == "inference" or cred in ("admin key", "admin token"):
        return None
    return 403


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def concrete(path: str) -> str:
    """A real URL for a route: each path parameter gets a plausible value."""
    def value(m: re.Match) -> str:
        conv, name = m.group(1) or "", m.group(2)
        if conv == "int":
            return "1"
        if conv == "path" and "hub" in name:
            return "org/model"
        return "tiny"
    return re.sub(r"<(?:(\w+):)?(\w+)>", value, path)


async def make_core(core_factory, **flags: Any):
    base = {"auth.mode": "on", "auth.max_failure_delay_s": 0.0, "downloads.hf_endpoint": UNREACHABLE,
            "downloads.ollama_registry": UNREACHABLE, "hub.timeout_s": 2.0}
    base.update(flags)
    return await core_factory(**base)


async def credentials(core) -> dict[str, dict[str, str]]:
    """Headers for each credential kind."""
    auth = core.auth
    _, inference = await auth.create_key("matrix-inference", "inference")
    _, limited = await auth.create_key("matrix-limited", "inference", models=["tiny"])
    _, admin = await auth.create_key("matrix-admin", "admin")
    await auth.add_user("matrix-user", "matrix-password", "admin")
    expired = await auth.issue_token("matrix-user", "admin", -120)
    token = await auth.issue_token("matrix-user", "admin", 600)
    bearer = lambda v: {"Authorization": f"Bearer {v}"}  # noqa: E731
    return {
        "none": {},
        "bad key": {"X-API-Key": "llmd_" + "x" * 43},
        "bad token": bearer("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bm90LWEtc2lnbmF0dXJl"),
        "expired token": bearer(expired),
        "inference key": bearer(inference),
        "model-limited key": {"X-API-Key": limited},
        "admin key": bearer(admin),
        "admin token": bearer(token),
    }


class Served:
    """The app on a real Hypercorn at 127.0.0.1:<free port>, stopped by ``stop``."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = asyncio.Event()
        cfg = HypercornConfig()
        cfg.bind = [f"127.0.0.1:{self.port}"]
        cfg.accesslog = None
        cfg.graceful_timeout = 1
        self.task = asyncio.ensure_future(serve(app, cfg, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]

    async def ready(self) -> Served:
        async with httpx.AsyncClient() as c:
            for _ in range(200):
                try:
                    await c.get(self.url + "/health")
                    return self
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("hypercorn did not start")

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, 15)


def _auth_code(body: Any) -> str:
    """The error code of any dialect's envelope, or its text."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            return str(err.get("code"))
        if isinstance(err, str):
            return err if body.get("success") is not False else err
        return str(body.get("detail"))
    return str(body)


def check_refusal(where: str, dialect: str, status: int, headers: Any, text: str, problems: list[str]) -> None:
    """A 401/403 is in the dialect's envelope, with WWW-Authenticate on 401 and no secret in it."""
    try:
        body = json.loads(text)
    except ValueError:
        problems.append(f"{where}: refusal is not JSON: {text[:200]}")
        return
    if status == 401 and headers.get("www-authenticate", "").split(" ")[0] != "Bearer":
        problems.append(f"{where}: 401 without WWW-Authenticate: Bearer")
    code = _auth_code(body)
    want = {("openai", 401): "invalid_api_key", ("inference_service", 401): "AUTHENTICATION_FAILED",
            ("inference_service", 403): "AUTHORIZATION_FAILED", ("llm_manager", 401): "AUTHENTICATION_FAILED",
            ("llm_manager", 403): "AUTHORIZATION_FAILED", ("api_v1", 401): "AUTHENTICATION_FAILED",
            ("api_v1", 403): "AUTHORIZATION_FAILED"}.get((dialect, status))
    if want is not None and code != want:
        problems.append(f"{where}: code {code!r}, expected {want!r}: {text[:200]}")
    if dialect == "anthropic":  # no code in Anthropic's envelope: its error type says it
        kind = {401: "authentication_error", 403: "permission_error"}.get(status)
        if not isinstance(body, dict) or body.get("type") != "error" or body["error"].get("type") != kind:
            problems.append(f"{where}: not Anthropic's {kind}: {text[:200]}")
    if "llmd_" in text:
        problems.append(f"{where}: the refusal echoes a key")


async def http_status(client: httpx.AsyncClient, method: str, url: str, headers: dict[str, str],
                      data: bytes | None) -> tuple[int, Any, str]:
    """Status, headers and (for refusals) the body; a stream is left after its headers."""
    h = dict(headers)
    if data is not None:
        h["Content-Type"] = "application/json"
    async with client.stream(method, url, headers=h, content=data) as r:
        text = (await r.aread()).decode(errors="replace") if r.status_code in (401, 403) else ""
        return r.status_code, r.headers, text


async def ws_status(url: str, headers: dict[str, str], subprotocols: list[str] | None = None) -> tuple[int, Any, str]:
    """101 once the handshake is accepted; else the HTTP status that refused it."""
    try:
        async with websockets.connect(url, additional_headers=headers, open_timeout=10,
                                      subprotocols=subprotocols) as ws:  # type: ignore[arg-type]
            await ws.close()
            return 101, {}, ""
    except websockets.exceptions.InvalidStatus as exc:
        resp = exc.response
        return resp.status_code, resp.headers, resp.body.decode(errors="replace") if resp.body else ""


async def test_every_route_has_a_policy(fake_core):
    app = create_app(fake_core)
    for d in app.extensions["llmd_dialects"]:
        for r in d.routes:
            assert r.auth in POLICIES, f"{r.path} ({d.name}) has no auth policy"


async def test_a_route_without_a_policy_cannot_be_declared():
    d = Dialect("x", "X", lambda err, path: ({}, err.status), {})
    with pytest.raises(TypeError, match="auth"):
        @d.route("/unguarded", summary="a route someone forgot to guard")  # type: ignore[call-arg]
        async def unguarded() -> Any:
            return "no"
    with pytest.raises(ValueError, match="/misguarded"):
        @d.route("/misguarded", summary="a route with a policy that does not exist", auth="nobody")
        async def misguarded() -> Any:
            return "no"
    assert d.routes == []


async def test_auth_matrix(core_factory):
    core = await make_core(core_factory)
    creds = await credentials(core)
    app = create_app(core)
    dialects: list[Dialect] = app.extensions["llmd_dialects"]
    served = await Served(app).ready()
    problems: list[str] = []
    cells: list[tuple[Dialect, Any, str, str]] = []  # (dialect, route, method or "WS", credential)
    for d in dialects:
        for r in d.routes:
            for cred in CREDENTIALS:
                for method in (("WS",) if r.websocket else r.methods):
                    cells.append((d, r, method, cred))
    routes = sum(len(d.routes) for d in dialects)
    gate = asyncio.Semaphore(16)  # refusals are instant; handlers that pass (hub calls, streams) run side by side

    async def one(client: httpx.AsyncClient, d: Dialect, r: Any, method: str, cred: str) -> None:
        # Metrics are public from loopback (auth.public_metrics = loopback), and this client is loopback.
        policy, url, want = r.auth, concrete(r.path), expected(r.auth, cred)
        async with gate:
            if method == "WS":
                status, headers, text = await ws_status(served.url.replace("http", "ws") + url, creds[cred])
            else:
                data = b"{}" if method in ("POST", "PUT", "PATCH") else None
                status, headers, text = await http_status(client, method, url, creds[cred], data)
        where = f"{method} {r.path} [{cred}] -> {status}"
        if want is None and (status in (401, 403) or (method == "WS" and status != 101)):
            problems.append(f"{where}: policy {policy} should let {cred} in: {text[:200]}")
        elif want is not None and status != want:
            problems.append(f"{where}: policy {policy} wants {want}")
        elif want is not None and method == "HEAD":  # a HEAD answer has no body to hold an envelope
            if status == 401 and headers.get("www-authenticate", "").split(" ")[0] != "Bearer":
                problems.append(f"{where}: 401 without WWW-Authenticate: Bearer")
        elif want is not None:
            check_refusal(where, d.name, status, headers, text, problems)

    try:
        async with httpx.AsyncClient(base_url=served.url, timeout=120) as client:
            await asyncio.gather(*(one(client, *cell) for cell in cells))
            # a path nobody declares still wants a credential, and says 404 to one that has it
            status, _, _ = await http_status(client, "GET", "/no-such-route", {}, None)
            if status != 401:
                problems.append(f"GET /no-such-route [none] -> {status}: expected 401")
            status, _, _ = await http_status(client, "GET", "/no-such-route", creds["inference key"], None)
            if status != 404:
                problems.append(f"GET /no-such-route [inference key] -> {status}: expected 404")
    finally:
        await served.stop()
    print(f"auth matrix: {routes} routes x {len(CREDENTIALS)} credentials = {len(cells)} cells")
    assert routes >= 20 and len(cells) >= routes * len(CREDENTIALS)
    assert not problems, f"{len(problems)} auth matrix violations:\n" + "\n".join(problems)


async def test_websocket_credentials_without_headers(core_factory):
    """Browsers cannot set headers: a token query parameter or a bearer.<token> subprotocol does it."""
    core = await make_core(core_factory)
    creds = await credentials(core)
    key = creds["inference key"]["Authorization"].split(" ", 1)[1]
    app = create_app(core)
    served = await Served(app).ready()
    base = served.url.replace("http", "ws") + "/ws/chat/matrix/"
    try:
        assert (await ws_status(base, {}))[0] == 401
        assert (await ws_status(base + "?token=llmd_wrong", {}))[0] == 401
        assert (await ws_status(base + f"?token={key}", {}))[0] == 101
        async with websockets.connect(base, subprotocols=[f"bearer.{key}"]) as ws:  # type: ignore[list-item]
            assert ws.subprotocol == f"bearer.{key}"  # echoed, or a browser fails the handshake
            await ws.send(json.dumps({"type": "model_switch", "model": "tiny"}))
            assert json.loads(await ws.recv())["type"] == "model_switched"
    finally:
        await served.stop()


async def test_model_limited_key_gets_403_for_other_models(core_factory, tiny_gguf):
    core = await make_core(core_factory)
    await core.registry.add_file(tiny_gguf, "second")
    _, only_second = await core.auth.create_key("only-second", "inference", models=["second"])
    app = create_app(core)
    client = app.test_client()
    h = {"Authorization": f"Bearer {only_second}"}
    chat = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    cases = [
        ("/v1/chat/completions", chat, "openai"),
        ("/v1/completions", {"model": "tiny", "prompt": "hi", "max_tokens": 2}, "openai"),
        ("/v1/embeddings", {"model": "tiny", "input": "hi"}, "openai"),
        ("/api/v1/generate", {"model": "tiny", "prompt": "hi", "max_tokens": 2}, "api_v1"),
        ("/api/v1/generate/stream", {"model": "tiny", "prompt": "hi", "max_tokens": 2}, "api_v1"),
        ("/api/v1/llm/generate/", {"prompt": "hi", "model": "tiny"}, "easyviz"),
        ("/generate", {"prompt": "hi", "max_tokens": 2, "stream": False}, "llama_local"),  # the default model: tiny
        ("/api/models/tiny/generate", {"prompt": "hi", "max_tokens": 2}, "inference_service"),
        # seed 004 names the deployment, not the model; whatever "model" the body says, tiny would answer
        (f"/api/chat/{core.fleet.get('tiny').id}", {"model": "second", "messages": chat["messages"]}, "llm_manager"),
        (f"/api/completions/{core.fleet.get('tiny').id}", {"model": "second", "prompt": "hi"}, "llm_manager"),
        ("/v1/messages", {**chat, "max_tokens": 2}, "anthropic"),
        ("/v1/messages/count_tokens", {"model": "tiny", "messages": chat["messages"]}, "anthropic"),
    ]
    for path, body, dialect in cases:
        r = await client.post(path, json=body, headers=h, scope_base=LAN)
        text = await r.get_data(as_text=True)
        assert r.status_code == 403, (path, r.status_code, text)
        assert "tiny" in text, (path, text)
        if dialect in ("openai", "anthropic"):
            assert json.loads(text)["error"]["type"] == "permission_error"
    # the model it is limited to works, by name
    r = await client.post("/v1/chat/completions", json={**chat, "model": "second"}, headers=h, scope_base=LAN)
    assert r.status_code in (200, 503), await r.get_data(as_text=True)  # 503: "second" is not loaded
    # in a WebSocket chat, the refusal is an error message
    async with client.websocket("/ws/chat/limited/", headers=h, scope_base=LAN) as ws:
        await ws.send(json.dumps({"type": "chat_message", "message": "hi", "model": "tiny"}))
        msg = json.loads(await ws.receive())
        assert msg["type"] == "error" and "tiny" in msg["error"], msg


async def test_configurable_public_routes(core_factory):
    core = await make_core(core_factory, **{"auth.public_docs": False, "auth.public_metrics": "loopback"})
    client = create_app(core).test_client()
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert (await client.get(path, scope_base=LAN)).status_code == 401, path
    local = {"client": ("127.0.0.1", 50000)}
    assert (await client.get("/metrics", scope_base=local)).status_code == 200
    assert (await client.get("/metrics", scope_base=LAN)).status_code == 401
    for path in ("/health", "/api/v1/health", "/api/v1/llm/health/"):
        assert (await client.get(path, scope_base=LAN)).status_code == 200, path

    core2 = await make_core(core_factory, **{"auth.public_metrics": "on"})
    client2 = create_app(core2).test_client()
    assert (await client2.get("/metrics", scope_base=LAN)).status_code == 200
    assert (await client2.get("/openapi.json", scope_base=LAN)).status_code == 200


async def test_auth_off_and_auto(core_factory):
    core = await core_factory(**{"auth.mode": "auto"})  # server.host is 127.0.0.1
    assert not core.auth.enabled and "loopback" in core.auth.reason
    client = create_app(core).test_client()
    assert (await client.get("/llmd/v1/status", scope_base=LAN)).status_code == 200
    health = await (await client.get("/health")).get_json()
    assert health["details"]["auth"]["enabled"] is False
    core2 = await core_factory(**{"auth.mode": "auto", "server.host": "0.0.0.0"})
    assert core2.auth.enabled and "0.0.0.0" in core2.auth.reason


async def test_unix_socket_peers_are_admin_only_once_verified(core_factory):
    """A request with no client address is the Unix socket: admin only when the daemon checks peers at accept."""
    core = await make_core(core_factory)
    client = create_app(core).test_client()
    assert (await client.get("/llmd/v1/status")).status_code == 401
    core.auth.unix_peers_verified = True
    assert (await client.get("/llmd/v1/status")).status_code == 200
    assert (await client.get("/llmd/v1/status", scope_base=LAN)).status_code == 401


async def test_rate_limit_keys_on_the_verified_credential(core_factory):
    """With auth on, each API key has its own bucket wherever it comes from; made-up tokens share the address's."""
    core = await make_core(core_factory, **{"ratelimit.enabled": "on", "ratelimit.burst": 2,
                                            "ratelimit.requests_per_minute": 1})
    _, key_a = await core.auth.create_key("bucket-a", "inference")
    _, key_b = await core.auth.create_key("bucket-b", "inference")
    client = create_app(core).test_client()
    other = {"client": ("192.0.2.11", 40000)}

    async def remaining(headers: dict[str, str], where: dict[str, Any]) -> tuple[int, str | None]:
        r = await client.get("/v1/models", headers=headers, scope_base=where)
        return r.status_code, r.headers.get("X-RateLimit-Remaining")

    assert await remaining({"Authorization": f"Bearer {key_a}"}, LAN) == (200, "1")
    assert await remaining({"X-API-Key": key_a}, other) == (200, "0")  # same key from elsewhere: same bucket
    assert (await remaining({"Authorization": f"Bearer {key_a}"}, LAN))[0] == 429
    assert await remaining({"Authorization": f"Bearer {key_b}"}, LAN) == (200, "1")  # same address, own bucket
    # invented credentials never reach the limiter (no fresh bucket per made-up token): auth refuses them
    # first, slowed per source (tests/unit/test_auth.py)
    assert [await remaining({"Authorization": f"Bearer invented-{i}"}, other) for i in range(3)] == [(401, None)] * 3
    assert core.auth.failures.count("192.0.2.11") == 3
