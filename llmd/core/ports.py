"""Ports of their own for deployments: which model each extra port serves.

A deployment started with ``port`` is also served, alone, on that port (the
OpenAI API for just that model). The core decides which port belongs to which
model and refuses clashes; the listeners themselves are the daemon's (it wires
an object with ``start`` and ``stop``), so the core never imports the web server.
"""

from __future__ import annotations

import logging
from typing import Callable, Protocol

from llmd.errors import ConflictError, ValidationError

log = logging.getLogger(__name__)


class Listeners(Protocol):
    """What the core needs to serve a deployment on its own port; the daemon provides it."""

    async def start(self, port: int, model: str) -> None:
        """Serve the OpenAI API for just ``model`` on ``port``; ConflictError when the port is taken."""

    async def stop(self, port: int) -> None:
        """Stop serving ``port``."""


class PortMap:
    """Ports bound to deployments, and the listeners that serve them."""

    def __init__(self, api_port: int, log_line: Callable[[str, str, str], object]) -> None:
        self.api_port = api_port
        self.listeners: Listeners | None = None  # set by the daemon; None: extra ports cannot be served
        self._ports: dict[int, str] = {}  # port -> model name
        self._log_line = log_line  # (model, level, message): the model's log

    def owner(self, port: int) -> str | None:
        """The model serving ``port``, if any."""
        return self._ports.get(port)

    def bound(self) -> list[int]:
        """Every port served now."""
        return list(self._ports)

    async def bind(self, port: int, name: str) -> None:
        """Serve model ``name`` on ``port``; a clash or a port that cannot be served is a 4xx naming ``port``."""
        owner = self._ports.get(port)
        if owner == name:
            return
        if owner is not None:
            raise ConflictError(f"port {port} is already serving the deployment of '{owner}'", field="port",
                                details={"port": port, "model": owner})
        if port == self.api_port:
            raise ConflictError(f"port {port} is llmd's own API port", field="port", details={"port": port})
        if self.listeners is None:
            raise ValidationError("port: this llmd instance cannot serve extra ports (no listener hook)",
                                  field="port")
        await self.listeners.start(port, name)
        self._ports[port] = name
        self._log_line(name, "info", f"serving the OpenAI API for this model on port {port}")

    async def release(self, port: int) -> None:
        """Stop serving ``port`` (a listener that fails to stop is logged, never raised)."""
        name = self._ports.pop(port, None)
        if name is None or self.listeners is None:
            return
        try:
            await self.listeners.stop(port)
        except Exception:  # noqa: BLE001 - a listener that fails to stop must not block a stop
            log.warning("stopping the listener on port %d failed", port, exc_info=True)
        self._log_line(name, "info", f"stopped serving port {port}")
