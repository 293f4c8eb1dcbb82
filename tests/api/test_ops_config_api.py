"""The LLM Inference Service API's /api/system/status, /api/system/gpu and /api/config, on a FakeEngine core."""

from __future__ import annotations

import json
import logging

import pytest

from llmd.config import load_config
from llmd.core.settings import apply_stored
from llmd.http import create_app
from llmd.store.settings import read_overrides


async def call(app, method: str, path: str, body=None):
    client = app.test_client()
    kw = {"json": body} if body is not None else {}
    r = await client.open(path, method=method, **kw)
    return r.status_code, json.loads(await r.get_data(as_text=True))


@pytest.fixture
async def core_app(core_factory):
    core = await core_factory()
    return core, create_app(core)


async def test_system_status_counts_models_and_reads_the_machine(core_app):
    core, app = core_app
    status, body = await call(app, "GET", "/api/system/status")
    assert status == 200, body
    assert body["status"] in ("healthy", "degraded", "unhealthy")
    assert body["models"]["total"] == 1 and body["models"]["running"] == 1 and body["models"]["stopped"] == 0
    assert all(0 <= body["resources"][k] <= 100 for k in ("cpu_percent", "memory_percent", "disk_percent"))
    assert body["uptime"] >= 0 and body["version"]
    # no NVIDIA driver on the test machines: an empty list and why, never an error
    if not body["gpu"]:
        assert body["gpu_reason"]
    assert set(body["checks"]) == {"store", "disk", "engine"}


async def test_system_gpu_without_a_driver_is_an_empty_list_with_a_reason(core_app):
    core, app = core_app
    status, body = await call(app, "GET", "/api/system/gpu")
    assert status == 200, body
    assert isinstance(body["gpus"], list)
    if not body["gpus"]:
        assert body["reason"]


async def test_unknown_system_and_config_paths_are_this_apis_404(core_app):
    core, app = core_app
    for path in ("/api/system/nope", "/api/config/nope/x", "/api/system", "/api/system/healthz"):
        status, body = await call(app, "GET", path)
        assert status == 404, (path, body)
        assert set(body) == {"error", "timestamp", "path"} and body["path"] == path
    status, body = await call(app, "GET", "/api/configx")  # not under /api/config/: nobody's, the fallback's
    assert status == 404 and set(body) == {"detail"}
    status, body = await call(app, "GET", "/api/system/resources")  # still the LLM Manager API's
    assert status == 200 and body["success"] is True


async def test_get_config_has_the_documents_keys_with_sources(core_app):
    core, app = core_app
    status, body = await call(app, "GET", "/api/config")
    assert status == 200, body
    assert body["gpu_monitor_interval"] == 0  # tests run with no sampler
    assert body["default_model_timeout"] == 300 and body["health_check_interval"] == 60
    assert body["log_level"] == "INFO"
    assert body["alert_thresholds"] == {"gpu_utilization_high": 90, "gpu_temperature_high": 80,
                                        "response_time_high": 2.0, "error_rate_high": 0.05}
    assert body["sources"]["default_model_timeout"] == "default"
    assert body["settings"]["monitor.keep_raw_h"] == {"value": 24.0, "source": "default", "applies": "now"}
    assert body["settings"]["engine.n_ctx"]["applies"] == "restart"
    assert body["restart_required"] == {}


async def test_put_config_applies_persists_and_reports(core_app):
    core, app = core_app
    status, body = await call(app, "PUT", "/api/config", {
        "gpu_monitor_interval": 60, "max_concurrent_models": 15, "log_level": "warning",
        "alert_thresholds": {"gpu_utilization_high": 85, "gpu_temperature_high": 75}})
    assert status == 200, body
    assert body["gpu_monitor_interval"] == 60 and body["max_concurrent_models"] == 15
    assert body["alert_thresholds"]["gpu_utilization_high"] == 85
    assert body["alert_thresholds"]["response_time_high"] == 2.0  # untouched
    assert set(body["applied"]) == {"gpu_monitor_interval", "max_concurrent_models", "log_level",
                                    "alert_thresholds.gpu_utilization_high", "alert_thresholds.gpu_temperature_high"}
    assert body["sources"]["gpu_monitor_interval"].startswith("override")
    # applied to the live config the components read, and to the log level
    assert core.config.monitor.interval_s == 60 and core.config.deployments.max_running == 15
    assert logging.getLogger().level == logging.WARNING
    logging.getLogger().setLevel(logging.INFO)
    # stored: a fresh read of the same database (what the daemon and --print-config do) sees it
    stored = read_overrides(core.config.db_path)
    assert stored["monitor.interval_s"] == 60 and stored["alerts.gpu_temperature_high"] == 75
    fresh = apply_stored(load_config(config_file=core.config.config_file, env={},
                                     flags={"paths.state_dir": core.config.paths.state_dir}), stored)
    assert fresh.deployments.max_running == 15 and fresh.sources["deployments.max_running"].startswith("override")


