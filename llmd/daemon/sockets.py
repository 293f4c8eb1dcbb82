"""Listening sockets of the daemon: TCP, and a Unix socket that lets in only trusted local peers.

Also the readiness probe: a real ``GET /health`` over a socket, which the
daemon waits for before it tells systemd it is ready.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Callable

log = logging.getLogger("llmd")


class ListenError(Exception):
    """A socket could not be opened; the message is one line for the admin."""


def open_tcp(host: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket (IPv6 if the host has a colon)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        why = "the address is already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise ListenError(f"cannot listen on {host}:{port}: {why}") from None
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def open_unix(path: Path, mode: int, backlog: int = 128) -> socket.socket:
    """A listening Unix socket with ``mode``; refuses to steal a live daemon's socket."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: left by a daemon that died
        else:
            raise ListenError(f"another process is already listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o777 & ~mode)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


_REFUSAL_BODY = (b'{"error": {"code": "AUTHORIZATION_FAILED", "message": "this user may not use the llmd socket: '
                 b'only root, the daemon\'s user and members of its group (auth.unix_group) may"}}')
_REFUSAL = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(_REFUSAL_BODY)).encode() + b"\r\n\r\n" + _REFUSAL_BODY)


def peer_credentials(conn: socket.socket) -> tuple[int, int, int]:
    """``(pid, uid, gid)`` of a Unix-socket peer, from the kernel (SO_PEERCRED): it cannot be forged."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", raw)


class PeerCheckedSocket(socket.socket):
    """A listening Unix socket whose ``accept()`` lets in only the peers ``allowed(uid, gid)`` approves.

    asyncio's server calls ``accept()`` on this object, so a refused peer never
    reaches Hypercorn or the app: every connection the app sees on this socket
    is a trusted local admin. A refused peer gets a 403 and is logged.
    """

    def __init__(self, listening: socket.socket, allowed: Callable[[int, int], bool]) -> None:
        super().__init__(listening.family, listening.type, listening.proto, fileno=listening.detach())
        self.allowed = allowed
        self._refusals: set[asyncio.Task] = set()

    def accept(self) -> tuple[socket.socket, object]:
        """The next allowed connection; BlockingIOError (as a plain socket would) when none is pending."""
        while True:
            conn, addr = super().accept()
            try:
                pid, uid, gid = peer_credentials(conn)
            except OSError:
                conn.close()
                continue
            if self.allowed(uid, gid):
                return conn, addr
            log.warning("refused a Unix-socket connection from uid %d gid %d (pid %d): not root, the daemon's "
                        "user or a member of its group", uid, gid, pid)
            self._refuse(conn)

    def _refuse(self, conn: socket.socket) -> None:
        try:
            task = asyncio.get_running_loop().create_task(_answer_refused(conn))
        except RuntimeError:  # no loop (not serving): just drop the connection
            conn.close()
            return
        self._refusals.add(task)
        task.add_done_callback(self._refusals.discard)


async def _answer_refused(conn: socket.socket) -> None:
    """Read the request (briefly), answer 403, close: the client sees an answer, not a reset."""
    conn.setblocking(False)
    try:
        reader, writer = await asyncio.open_unix_connection(sock=conn)
    except OSError:
        conn.close()
        return
    try:
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
    except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
        pass
    try:
        writer.write(_REFUSAL)
        await asyncio.wait_for(writer.drain(), 2)
    except (TimeoutError, OSError):
        pass
    finally:
        writer.close()


async def probe_http(connect: object) -> bool:
    """True once GET /health gets an HTTP answer over the given connection factory."""
    try:
        reader, writer = await asyncio.wait_for(connect(), 2)  # type: ignore[operator]
        writer.write(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 5)
        writer.close()
        return line.startswith(b"HTTP/1.1 200")
    except (TimeoutError, OSError):
        return False


def probe_host(host: str) -> str:
    """The address to probe a listener on: loopback for a wildcard address."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host in ("::", "[::]"):
        return "::1"
    return host.strip("[]")
