"""The LLM Inference Service API's /api/config/alerts routes, their history, and alerts on /ws/monitor and
/metrics, on a FakeEngine core with the real sampler (psutil figures) and a real SQLite file."""

from __future__ import annotations

import asyncio
import json

import pytest

from llmd.http import create_app


async def call(app, method: str, path: str, body=None):
    kw = {"json": body} if body is not None else {}
    r = await app.test_client().open(path, method=method, **kw)
    return r.status_code, json.loads(await r.get_data(as_text=True))


@pytest.fixture
async def core_app(core_factory):
    core = await core_factory(**{"alerts.threshold_channels": ""})
    return core, create_app(core)


async def test_rules_crud_with_builtins_listed(core_app):
    core, app = core_app
    status, page = await call(app, "GET", "/api/config/alerts")
    assert status == 200, page
    assert {"items", "total", "page", "size", "pages"} == set(page)
    builtins = [r["id"] for r in page["items"] if r["builtin"]]
    assert builtins == ["threshold-gpu_utilization_high", "threshold-gpu_temperature_high",
                        "threshold-response_time_high", "threshold-error_rate_high"]
    status, rule = await call(app, "POST", "/api/config/alerts", {
        "name": "高GPU使用率告警", "condition": "gpu_utilization > 90", "severity": "warning", "enabled": True,
        "notification_channels": ["email", "webhook"]})
    assert status == 201, rule
    rid = rule["id"]
    assert rid.startswith("alert-") and rule["metric"] == "gpu_utilization" and rule["threshold"] == 90
    assert rule["state"] == "ok" and rule["notification_channels"] == ["email", "webhook"]
    status, got = await call(app, "GET", f"/api/config/alerts/{rid}")
    assert status == 200 and got["name"] == "高GPU使用率告警"
    status, got = await call(app, "PUT", f"/api/config/alerts/{rid}", {"condition": "gpu_temperature >= 80 for 5m"})
    assert status == 200 and got["condition"] == "gpu_temperature >= 80 for 5m" and got["for_s"] == 300
    status, got = await call(app, "POST", f"/api/config/alerts/{rid}/disable")
    assert status == 200 and got["enabled"] is False
    status, got = await call(app, "POST", f"/api/config/alerts/{rid}/enable")
    assert status == 200 and got["enabled"] is True
    status, page = await call(app, "GET", "/api/config/alerts?page=2&size=4")
    assert status == 200 and page["total"] == 5 and page["pages"] == 2 and [r["id"] for r in page["items"]] == [rid]
    status, gone = await call(app, "DELETE", f"/api/config/alerts/{rid}")
    assert status == 200 and gone == {"id": rid, "deleted": True}
    status, err = await call(app, "GET", f"/api/config/alerts/{rid}")
    assert status == 404 and err["error"]["code"] == "NOT_FOUND" and err["path"] == f"/api/config/alerts/{rid}"


@pytest.mark.parametrize("body, field", [
    ({"name": "x", "condition": "gpu_utilization >> 90"}, "condition"),
    ({"name": "x", "condition": "__import__('os').system('true') > 1"}, "condition"),
    ({"name": "x", "condition": "cpu_percent > 90 for 5x"}, "condition"),
    ({"name": "x", "condition": "cpu_percent > nan"}, "condition"),
    ({"name": "x", "condition": "cpu_percent > 1", "severity": "loud"}, "severity"),
    ({"name": "x", "condition": "cpu_percent > 1", "notification_channels": ["sms"]}, "notification_channels"),
    ({"name": "", "condition": "cpu_percent > 1"}, "name"),
    ({"condition": "cpu_percent > 1"}, "name"),
    ({"name": "x", "condition": "cpu_percent > 1", "colour": "red"}, "colour"),
    ({"name": "x", "condition": "cpu_percent > 1", "repeat_interval_s": -1}, "repeat_interval_s"),
])
async def test_bad_rules_are_400s_naming_the_field(core_app, body, field):
    core, app = core_app
    status, err = await call(app, "POST", "/api/config/alerts", body)
    assert status == 400, err
    assert field in json.dumps(err["error"]), err
    status, page = await call(app, "GET", "/api/config/alerts")
    assert all(r["builtin"] for r in page["items"])  # nothing was stored


async def test_a_builtin_rule_is_changed_through_the_config(core_app):
    core, app = core_app
    status, err = await call(app, "DELETE", "/api/config/alerts/threshold-error_rate_high")
    assert status == 409 and "alert_thresholds" in err["error"]["message"]
    status, _ = await call(app, "PUT", "/api/config", {"alert_thresholds": {"error_rate_high": 0.2}})
    assert status == 200
    status, rule = await call(app, "GET", "/api/config/alerts/threshold-error_rate_high")
    assert status == 200 and rule["condition"] == "error_rate > 0.2"
    status, _ = await call(app, "PUT", "/api/config", {"alert_thresholds": {"error_rate_high": 0}})
    status, err = await call(app, "GET", "/api/config/alerts/threshold-error_rate_high")
    assert status == 404


async def test_a_rule_fires_once_reaches_subscribers_and_metrics_then_resolves(core_app):
    core, app = core_app
    status, rule = await call(app, "POST", "/api/config/alerts", {
        "name": "busy box", "condition": "cpu_percent >= 0", "severity": "critical", "notification_channels": []})
    rid = rule["id"]
    async with app.test_client().websocket("/ws/monitor") as ws:
        await ws.send(json.dumps({"action": "subscribe", "events": ["system_alerts"]}))
        assert json.loads(await ws.receive())["type"] == "subscribed"
        await core.history.sample_once()
        await core.history.sample_once()  # still firing: no second event
        msg = json.loads(await asyncio.wait_for(ws.receive(), 5))
        assert msg["type"] == "system_alert"
        data = msg["data"]
        assert data["alert_id"] == rid and data["severity"] == "critical" and data["state"] == "firing"
        assert data["timestamp"].endswith("Z") and "cpu_percent" in data["message"]
        text = (await (await app.test_client().get("/metrics")).get_data(as_text=True))
        assert f'llmd_alerts_firing{{alert_id="{rid}",rule_name="busy box",severity="critical"}} 1.0' in text
        assert "llmd_system_cpu_percent " in text and "llmd_monitor_samples_total 2.0" in text
        status, got = await call(app, "GET", f"/api/config/alerts/{rid}")
        assert got["state"] == "firing" and got["since"] is not None
        await call(app, "PUT", f"/api/config/alerts/{rid}", {"condition": "cpu_percent > 1000"})
        await core.history.sample_once()
        msg = json.loads(await asyncio.wait_for(ws.receive(), 5))
        assert msg["type"] == "system_alert" and msg["data"]["state"] == "resolved"
    status, hist = await call(app, "GET", f"/api/config/alerts/history?alert_id={rid}")
    assert status == 200 and [e["state"] for e in hist["items"]] == ["resolved", "firing"]
    assert hist["total"] == 2 and hist["items"][1]["alert_id"] == rid
