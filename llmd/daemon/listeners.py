"""Extra listeners for port-bound deployments: one Hypercorn server per port, started and stopped on demand.

The core decides which model a port serves (``llmd.core.ports.PortMap``) and
calls :meth:`PortListeners.start` and :meth:`PortListeners.stop`; this class
binds the port and runs a Hypercorn server on it, serving the app that
``make_app(model)`` returns (the daemon's app, wrapped to serve only that
model's OpenAI API).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from typing import Any, Callable

from llmd.config import Config
from llmd.errors import ConflictError

log = logging.getLogger(__name__)


class PortListeners:
    """Starts and stops Hypercorn listeners for port-bound deployments (the core's ``Listeners``)."""

    def __init__(self, make_app: Callable[[str], Any], config: Config) -> None:
        self.make_app = make_app
        self.config = config
        self._servers: dict[int, tuple[asyncio.Task, asyncio.Event, socket.socket]] = {}

    def _bind(self, port: int) -> socket.socket:
        host = self.config.server.host.strip("[]")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            why = "it is already in use by another process" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise ConflictError(f"cannot serve port {port} on {host}: {why}", field="port",
                                details={"port": port, "host": host}) from None
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    async def start(self, port: int, model: str) -> None:
        """Serve ``model``'s OpenAI API on ``port``; ConflictError when the port is taken."""
        from hypercorn.asyncio import serve
        from hypercorn.config import Config as HypercornConfig

        if port in self._servers:
            raise ConflictError(f"port {port} is already served", field="port", details={"port": port})
        sock = self._bind(port)
        hc = HypercornConfig()
        hc.bind = [f"fd://{sock.fileno()}"]
        hc.graceful_timeout = min(self.config.server.graceful_timeout, 5.0)
        hc.keep_alive_timeout = self.config.server.keep_alive_timeout
        hc.accesslog = None
        hc.errorlog = logging.getLogger("hypercorn.error")
        hc.include_server_header = False
        stop = asyncio.Event()
        task = asyncio.ensure_future(serve(self.make_app(model), hc, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        self._servers[port] = (task, stop, sock)
        log.info("serving model %s on port %d", model, port)

    async def stop(self, port: int) -> None:
        """Stop the listener on ``port`` (open requests get the grace period)."""
        entry = self._servers.pop(port, None)
        if entry is None:
            return
        task, stop, sock = entry
        stop.set()
        try:
            await asyncio.wait_for(task, self.config.server.graceful_timeout + 5)
        except (TimeoutError, Exception):  # noqa: BLE001 - a stuck listener must not block a stop
            task.cancel()
            log.warning("the listener on port %d did not stop cleanly", port, exc_info=True)
        sock.detach()  # Hypercorn's socket object owned (and closed) this fd; never close it twice
        log.info("stopped serving port %d", port)
