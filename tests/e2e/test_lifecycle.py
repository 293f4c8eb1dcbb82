"""The daemon under systemd's eyes: sd_notify order, watchdog, SIGTERM, restart onto the same state."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from daemonproc import DaemonProcess, NotifyListener
from helpers import write_tiny_gguf

pytestmark = pytest.mark.e2e


def test_sd_notify_ready_watchdog_stopping(short_tmp):
    d = DaemonProcess(short_tmp)
    listener = NotifyListener(short_tmp / "notify.sock", d.port)
    d.extra_env = {"NOTIFY_SOCKET": str(short_tmp / "notify.sock"), "WATCHDOG_USEC": "400000"}
    try:
        d.start()
        listener.wait_for("READY=1")
        assert listener.tcp_accepting_at_ready is True
        listener.wait_for("WATCHDOG=1", timeout=10)
        ready_at = listener.messages.index("READY=1")
        assert listener.messages.index("WATCHDOG=1") > ready_at
        d.wait_loaded()
        assert any(m.startswith("STATUS=") and "serving" in m for m in listener.messages)
        assert d.stop() == 0
        listener.wait_for("STOPPING=1", timeout=5)
        assert listener.messages.index("STOPPING=1") > ready_at
    finally:
        d.stop()
        listener.close()


def test_sigterm_ends_open_streams_with_a_final_event(short_tmp):
    d = DaemonProcess(short_tmp).start().wait_loaded()
    try:
        body = {"model": "default", "stream": True, "max_tokens": 3000, "ignore_eos": True,
                "messages": [{"role": "user", "content": "Tell me an endless story."}]}
        lines = []
        with httpx.stream("POST", f"{d.url}/v1/chat/completions", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line:
                    lines.append(line)
                if len(lines) == 5:
                    d.proc.send_signal(signal.SIGTERM)
        assert lines[-1] == "data: [DONE]"
        final = json.loads(lines[-2][6:])
        assert final["error"]["code"] == "shutting_down"
        assert d.proc.wait(30) == 0
        assert not d.socket_path.exists(), "the socket file is removed on a clean stop"
    finally:
        d.stop()


def test_restart_finds_its_registry(short_tmp):
    model_file = write_tiny_gguf(short_tmp / "tiny.Q8_0.gguf", file_type=7)
    d = DaemonProcess(short_tmp, args=["--no-load"]).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{d.url}/health", timeout=1)
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, d.log()
                time.sleep(0.1)
        r = httpx.post(f"{d.url}/llmd/v1/models", json={"path": str(model_file), "name": "tiny-one"})
        assert r.status_code == 201, r.text
        assert r.json()["model"]["quantization"] == "Q8_0"
    finally:
        assert d.stop() == 0
    again = DaemonProcess(short_tmp, port=None).start().wait_loaded()
    try:
        names = {m["name"]: m for m in httpx.get(f"{again.url}/llmd/v1/models").json()["models"]}
        assert "tiny-one" in names and names["tiny-one"]["path"] == str(model_file)
        assert "smollm2-135m-instruct" in names and "default" in names["smollm2-135m-instruct"]["aliases"]
    finally:
        again.stop()


def test_bad_config_stops_start_with_one_line(short_tmp):
    cfg = short_tmp / "bad.toml"
    cfg.write_text("[server]\nprot = 8000\n")
    p = subprocess.run([sys.executable, "-m", "llmd", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "server.prot" in lines[0] and str(cfg) in lines[0]


def test_port_in_use_is_one_clear_line(short_tmp):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        d = DaemonProcess(short_tmp, port=port, args=["--no-load"]).start()
        assert d.proc.wait(60) == 1
        assert "already in use" in d.log()