async def test_a_restart_only_setting_is_stored_and_reported(core_app):
    core, app = core_app
    status, body = await call(app, "PUT", "/api/config", {"settings": {"engine.n_ctx": 2048}})
    assert status == 200, body
    assert body["applied"] == [] and body["restart_required"] == {"engine.n_ctx": 2048}
    assert core.config.engine.n_ctx != 2048  # not in force until a restart
    assert body["settings"]["engine.n_ctx"]["pending"] == 2048
    status, body = await call(app, "PUT", "/api/config", {"reset": ["engine.n_ctx"]})
    assert status == 200 and body["restart_required"] == {}
    assert "engine.n_ctx" not in read_overrides(core.config.db_path)


@pytest.mark.parametrize("body, field", [
    ({"gpu_monitor_interval": -1}, "gpu_monitor_interval"),
    ({"gpu_monitor_interval": "fast"}, "gpu_monitor_interval"),
    ({"max_concurrent_models": 1.5}, "max_concurrent_models"),
    ({"log_level": "LOUD"}, "log_level"),
    ({"alert_thresholds": {"gpu_utilization_high": 101}}, "alert_thresholds.gpu_utilization_high"),
    ({"alert_thresholds": {"cpu_high": 1}}, "alert_thresholds.cpu_high"),
    ({"no_such_key": 1}, "no_such_key"),
    ({"settings": {"engine.nope": 1}}, "settings.engine.nope"),
    ({"settings": {"monitor.interval_s": 0.01}}, "settings.monitor.interval_s"),
    ({"settings": {"engine.n_ctx": "big"}}, "settings.engine.n_ctx"),
    ({"settings": {"paths.state_dir": "/tmp"}}, "settings.paths.state_dir"),
    ({"settings": {"engine.kv_cache_type": "q2"}}, "settings.engine.kv_cache_type"),
    ({"reset": ["engine.nope"]}, "engine.nope"),
    ({"reset": ["paths.state_dir"]}, "paths.state_dir"),
])
async def test_bad_config_is_a_400_naming_the_field(core_app, body, field):
    core, app = core_app
    before = read_overrides(core.config.db_path)
    status, answer = await call(app, "PUT", "/api/config", body)
    assert status == 400, answer
    assert answer["error"]["code"] == "INVALID_REQUEST"
    assert field in json.dumps(answer["error"]), answer
    assert read_overrides(core.config.db_path) == before  # all or nothing


async def test_a_changed_interval_starts_the_sampler(core_app):
    core, app = core_app
    assert core.history._task is None
    status, body = await call(app, "PUT", "/api/config", {"gpu_monitor_interval": 3600})
    assert status == 200, body
    assert core.history._task is not None
    status, body = await call(app, "PUT", "/api/config", {"gpu_monitor_interval": 0})
    assert core.history._task is None


async def test_max_concurrent_models_bounds_starts(core_factory, tiny_gguf):
    core = await core_factory(**{"deployments.max_running": 1, "deployments.pin_default": True})
    await core.registry.add_file(tiny_gguf, "tiny2")
    app = create_app(core)
    status, body = await call(app, "POST", "/api/models/tiny2/start", {})
    assert status == 202, body
    task = body["task_id"]
    for _ in range(100):
        status, t = await call(app, "GET", f"/api/tasks/{task}")
        if t["status"] in ("completed", "failed"):
            break
        import asyncio
        await asyncio.sleep(0.05)
    assert t["status"] == "failed" and t["error"]["code"] == "INSUFFICIENT_RESOURCES", t
    assert "max_running" in t["error"]["message"]


async def test_reset_puts_the_files_value_back_at_once(core_factory):
    core = await core_factory()
    app = create_app(core)
    status, body = await call(app, "PUT", "/api/config", {"gpu_monitor_interval": 45})
    assert status == 200 and core.config.monitor.interval_s == 45
    status, body = await call(app, "PUT", "/api/config", {"reset": ["monitor.interval_s"]})
    assert status == 200, body
    # the fixture's core has no file to read again: the built-in default stands in
    assert body["applied"] == ["gpu_monitor_interval"] and body["gpu_monitor_interval"] == 30.0
    assert body["sources"]["gpu_monitor_interval"] == "default"
    assert core.history._task is not None  # 30 s > 0: the sampler runs


async def test_a_refused_value_resets_nothing(core_app):
    core, app = core_app
    await call(app, "PUT", "/api/config", {"max_concurrent_models": 7})
    status, body = await call(app, "PUT", "/api/config", {"reset": ["deployments.max_running"],
                                                          "gpu_monitor_interval": 0.05})
    assert status == 400 and body["error"]["details"] == {"field": "gpu_monitor_interval"}, body
    assert read_overrides(core.config.db_path)["deployments.max_running"] == 7
    assert core.config.deployments.max_running == 7
