"""Auth on the real daemon: 401 on every dialect without a key, the openai SDK with one,
llmctl keys/users over the Unix socket, tokens, WebSocket handshakes, a refused local user,
and the request limits (max_tokens, prompt length, streams per client)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import openai
import pytest
import websockets.sync.client as ws_client
from daemonproc import DaemonProcess, llmd_bin
from websockets.exceptions import InvalidStatus

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
MAX_STREAMS = 2
MAX_TOKENS = 64


def llmctl(d: DaemonProcess, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMCTL_")}
    return subprocess.run([llmd_bin("llmctl"), "--socket", str(d.socket_path), *args], capture_output=True,
                          text=True, input=input, timeout=120, env=env)


@pytest.fixture(scope="module")
def secured() -> Iterator[DaemonProcess]:
    """A daemon with auth on (its TCP listener is loopback, so auto would say off), small limits."""
    root = Path(tempfile.mkdtemp(prefix="llmd-auth-"))
    d = DaemonProcess(root, args=["--set", "auth.mode=on", "--set", f"limits.max_streams_per_client={MAX_STREAMS}",
                                  "--set", f"limits.max_tokens={MAX_TOKENS}", "--set", "engine.n_ctx=512",
                                  "--set", "auth.max_failure_delay_s=0.2"]).start()
    try:
        d.wait_loaded()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def keys(secured) -> dict[str, str]:
    """Keys made with llmctl over the Unix socket (trusted by peer credentials: we are root)."""
    out = {}
    for name, scope in (("sdk", "inference"), ("ops", "admin")):
        r = llmctl(secured, "keys", "create", "--name", name, "--scope", scope)
        assert r.returncode == 0, r.stderr
        out[name] = r.stdout.strip()
        assert out[name].startswith("llmd_") and "not shown again" in r.stderr
    return out


def test_print_config_and_health_say_why(secured):
    r = subprocess.run([llmd_bin("llmd"), "--print-config", "--config", str(secured.config_file),
                        "--set", "auth.mode=auto", "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "# auth in force: on (auth.mode is auto and the TCP listener 0.0.0.0 is not loopback)" in r.stdout
    health = httpx.get(f"{secured.url}/health", timeout=10).json()
    assert health["details"]["auth"]["enabled"] is True
    assert health["details"]["auth"]["reason"] == "auth.mode is on"


def test_curl_without_a_key_gets_401_on_each_dialect(secured):
    paths = [("GET", "/v1/models", "openai"), ("POST", "/v1/chat/completions", "openai"),
             ("POST", "/generate", "llama_local"), ("GET", "/model-info", "llama_local"),
             ("POST", "/api/v1/generate", "api_v1"), ("GET", "/api/v1/models", "api_v1"),
             ("GET", "/api/v1/llm/models/", "easyviz"), ("POST", "/api/v1/llm/generate/", "easyviz"),
             ("GET", "/llmd/v1/status", "admin"), ("GET", "/api/models", "inference_service"),
             ("POST", "/api/models/smollm2-135m-instruct/generate", "inference_service"),
             ("GET", "/api/downloads/list", "llm_manager"), ("GET", "/api/deployments/list", "llm_manager"),
             ("POST", "/api/chat/deploy_1", "llm_manager")]
    curl = shutil.which("curl")
    for method, path, dialect in paths:
        if curl:
            r = subprocess.run([curl, "-s", "-i", "-X", method, "-H", "Content-Type: application/json",
                                *(["-d", "{}"] if method == "POST" else []), secured.url + path],
                               capture_output=True, text=True, timeout=30)
            head, _, body = r.stdout.replace("\r\n", "\n").partition("\n\n")
            status = int(head.split()[1])
            assert "www-authenticate: bearer" in head.lower(), (path, head)
        else:
            resp = httpx.request(method, secured.url + path, json={} if method == "POST" else None, timeout=30)
            status, body = resp.status_code, resp.text
            assert resp.headers["WWW-Authenticate"] == "Bearer"
        assert status == 401, (path, status, body)
        data = json.loads(body)
        if dialect == "openai":
            assert data["error"]["code"] == "invalid_api_key" and data["error"]["type"] == "authentication_error"
        elif dialect in ("inference_service", "api_v1"):
            assert data["error"]["code"] == "AUTHENTICATION_FAILED", data
        elif dialect == "llm_manager":
            assert data["success"] is False and data["error"] == "AUTHENTICATION_FAILED", data
        elif dialect == "llama_local":
            assert set(data) == {"detail"}
        elif dialect == "easyviz":
            assert isinstance(data["error"], str)


def test_openai_sdk_with_a_key(secured, keys):
    client = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=keys["sdk"], max_retries=0, timeout=120)
    assert MODEL in [m.id for m in client.models.list().data]
    r = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Say hi."}],
                                       max_tokens=8, temperature=0)
    assert r.choices[0].message.content.strip()
    pieces = [c.choices[0].delta.content for c in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Count to three."}], max_tokens=8, stream=True)
        if c.choices and c.choices[0].delta.content]
    assert pieces
    bad = openai.OpenAI(base_url=f"{secured.url}/v1", api_key="llmd_not-a-real-key", max_retries=0, timeout=30)
    with pytest.raises(openai.AuthenticationError) as exc:
        bad.models.list()
    assert exc.value.code == "invalid_api_key"
    # an inference key does not reach admin routes
    r2 = httpx.get(f"{secured.url}/llmd/v1/status", headers={"Authorization": f"Bearer {keys['sdk']}"}, timeout=10)
    assert r2.status_code == 403
    r3 = httpx.get(f"{secured.url}/llmd/v1/status", headers={"X-API-Key": keys["ops"]}, timeout=10)
    assert r3.status_code == 200 and r3.json()["health"]["auth"]["enabled"] is True


def test_llmctl_keys_list_and_revoke(secured, keys):
    r = llmctl(secured, "keys", "create", "--name", "temp", "--scope", "inference", "--models", MODEL,
               "--expires", "30d")
    assert r.returncode == 0, r.stderr
    temp = r.stdout.strip()
    listed = json.loads(llmctl(secured, "keys", "list", "--json").stdout)["keys"]
    row = next(k for k in listed if k["name"] == "temp")
    assert row["models"] == [MODEL] and row["expires_at"] > time.time() + 29 * 86400
    assert all(temp not in json.dumps(k) for k in listed), "a listing never shows a key"
    h = {"Authorization": f"Bearer {temp}"}
    assert httpx.get(f"{secured.url}/v1/models", headers=h, timeout=10).status_code == 200
    r = llmctl(secured, "keys", "revoke", "temp")
    assert r.returncode == 0 and "revoked" in r.stdout, r.stderr
    assert httpx.get(f"{secured.url}/v1/models", headers=h, timeout=10).status_code == 401
    r = llmctl(secured, "keys", "revoke", "temp")
    assert r.returncode == 1 and "no API key" in r.stderr
    r = llmctl(secured, "keys", "create", "--name", "x", "--expires", "soon")
    assert r.returncode == 2 and "--expires" in r.stderr


def test_users_and_tokens(secured):
    r = llmctl(secured, "users", "add", "alice", "--scope", "inference", "--password-stdin", input="s3cret-pass\n")
    assert r.returncode == 0, r.stderr
    users = json.loads(llmctl(secured, "users", "list", "--json").stdout)["users"]
    assert [u["scope"] for u in users if u["username"] == "alice"] == ["inference"]
    assert "password" not in json.dumps(users)
    bad = httpx.post(f"{secured.url}/api/auth/token", json={"username": "alice", "password": "Tr0ub4dor-guess"},
                     timeout=30)
    assert bad.status_code == 401 and bad.json()["error"]["code"] == "AUTHENTICATION_FAILED"
    assert "login as 'alice' failed" in secured.log()
    assert "s3cret-pass" not in secured.log() and "Tr0ub4dor-guess" not in secured.log()  # no secret is logged
    ok = httpx.post(f"{secured.url}/api/auth/token", json={"username": "alice", "password": "s3cret-pass"}, timeout=30)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    h = {"Authorization": f"Bearer {body['access_token']}"}
    r = httpx.post(f"{secured.url}/api/v1/generate", json={"prompt": "Hello", "max_tokens": 4}, headers=h, timeout=60)
    assert r.status_code == 200, r.text
    assert httpx.get(f"{secured.url}/llmd/v1/keys", headers=h, timeout=10).status_code == 403
    assert llmctl(secured, "users", "remove", "alice").returncode == 0
    assert httpx.get(f"{secured.url}/v1/models", headers=h, timeout=10).status_code == 401  # the token died with her
    key_file = secured.state_dir / "jwt.key"
    assert key_file.stat().st_mode & 0o777 == 0o600


def test_websocket_handshake(secured, keys):
    url = secured.url.replace("http://", "ws://") + "/ws/chat/auth-e2e/"
    with pytest.raises(InvalidStatus) as exc:
        ws_client.connect(url, open_timeout=10)
    assert exc.value.response.status_code == 401
    with ws_client.connect(f"{url}?token={keys['sdk']}", open_timeout=10) as ws:
        ws.send(json.dumps({"type": "chat_message", "message": "Hi", "stream": False}))
        kinds = []
        while not kinds or kinds[-1] not in ("assistant_message", "assistant_done", "error"):
            kinds.append(json.loads(ws.recv(timeout=120))["type"])
        assert kinds[-1] == "assistant_message", kinds
    protocol = f"bearer.{keys['sdk']}"
    with ws_client.connect(url, subprotocols=[protocol], open_timeout=10) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == protocol  # echoed, or a browser would fail the handshake


def test_streams_per_client_are_limited(secured, keys):
    url = secured.url.replace("http://", "ws://") + "/ws/chat/limit-{}/"
    h = {"Authorization": f"Bearer {keys['sdk']}"}
    with contextlib.ExitStack() as stack:
        for i in range(MAX_STREAMS):
            stack.enter_context(ws_client.connect(url.format(i), additional_headers=h, open_timeout=10))
        with pytest.raises(InvalidStatus) as exc:
            ws_client.connect(url.format("x"), additional_headers=h, open_timeout=10)
        assert exc.value.response.status_code == 429
        r = httpx.post(f"{secured.url}/v1/chat/completions", headers=h, timeout=30, json={
            "model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True})
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_streams", r.text
        # another client (the admin key) is not affected
        other = {"Authorization": f"Bearer {keys['ops']}"}
        with ws_client.connect(url.format("y"), additional_headers=other, open_timeout=10):
            pass
    # the slots come back once the sockets are closed (the server sees the close shortly after)
    deadline = time.monotonic() + 30
    while True:
        try:
            with ws_client.connect(url.format("z"), additional_headers=h, open_timeout=10):
                break
        except InvalidStatus:
            assert time.monotonic() < deadline, "stream slots were not given back"
            time.sleep(0.1)


def test_request_limits(secured, keys):
    client = openai.OpenAI(base_url=f"{secured.url}/v1", api_key=keys["sdk"], max_retries=0, timeout=120)
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=MODEL, prompt="Hi", max_tokens=MAX_TOKENS + 1)
    assert exc.value.body["param"] == "max_tokens" and str(MAX_TOKENS) in exc.value.body["message"]
    long_prompt = "hello " * 600  # more tokens than the 512-token context leaves room for
    with pytest.raises(openai.BadRequestError) as exc:
        client.completions.create(model=MODEL, prompt=long_prompt, max_tokens=16)
    msg = exc.value.body["message"]
    assert "512" in msg and "16" in msg, msg
    r = httpx.post(f"{secured.url}/api/v1/generate", json={"prompt": "hello " * 450, "max_tokens": 60},
                   headers={"X-API-Key": keys["sdk"]}, timeout=60)
    assert r.status_code == 400, r.text
    assert "60" in r.json()["error"]["message"] and "512" in r.json()["error"]["message"]


def _as_nobody(cmd: list[str]) -> subprocess.CompletedProcess:
    def drop() -> None:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, preexec_fn=drop)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing uid needs root")
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl runs as the other user")
def test_unix_socket_refuses_other_users(secured):
    curl = shutil.which("curl")
    sock = secured.socket_path
    assert sock.stat().st_mode & 0o777 == 0o660
    cmd = [curl, "-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", str(sock), "http://llmd/llmd/v1/status"]
    mode = secured.root.stat().st_mode
    try:
        os.chmod(secured.root, 0o711)  # let the other user reach the socket file
        r = _as_nobody(cmd)
        assert r.stdout.strip().endswith("000"), r  # 0660: the file system says no
        # Even with the socket opened to everyone, the daemon checks the peer's credentials itself.
        os.chmod(sock, 0o666)
        r = _as_nobody(cmd)
        body, _, code = r.stdout.rpartition("\n")
        assert code == "403", r
        assert json.loads(body)["error"]["code"] == "AUTHORIZATION_FAILED"
        assert "refused a Unix-socket connection from uid 65534" in secured.log()
        # root (this test) still gets in
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert r.stdout.rpartition("\n")[2] == "200", r
    finally:
        os.chmod(sock, 0o660)
        os.chmod(secured.root, mode)
