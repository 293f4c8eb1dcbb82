"""The LLM Inference Service API's operations on the real daemon and model, with auth on: the document's cURL
examples and its JavaScript WebSocket example as written, an alert rule that fires once and resolves through a
local webhook receiver, a local SMTP server, the journal and a /ws/monitor subscriber, SIGHUP, and a restart that
keeps rules, history, config overrides and the metrics history."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiosmtpd.controller import Controller
from daemonproc import DaemonProcess, NotifyListener, free_port, llmd_bin

pytestmark = pytest.mark.e2e

JS = Path(__file__).parent / "js"
SECRET = "hook-secret"

# -- verbatim from shared/seeds/002 ("cURL示例"); run with the placeholders filled in (see curl()) --
CURL_CREATE = '''curl -X POST http://your-server:8000/api/models \\
  -H "Authorization: Bearer YOUR_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "name": "my-model",
    "framework": "llama.cpp",
    "config": {
      "model_path": "/models/model.bin",
      "n_ctx": 2048
    }
  }\''''
CURL_START = '''curl -X POST http://your-server:8000/api/models/model-123/start \\
  -H "Authorization: Bearer YOUR_API_TOKEN"'''
CURL_GENERATE = '''curl -X POST http://your-server:8000/api/models/model-123/generate \\
  -H "Authorization: Bearer YOUR_API_TOKEN" \\
  -H "Content-Type: application/json" \\
  -d '{
    "prompt": "Hello, world!",
    "max_tokens": 100,
    "temperature": 0.7
  }\''''


class Hooks:
    """A webhook receiver on 127.0.0.1: every POST's headers and body."""

    def __init__(self) -> None:
        self.posts: list[tuple[dict[str, str], bytes]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hooks.posts.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        """The JSON bodies, each checked against its HMAC signature first."""
        out = []
        for headers, body in self.posts:
            want = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            assert headers.get("X-Llmd-Signature") == want, headers
            out.append(json.loads(body))
        return out


class Mailbox:
    """An SMTP server on 127.0.0.1 (aiosmtpd): the messages it accepted."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        self.messages.append(envelope.content.decode("utf-8", "replace"))
        return "250 OK"


def poll(check, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s")


def curl(command: str, d: DaemonProcess, token: str, model_id: str = "model-123", model_path: str = "") -> dict:
    """Run a cURL example of the document as written, its placeholders filled in: the server, the token, the
    model's id, and (for the create example, whose /models/model.bin is the reader's file) a real GGUF."""
    filled = (command.replace("http://your-server:8000", d.url).replace("YOUR_API_TOKEN", token)
              .replace("model-123", model_id).replace("/models/model.bin", model_path or "/models/model.bin"))
    p = subprocess.run(["bash", "-c", filled + " -sS -w '\\n%{http_code}'"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    body, _, status = p.stdout.rpartition("\n")
    return {"status": int(status), "body": json.loads(body) if body.strip() else None}


def api(d: DaemonProcess, token: str, method: str, path: str, **kw) -> httpx.Response:
    return httpx.request(method, f"{d.url}{path}", headers={"Authorization": f"Bearer {token}"}, timeout=60, **kw)


def test_operations_end_to_end(short_tmp):
    node = shutil.which("node")
    hooks, mailbox = Hooks(), Mailbox()
    smtp = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    config = short_tmp / "llmd.toml"
    config.write_text(f"""
[auth]
mode = "on"

[monitor]
interval_s = 0.5

