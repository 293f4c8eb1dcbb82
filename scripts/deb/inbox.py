"""Helpers that scripts/test-deb runs *inside* the container (python3 of the base root, standard library).

Bound read-only at /srv/test-deb. Subcommands:

``probe tcp|unix``
    Polls ``GET /health`` on 127.0.0.1:8000 or on llmd's Unix socket, a new connection
    every 5 ms (one request outstanding at a time), until a line arrives on stdin; then
    prints every attempt as JSON ``[[start_us, end_us, ok, what], ...]`` on
    CLOCK_MONOTONIC, which is also the clock of systemd's ``*TimestampMonotonic``
    properties and of the journal's ``__MONOTONIC_TIMESTAMP`` (the container has no time
    namespace of its own). It asks for SCHED_FIFO first, so that it reads an answer as
    soon as it arrives even on a busy box (one process per socket: no shared GIL).
``wschat SESSION MESSAGE``
    One turn of the EasyVizAI API's WebSocket chat (``/ws/chat/SESSION/``), not
    streamed; prints the server's answer (JSON). A minimal RFC 6455 client: the
    root has no websocket library, and what is tested is the daemon, not a client.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import sys
import threading
import time

HOST, PORT = "127.0.0.1", 8000
UNIX_SOCKET = "/run/llmd/llmd.sock"


def now_us() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def _probe_loop(make, attempts: list, stop: threading.Event) -> None:
    while not stop.is_set():
        start = now_us()
        conn = make()
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            resp.read()
            attempts.append([start, now_us(), resp.status == 200, f"HTTP {resp.status}"])
        except (OSError, http.client.HTTPException) as exc:
            attempts.append([start, now_us(), False, type(exc).__name__])
        finally:
            conn.close()
        stop.wait(0.005)


def probe(which: str) -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
        sched = "SCHED_FIFO"
    except OSError:
        sched = "SCHED_OTHER"
    make = {"tcp": lambda: http.client.HTTPConnection(HOST, PORT, timeout=30),
            "unix": lambda: UnixHTTPConnection(UNIX_SOCKET, 30)}[which]
    stop = threading.Event()
    attempts: list = []
    t = threading.Thread(target=_probe_loop, args=(make, attempts, stop))
    t.start()
    print(f"probing {which} ({sched})", flush=True)
    sys.stdin.readline()
    stop.set()
    t.join()
    print(json.dumps(attempts), flush=True)


def _ws_send(sock: socket.socket, text: str, opcode: int = 1) -> None:
    data = text.encode()
    mask = os.urandom(4)
    head = bytes([0x80 | opcode])
    if len(data) < 126:
        head += bytes([0x80 | len(data)])
    elif len(data) < 65536:
        head += bytes([0x80 | 126]) + len(data).to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + len(data).to_bytes(8, "big")
    sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))


def _read_exact(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ConnectionError("the server closed the WebSocket")
    return data


def _ws_recv(f) -> tuple[int, bytes]:
    b0, b1 = _read_exact(f, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(_read_exact(f, 2), "big")
    elif n == 127:
        n = int.from_bytes(_read_exact(f, 8), "big")
    mask = _read_exact(f, 4) if b1 & 0x80 else None
    data = _read_exact(f, n)
    if mask:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return b0 & 0x0F, data


def wschat(session: str, message: str, timeout: float = 120) -> None:
    sock = socket.create_connection((HOST, PORT), timeout=timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/chat/{session}/ HTTP/1.1\r\nHost: {HOST}:{PORT}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    f = sock.makefile("rb")
    status = f.readline().decode(errors="replace").strip()
    while f.readline() not in (b"\r\n", b""):
        pass
    if " 101 " not in status + " ":
        sys.exit(f"wschat: no WebSocket: {status}")
    _ws_send(sock, json.dumps({"type": "chat_message", "message": message, "stream": False,
                               "parameters": {"max_length": 8}}))
    while True:
        op, data = _ws_recv(f)
        if op == 8:
            sys.exit("wschat: the server closed the WebSocket before answering")
        if op != 1:
            continue
        msg = json.loads(data)
        if msg.get("type") in ("assistant_message", "assistant_done", "error"):
            print(json.dumps(msg), flush=True)
            break
    _ws_send(sock, "", opcode=8)
    sock.close()
    if msg.get("type") == "error":
        sys.exit(1)


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"] and sys.argv[2:] in (["tcp"], ["unix"]):
        probe(sys.argv[2])
    elif sys.argv[1:2] == ["wschat"] and len(sys.argv) == 4:
        wschat(sys.argv[2], sys.argv[3])
    else:
        sys.exit(__doc__)
