"""The LLM Inference Service API's WebSocket /ws/monitor on a FakeEngine core (Quart's test client)."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmd.core.system import GpuDevice, GpuReading
from llmd.http import create_app


async def recv(ws, timeout: float = 5.0) -> dict:
    return json.loads(await asyncio.wait_for(ws.receive(), timeout))


async def recv_type(ws, kind: str, timeout: float = 5.0) -> dict:
    """The next message of ``kind`` (others, such as a GPU reading between two status updates, are skipped)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await recv(ws, max(0.01, deadline - loop.time()))
        if msg["type"] == kind:
            return msg


@pytest.fixture
async def core_app(core_factory):
    core = await core_factory()
    return core, create_app(core)


async def test_subscribe_sends_the_state_now_then_changes(core_app):
    core, app = core_app
    async with app.test_client().websocket("/ws/monitor") as ws:
        await ws.send(json.dumps({"action": "subscribe", "events": ["model_status", "gpu_metrics", "system_alerts"]}))
        assert await recv(ws) == {"type": "subscribed", "events": ["gpu_metrics", "model_status", "system_alerts"]}
        first = await recv_type(ws, "model_status_update")
        data = first["data"]
        assert data["model_name"] == "tiny" and data["status"] == "running" and data["health"] == "healthy"
        assert data["model_id"].startswith("model-") and data["timestamp"].endswith("Z")
        await core.fleet.stop_model("tiny")
        states = []
        while "stopped" not in states:
            states.append((await recv_type(ws, "model_status_update"))["data"]["status"])
        assert states[-1] == "stopped"


async def test_gpu_readings_reach_subscribers_in_mib(core_app):
    core, app = core_app
    device = GpuDevice(0, "Fake GPU", 24 << 30, 12 << 30, 12 << 30, 78.5, temperature_c=65.0, power_usage_w=350.0)
    async with app.test_client().websocket("/ws/monitor") as ws:
        await ws.send(json.dumps({"action": "subscribe", "events": ["gpu_metrics"]}))
        assert (await recv(ws))["type"] == "subscribed"
        await asyncio.sleep(0.2)  # the state now: no GPU on this machine, so nothing
        core.events.publish("gpu.0", GpuReading(1_800_000_000.0, device))
        msg = await recv_type(ws, "gpu_metrics_update")
        assert msg["data"] == {"gpu_id": 0, "name": "Fake GPU", "utilization": 78.5, "memory_used": 12288,
                               "memory_total": 24576, "temperature": 65.0, "power_usage": 350.0,
                               "timestamp": "2027-01-15T08:00:00Z"}


async def test_unsubscribed_kinds_are_not_sent(core_app):
    core, app = core_app
    device = GpuDevice(0, "Fake GPU", 1 << 30, 0, 1 << 30, 1.0)
    async with app.test_client().websocket("/ws/monitor") as ws:
        await ws.send(json.dumps({"action": "subscribe", "events": ["gpu_metrics", "model_status"]}))
        assert (await recv(ws))["type"] == "subscribed"
        await ws.send(json.dumps({"action": "unsubscribe", "events": ["gpu_metrics"]}))
        assert await recv_type(ws, "unsubscribed") == {"type": "unsubscribed", "events": ["model_status"]}
        core.events.publish("gpu.0", GpuReading(1.0, device))
        await ws.send(json.dumps({"action": "ping"}))
        assert (await recv_type(ws, "pong")) == {"type": "pong"}
        # nothing of the GPU arrived before the pong, and nothing after it
        with pytest.raises(asyncio.TimeoutError):
            while True:
                assert (await recv(ws, 0.3))["type"] != "gpu_metrics_update"


@pytest.mark.parametrize("message, field", [
    ({"action": "subscribe", "events": ["gpu"]}, "events[0]"),
    ({"action": "subscribe", "events": []}, "events"),
    ({"action": "subscribe"}, "events"),
    ({"action": "subscribe", "events": "gpu_metrics"}, "events"),
    ({"action": "dance"}, "action"),
    ({}, "action"),
])
async def test_bad_messages_get_an_error_and_the_socket_stays(core_app, message, field):
    core, app = core_app
    async with app.test_client().websocket("/ws/monitor") as ws:
        await ws.send(json.dumps(message))
        err = await recv(ws)
        assert err["type"] == "error" and err["error"]["details"] == {"field": field}, err
        assert err["error"]["code"] == "INVALID_REQUEST"
        await ws.send("not json")
        assert (await recv(ws))["type"] == "error"
        await ws.send(json.dumps({"action": "ping"}))
        assert await recv(ws) == {"type": "pong"}


async def test_failed_health_checks_put_a_model_in_error_and_subscribers_see_it(core_app):
    core, app = core_app
    dep = core.fleet.get("tiny")

    async def broken() -> str:
        return "the generation thread has stopped"

    dep.probe = broken  # the failure at the deployment's boundary; the fleet's rounds are real
    async with app.test_client().websocket("/ws/monitor") as ws:
        await ws.send(json.dumps({"action": "subscribe", "events": ["model_status"]}))
        assert (await recv_type(ws, "model_status_update"))["data"]["status"] == "running"
        failures: dict[str, int] = {}
        for _ in range(2):
            await core.fleet.check_health(failures)
        assert dep.state.value == "running"  # two failures are not enough
        await core.fleet.check_health(failures)
        assert dep.state.value == "error"
        data = (await recv_type(ws, "model_status_update"))["data"]
        assert data["status"] == "error" and data["health"] == "unhealthy"
    assert "3 health checks in a row" in dep.error
