"""Slow clients on the real daemon: a trickling body and an idle connection are cut, not kept forever."""

from __future__ import annotations

import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest
from daemonproc import DaemonProcess

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def daemon() -> Iterator[DaemonProcess]:
    """No model loaded (none is needed), a 1 s body timeout and a 1 s keep-alive."""
    root = Path(tempfile.mkdtemp(prefix="llmd-slow-"))
    d = DaemonProcess(root, args=["--no-load", "--set", "limits.read_timeout_s=1",
                                  "--set", "server.keep_alive_timeout=1"]).start()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", d.port), timeout=1):
                    break
            except OSError:
                assert d.proc.poll() is None and time.monotonic() < deadline, d.log()
                time.sleep(0.1)
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def _read_all(sock: socket.socket, limit: float) -> bytes:
    """Everything the server sends until it closes the connection; a socket timeout if it never does."""
    data = b""
    sock.settimeout(limit)
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def test_a_trickling_body_gets_a_408_in_the_dialects_envelope(daemon):
    """One byte every 0.3 s never leaves the connection silent for the 1 s limit: the limit is on the whole body."""
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: llmd\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{")
        s.setblocking(False)
        answer = b""
        for _ in range(100):  # up to 30 s of trickling, far past the 1 s limit
            try:
                s.send(b" ")
            except OSError:
                break  # the daemon hung up
            time.sleep(0.3)
            try:
                answer += s.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                break
            if answer:
                break
        s.setblocking(True)
        data = answer + _read_all(s, 30)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:300]
    assert b'"error"' in body and b"Traceback" not in body


def test_an_idle_connection_is_closed_after_keep_alive(daemon):
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as s:
        data = _read_all(s, 30)  # say nothing at all: the daemon hangs up (else a socket timeout)
    assert data == b"" or data.startswith(b"HTTP/1.1 4"), data[:200]
