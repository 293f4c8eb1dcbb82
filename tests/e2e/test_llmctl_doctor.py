"""llmctl doctor against the real daemon over the Unix socket, and against a socket where nothing listens."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from daemonproc import DaemonProcess, llmd_bin

pytestmark = pytest.mark.e2e

CHECKS = ["service", "socket", "tcp", "auth", "disk", "memory", "models", "gpu", "hub", "clock"]
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, so the hub is unreachable at once


@pytest.fixture(scope="module")
def offline_daemon() -> Iterator[DaemonProcess]:
    """A daemon whose hub is a closed port, set here as a flag (the way an admin would) so that the check is
    seen reading the daemon's setting; no test may reach the internet."""
    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    d = DaemonProcess(root, args=["--set", f"downloads.hf_endpoint={CLOSED}"]).start()
    try:
        d.wait_loaded()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def llmctl(sock, *args, timeout=120):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    # Another closed port: the doctor must take the endpoint from the daemon's config, not from llmctl's environment.
    env["HF_ENDPOINT"] = "http://127.0.0.1:7"
    return subprocess.run([llmd_bin("llmctl"), "--socket", str(sock), *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_doctor_json_on_a_running_daemon(offline_daemon):
    p = llmctl(offline_daemon.socket_path, "doctor", "--json")
    assert p.returncode == 0, p.stdout + p.stderr
    data = json.loads(p.stdout)
    rows = {c["name"]: c for c in data["checks"]}
    assert [c["name"] for c in data["checks"]] == CHECKS
    assert data["ok"] is True
    assert not [c for c in data["checks"] if c["status"] == "fail"]
    for c in data["checks"]:
        assert set(c) == {"name", "status", "detail", "fix"} and c["status"] in ("ok", "warn") and c["detail"]
        if c["status"] == "warn":
            assert c["fix"], c
    assert rows["socket"]["status"] == "ok" and str(offline_daemon.socket_path) in rows["socket"]["detail"]
    # The fixture listens on 127.0.0.1: fine, with a note on how to open it to the LAN.
    assert rows["tcp"]["status"] == "ok" and "loopback only" in rows["tcp"]["detail"]
    assert 'host = "0.0.0.0"' in rows["tcp"]["fix"]
    assert rows["auth"]["status"] == "ok" and rows["auth"]["detail"].startswith("off")
    assert rows["models"]["status"] == "ok" and "smollm2-135m-instruct" in rows["models"]["detail"]
    # ok here, but a warning on a crowded test box: only the figures are asserted
    assert "free under" in rows["disk"]["detail"] and "% used" in rows["disk"]["detail"]
    assert "1 deployment needs" in rows["memory"]["detail"] and "available" in rows["memory"]["detail"]
    assert rows["hub"]["status"] == "warn" and "127.0.0.1:9" in rows["hub"]["detail"]
    assert rows["hub"]["fix"] == ("the box cannot reach 127.0.0.1:9: downloads will fail; "
                                  "models already here keep working")
    assert "from llmctl's" in rows["clock"]["detail"]
    # --json given before the command name too
    assert [c["name"] for c in json.loads(llmctl(offline_daemon.socket_path, "--json", "doctor").stdout)["checks"]] \
        == CHECKS


def test_doctor_text_on_a_running_daemon(offline_daemon):
    p = llmctl(offline_daemon.socket_path, "doctor")
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["CHECK", "STATUS", "DETAIL"]
    assert [line.split()[0] for line in lines[1:11]] == CHECKS
    assert any(line.startswith("hub: the box cannot reach 127.0.0.1:9") for line in lines)
    assert re.fullmatch(r"\d+ problems?", lines[-1])  # the hub's warning at least
    assert p.stderr == ""


@pytest.mark.parametrize("stale", [False, True], ids=["no-socket", "stale-socket"])
def test_doctor_without_a_daemon(short_tmp, stale):
    sock = short_tmp / "nothing.sock"
    if stale:
        # A socket file that nothing accepts on: what a daemon killed with SIGKILL leaves behind.
        with socket.socket(socket.AF_UNIX) as s:
            s.bind(str(sock))
    p = llmctl(sock, "doctor")
    assert p.returncode == 1
    assert "Traceback" not in p.stdout + p.stderr
    rows = {line.split()[0]: line for line in p.stdout.splitlines()[1:11]}
    assert list(rows) == CHECKS
    assert rows["socket"].split()[1] == "fail"
    assert ("nothing answers" if stale else "no socket at") in rows["socket"]
    for name in CHECKS[2:]:
        assert rows[name].split()[1:3] == ["warn", "skipped:"], rows[name]
    assert "llmd is not running" in p.stdout and "systemctl start llmd" in p.stdout
    # one line; the service check may fail too on a box where systemd has an llmd unit that is not running
    assert p.stderr.count("\n") == 1 and p.stderr.startswith("llmctl: ") and "socket" in p.stderr

    data = json.loads(llmctl(sock, "doctor", "--json").stdout)
    assert data["ok"] is False
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["socket"] == "fail"
    assert all(c["detail"] == "skipped: the daemon does not answer" for c in data["checks"][2:])