[alerts]
webhook_url = "{hooks.url}"
webhook_secret = "{SECRET}"
webhook_retries = 0
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
smtp_starttls = false
email_to = "admin@example.test"
threshold_channels = ""
""")
    notify = NotifyListener(short_tmp / "notify.sock", 0)
    d = DaemonProcess(short_tmp, env={"NOTIFY_SOCKET": str(short_tmp / "notify.sock")}).start()
    js = None
    try:
        d.wait_loaded()
        notify.wait_for("READY=1")
        # An admin user over the Unix socket, then a token from /api/auth/token, as the document's clients get one.
        users = subprocess.run([llmd_bin("llmctl"), "--socket", str(d.socket_path), "users", "add", "ops",
                                "--scope", "admin", "--password-stdin"], input="ops-password-1\n",
                               capture_output=True, text=True, timeout=60)
        assert users.returncode == 0, users.stderr
        token = httpx.post(f"{d.url}/api/auth/token", json={"username": "ops", "password": "ops-password-1"},
                           timeout=30).json()["access_token"]
        assert httpx.get(f"{d.url}/api/system/status", timeout=10).status_code == 401

        # -- the document's cURL examples ---------------------------------------------------------------
        bundled = api(d, token, "GET", "/api/models").json()["items"][0]["config"]["model_path"]
        created = curl(CURL_CREATE, d, token, model_path=bundled)
        assert created["status"] == 201, created
        model_id = created["body"]["id"]
        started = curl(CURL_START, d, token, model_id)
        assert started["status"] == 202 and started["body"]["task_id"], started
        poll(lambda: api(d, token, "GET", f"/api/tasks/{started['body']['task_id']}").json()["status"] == "completed",
             what="the start task")
        generated = curl(CURL_GENERATE, d, token, model_id)
        assert generated["status"] == 200, generated
        assert generated["body"]["choices"][0]["text"] and generated["body"]["usage"]["completion_tokens"] > 0

        status = api(d, token, "GET", "/api/system/status").json()
        assert status["models"]["running"] == 2 and status["status"] in ("healthy", "degraded")
        gpu = api(d, token, "GET", "/api/system/gpu").json()
        assert gpu["gpus"] or gpu["reason"]

        # -- the document's JavaScript WebSocket example, subscribed before the rule exists -------------------
        lines: queue.Queue[str] = queue.Queue()
        if node is not None:
            js = subprocess.Popen([node, "--experimental-websocket", str(JS / "monitor_ws.mjs")], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  env={**os.environ, "LLMD_URL": d.url, "LLMD_TOKEN": token,
                                       "LLMD_ALERT_NAME": "CPU busy"})
            threading.Thread(target=lambda: [lines.put(x.rstrip("\n")) for x in js.stdout], daemon=True).start()
            seen: list[str] = []
            poll(lambda: (seen.extend(_drain(lines)) or "SUBSCRIBED" in seen), what="the subscription")

        # -- a rule that must fire: once, to every channel; resolved when changed ------------------------------
        rule = api(d, token, "POST", "/api/config/alerts", json={
            "name": "CPU busy", "condition": "cpu_percent >= 0 for 0s", "severity": "warning", "enabled": True,
            "notification_channels": ["email", "webhook", "journal"]})
        assert rule.status_code == 201, rule.text
        rid = rule.json()["id"]
        poll(lambda: len(hooks.posts) >= 1 and len(mailbox.messages) >= 1, what="the firing notifications")
        first = hooks.events()[0]
        assert first["alert_id"] == rid and first["state"] == "firing" and first["severity"] == "warning"
        assert "Subject: [llmd] WARNING CPU busy: firing" in mailbox.messages[0]
        time.sleep(2.5)  # five more samples: the rule stays firing, and nobody is told twice
        assert len(hooks.posts) == 1 and len(mailbox.messages) == 1
        assert api(d, token, "GET", f"/api/config/alerts/{rid}").json()["state"] == "firing"
        text = httpx.get(f"{d.url}/metrics", timeout=10).text
        # what operators compare against llama-server's /metrics, from the generation above
        figures = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line and not line.startswith("#")}
        assert figures['llmd_prompt_seconds_total{model="my-model"}'] > 0
        assert figures['llmd_generation_seconds_total{model="my-model"}'] > 0
        assert 0 < figures['llmd_kv_cache_usage_ratio{model="my-model"}'] <= 1
        assert figures['llmd_kv_cache_tokens{model="my-model"}'] >= generated["body"]["usage"]["total_tokens"] - 1
        assert figures['llmd_requests_processing{model="my-model"}'] == 0
        assert 0 <= figures["llmd_system_cpu_percent"] <= 100 and figures["llmd_monitor_samples_total"] >= 1
        assert f'llmd_alerts_firing{{alert_id="{rid}",rule_name="CPU busy",severity="warning"}} 1.0' in text
        assert 'llmd_alert_notifications_total{channel="webhook",outcome="sent"} 1.0' in text

        changed = api(d, token, "PUT", f"/api/config/alerts/{rid}", json={"condition": "cpu_percent > 1000"})
        assert changed.status_code == 200, changed.text
        poll(lambda: len(hooks.posts) >= 2 and len(mailbox.messages) >= 2, what="the resolved notifications")
        assert [e["state"] for e in hooks.events()] == ["firing", "resolved"]
        assert "CPU busy: resolved" in mailbox.messages[1]
        assert "CPU busy" in d.log() and rid in d.log()  # the journal channel: the daemon's log
        # how each channel went is recorded once all of the event's sends have ended
        history = poll(lambda: (h := api(d, token, "GET", f"/api/config/alerts/history?alert_id={rid}").json())
                       ["items"][0]["notified"] and h, what="the recorded notifications")
        assert [e["state"] for e in history["items"]] == ["resolved", "firing"]
        assert history["items"][1]["notified"] == {"email": "ok", "webhook": "ok", "journal": "ok"}

        if js is not None:
            assert js.wait(60) == 0
            out = _drain(lines)
            result = json.loads(next(x for x in out if x.startswith("RESULT "))[7:])
            # (a built-in rule, such as response_time > 2 after the slow first generation, may fire too)
            ours = [a for a in result["alerts"] if a["alert_id"] == rid]
            assert [a["state"] for a in ours] == ["firing", "resolved"]
            assert all(a["timestamp"].endswith("Z") and a["message"] for a in ours)
            names = {m["model_name"] for m in result["model_status"]}
            assert {"smollm2-135m-instruct", "my-model"} <= names  # the state now, at subscription
            assert {m["status"] for m in result["model_status"]} == {"running"}
            assert result["replies"][0] == {"type": "subscribed",
                                           "events": ["gpu_metrics", "model_status", "system_alerts"]}

        # -- runtime config: a PUT, then SIGHUP with an edited file ---------------------------------------------
        put = api(d, token, "PUT", "/api/config", json={"max_concurrent_models": 3,
                                                         "alert_thresholds": {"error_rate_high": 0.5}})
        assert put.status_code == 200, put.text
        assert put.json()["sources"]["max_concurrent_models"].startswith("override")
        config.write_text(config.read_text().replace("[monitor]\n", "[monitor]\nkeep_raw_h = 12.0\n")
                          + "\n[engine]\nn_ctx = 2048\n")
        notify.messages.clear()
        d.proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY=1", 30)
        assert notify.messages.index("RELOADING=1") < notify.messages.index("READY=1")
        got = api(d, token, "GET", "/api/config").json()
        assert got["settings"]["monitor.keep_raw_h"]["value"] == 12.0
        assert got["settings"]["monitor.keep_raw_h"]["source"].startswith("file ")
        assert got["restart_required"] == {"engine.n_ctx": 2048}  # read at start only
        assert got["max_concurrent_models"] == 3  # the stored override still wins over the file

        before = api(d, token, "GET", "/api/monitoring/metrics",
                     params={"interval": "1m", "metric_type": "cpu"}).json()["metrics"]
        assert before
    finally:
        if js is not None and js.poll() is None:
            js.kill()
        d.stop()
    # -- a restart keeps rules, history, config overrides and the metrics history --------------------------
    printed = subprocess.run([llmd_bin("llmd"), "--print-config", "--config", str(config), "--state-dir",
                              str(d.state_dir)], capture_output=True, text=True, timeout=60)
    assert "max_running = 3  # override (PUT /api/config)" in printed.stdout, printed.stdout
    d = DaemonProcess(short_tmp, port=d.port).start()
    try:
        d.wait_loaded()
        token = httpx.post(f"{d.url}/api/auth/token", json={"username": "ops", "password": "ops-password-1"},
                           timeout=30).json()["access_token"]
        assert api(d, token, "GET", f"/api/config/alerts/{rid}").json()["condition"] == "cpu_percent > 1000"
        assert api(d, token, "GET", "/api/config/alerts/history").json()["total"] == 2
        got = api(d, token, "GET", "/api/config").json()
        assert got["max_concurrent_models"] == 3 and got["alert_thresholds"]["error_rate_high"] == 0.5
        assert got["settings"]["engine.n_ctx"]["value"] == 2048  # the file's change, in force after the restart
        after = api(d, token, "GET", "/api/monitoring/metrics",
                    params={"interval": "1m", "metric_type": "cpu"}).json()["metrics"]
        assert {b["timestamp"] for b in before} <= {a["timestamp"] for a in after}
        time.sleep(1.5)
        assert len(hooks.posts) == 2  # nothing re-notified after the restart
    finally:
        d.stop()
        notify.close()
        smtp.stop()
        hooks.server.shutdown()


def _drain(lines: queue.Queue[str]) -> list[str]:
    out = []
    while True:
        try:
            out.append(lines.get_nowait())
        except queue.Empty:
            return out
