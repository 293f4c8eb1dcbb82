"""LLM Inference Service API: the WebSocket ``/ws/monitor``.

The client subscribes to event kinds and gets their updates::

    -> {"action": "subscribe", "events": ["model_status", "gpu_metrics", "system_alerts"]}
    <- {"type": "subscribed", "events": [...]}
    <- {"type": "model_status_update", "data": {"model_id", "status", "health", "timestamp", ...}}
    <- {"type": "gpu_metrics_update", "data": {"gpu_id", "utilization", "memory_used", "temperature", ...}}
    <- {"type": "system_alert", "data": {"alert_id", "severity", "message", "timestamp", ...}}

A subscription starts with the state now (each running model, each GPU, each
firing alert), then every change. ``unsubscribe`` takes kinds away; ``ping``
is answered with ``pong``; a bad message gets ``{"type": "error", "error":
{"code", "message", "details"}}`` and the socket stays open.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from quart import websocket

from llmd.core import Core
from llmd.core.alerts import AlertEvent
from llmd.core.monitor import WATCH_TOPICS, ModelStatusChange, Watch
from llmd.core.system import GpuReading
from llmd.errors import LlmdError, ValidationError
from llmd.http.body import load_json_object
from llmd.http.format import iso, round_or_none
from llmd.http.inference_service.envelope import error_code
from llmd.http.inference_service.translate import health
from llmd.http.relay import until_closed
from llmd.http.routing import Dialect

log = logging.getLogger(__name__)

HEARTBEAT_S = 15.0
MIB = 1 << 20
KINDS = tuple(WATCH_TOPICS)
MESSAGE_TYPES = {"model_status": "model_status_update", "gpu_metrics": "gpu_metrics_update",
                 "system_alerts": "system_alert"}


def render_event(kind: str, event: ModelStatusChange | GpuReading | AlertEvent) -> dict[str, Any]:
    """One update in the document's shape (``data`` holds its fields; MiB, °C, W; ISO times)."""
    if isinstance(event, ModelStatusChange):
        info = event.deployment
        data = {"model_id": event.model_id, "model_name": info.model, "status": info.state.value,
                "health": health(info.state.value), "deployment_id": info.deployment_id or None,
                "timestamp": iso(event.ts)}
    elif isinstance(event, GpuReading):
        g = event.device
        data = {"gpu_id": g.index, "name": g.name, "utilization": round_or_none(g.utilization_percent, 1),
                "memory_used": round(g.memory_used_bytes / MIB), "memory_total": round(g.memory_total_bytes / MIB),
                "temperature": g.temperature_c, "power_usage": round_or_none(g.power_usage_w, 1),
                "timestamp": iso(event.ts)}
    else:
        data = {"alert_id": event.rule_id, "severity": event.severity, "message": event.message,
                "timestamp": iso(event.ts), "state": event.state, "rule_name": event.rule_name,
                "condition": event.condition, "value": event.value}
    return {"type": MESSAGE_TYPES[kind], "data": data}


def parse_kinds(msg: dict[str, Any]) -> list[str]:
    """The ``events`` of a subscribe or unsubscribe; a 400-style error names the bad entry."""
    events = msg.get("events")
    if not isinstance(events, list) or not events:
        raise ValidationError(f"events must be a non-empty list of {', '.join(KINDS)}", field="events")
    for i, kind in enumerate(events):
        if kind not in KINDS:
            raise ValidationError(f"events[{i}] must be one of {', '.join(KINDS)}", field=f"events[{i}]")
    return list(dict.fromkeys(events))


class MonitorSocket:
    """One ``/ws/monitor`` connection: the client's subscriptions and the feed from the core."""

    def __init__(self, core: Core) -> None:
        self.core = core
        self.kinds: set[str] = set()
        self.watch: Watch | None = None
        self._lock = asyncio.Lock()

    async def send(self, obj: dict[str, Any]) -> None:
        """One JSON text frame; replies and updates never interleave."""
        async with self._lock:
            await websocket.send(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))

    async def serve(self) -> None:
        """Accept, then forward the subscribed updates until the client goes."""
        await websocket.accept()
        self.watch = self.core.monitor.watch()
        reader = asyncio.ensure_future(self._read())
        watch = self.watch
        try:
            async for item in until_closed(lambda: watch.next(HEARTBEAT_S), reader):
                if item is not None and item[0] in self.kinds:
                    await self.send(render_event(*item))
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            self.watch.close()

    async def _read(self) -> None:
        """Client messages; returns when the socket closes."""
        while True:
            raw = await websocket.receive()
            try:
                await self.handle(load_json_object(raw, what="the message", field="message"))
            except LlmdError as err:
                await self.send({"type": "error", "error": {
                    "code": error_code(err.code), "message": err.message,
                    "details": err.details if err.details is not None else {"field": err.field}}})

    async def handle(self, msg: dict[str, Any]) -> None:
        """subscribe, unsubscribe or ping."""
        action = msg.get("action")
        if action == "subscribe":
            added = [k for k in parse_kinds(msg) if k not in self.kinds]
            self.kinds.update(added)
            await self.send({"type": "subscribed", "events": sorted(self.kinds)})
            if added:
                await self._current(added)
        elif action == "unsubscribe":
            self.kinds.difference_update(parse_kinds(msg))
            await self.send({"type": "unsubscribed", "events": sorted(self.kinds)})
        elif action == "ping":
            await self.send({"type": "pong"})
        else:
            raise ValidationError('action must be "subscribe", "unsubscribe" or "ping"', field="action")

    async def _current(self, kinds: list[str]) -> None:
        """The state now of newly subscribed kinds: a subscriber should not wait for the next change."""
        assert self.watch is not None
        for item in await self.watch.current(kinds):
            await self.send(render_event(*item))


def register(d: Dialect, core: Core) -> None:
    """Declare ``/ws/monitor``."""

    @d.websocket("/ws/monitor", summary="Model status, GPU metrics and alerts over WebSocket", auth="admin")
    async def monitor_ws() -> None:
        """``{"action": "subscribe", "events": ["model_status", "gpu_metrics", "system_alerts"]}``, then
        ``model_status_update``, ``gpu_metrics_update`` and ``system_alert`` messages (``unsubscribe`` takes
        kinds away, ``ping`` gets ``pong``)."""
        await MonitorSocket(core).serve()
