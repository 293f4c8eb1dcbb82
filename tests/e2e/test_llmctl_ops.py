"""llmctl top, metrics, alerts and config against the real daemon (the LLM Inference Service API routes).

The daemon is the session's, shared with the other e2e tests: every setting a
test changes is put back (the value it had, and its stored override dropped).
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from typing import Iterator

import pytest
from daemonproc import interruptible, llmd_bin

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
BARS = "▁▂▃▄▅▆▇█"


def llmctl(daemon_or_socket, *args, input=None, timeout=120):
    sock = getattr(daemon_or_socket, "socket_path", daemon_or_socket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    env["COLUMNS"] = "80"  # what a plain terminal gives; the text must stay readable in it
    return subprocess.run([llmd_bin("llmctl"), "--socket", str(sock), *args], capture_output=True, text=True,
                          input=input, timeout=timeout, env=env)


def ok(daemon, *args) -> str:
    p = llmctl(daemon, *args)
    assert p.returncode == 0, f"llmctl {' '.join(args)}: {p.stderr}"
    assert "Traceback" not in p.stderr
    return p.stdout


def ok_json(daemon, *args):
    return json.loads(ok(daemon, *args, "--json"))


def one_line_error(p: subprocess.CompletedProcess, code: int = 1) -> str:
    assert p.returncode == code, (p.returncode, p.stdout, p.stderr)
    assert p.stderr.startswith("llmctl: ") and p.stderr.count("\n") == 1, p.stderr
    return p.stderr


@pytest.fixture
def restore_settings(daemon) -> Iterator[list[str]]:
    """Append each ``section.key`` a test changes; afterwards its value goes back and the override is dropped."""
    before = ok_json(daemon, "config", "get")["settings"]
    keys: list[str] = []
    yield keys
    for key in keys:
        old = before[key]
        if old.get("applies") == "now":  # put the value in force back first: dropping an override alone may not
            ok(daemon, "config", "set", f"{key}={json.dumps(old['value'])}")
        ok(daemon, "config", "unset", key)
    after = ok_json(daemon, "config", "get")["settings"]
    for key in keys:
        assert after[key]["value"] == before[key]["value"], key
        assert "pending" not in after[key], key


@pytest.fixture
def fast_sampling(daemon, restore_settings) -> None:
    """Samples (and alert evaluations) every second for the test."""
    restore_settings.append("monitor.interval_s")
    assert "applied now" in ok(daemon, "config", "set", "gpu_monitor_interval=1")


# -- top ----------------------------------------------------------------------------------------------------------


def test_top_once(daemon):
    out = ok(daemon, "top", "--once")
    lines = out.splitlines()
    assert lines[0].startswith("llmd ") and "healthy" in lines[0] and "cpu " in lines[0] and "disk " in lines[0]
    assert any(line.startswith("models: ") and "running" in line for line in lines)
    assert any(line.startswith("gpu") for line in lines)
    header = next(line for line in lines if line.startswith("DEPLOYMENT"))
    for col in ("ACTIVE", "QUEUED", "TOK/S", "REQ 1h", "AVG s", "ERR %"):
        assert col in header
    row = next(line for line in lines if line.startswith(MODEL))
    # One frame has no rate yet: tokens per second needs two.
    assert row.split()[1:4] == ["0", "0", "-"], row
    assert "alerts: none firing" in out or "FIRING" in out
    assert max(len(line) for line in lines) <= 80


def test_top_json(daemon):
    ok(daemon, "generate", "Hi", "--max-tokens", "4")  # so the counters and the request log have this model
    data = ok_json(daemon, "top")
    assert {"status", "performance", "deployments", "alerts", "firing", "tokens_per_s"} <= set(data)
    status = data["status"]
    assert status["status"] in ("healthy", "degraded", "unhealthy")
    assert status["uptime"] >= 0 and status["models"]["running"] >= 1
    for key in ("cpu_percent", "memory_percent", "disk_percent"):
        assert 0 <= status["resources"][key] <= 100
    assert isinstance(status["gpu"], list) and (status["gpu"] or status["gpu_reason"])
    dep = data["deployments"][MODEL]
    assert dep["active"] >= 0 and dep["queued"] >= 0 and dep["completion_tokens"] >= 1
    assert data["performance"]["time_range"] == "1h"
    perf = {m["model_name"]: m for m in data["performance"]["models"]}
    assert perf[MODEL]["total_requests"] >= 1 and 0 <= perf[MODEL]["error_rate"] <= 1
    assert any(r["id"].startswith("threshold-") for r in data["alerts"])
    assert all(r["state"] == "firing" for r in data["firing"])
    assert json.loads(ok(daemon, "--json", "top"))["status"]["version"] == status["version"]


def test_top_live_refreshes_until_ctrl_c(daemon):
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    proc = subprocess.Popen([llmd_bin("llmctl"), "--socket", str(daemon.socket_path), "top", "--interval", "0.5"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            preexec_fn=interruptible)
    os.close(slave)
    seen = b""
    try:
        deadline = time.monotonic() + 30
        # The second frame has a rate (a number, or 0.0) where the first had "-".
        while seen.count(b"DEPLOYMENT") < 3 and time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1)
            if ready:
                seen += os.read(master, 65536)
        assert seen.count(b"DEPLOYMENT") >= 3, seen[-800:]
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"Traceback" not in seen


# -- metrics ------------------------------------------------------------------------------------------------------


def test_metrics_text_and_json(daemon, fast_sampling):
    time.sleep(2.5)  # a couple of samples at one per second
    out = ok(daemon, "metrics", "--since", "1h", "--type", "cpu")
    lines = out.splitlines()
    assert lines[0].startswith("last 1h in 1m buckets")
    chart = next(line for line in lines if line.strip().startswith("cpu_percent"))
    assert any(c in chart for c in BARS), chart
    lo, avg, hi = (float(x) for x in chart.split()[-3:])
    assert 0 <= lo <= avg <= hi <= 100
    assert any(line.strip().startswith("load_1m") for line in lines)
    assert "memory_percent" not in out  # --type cpu only
    assert lines[-1].startswith("avg response time: ")
    assert max(len(line) for line in lines) <= 80

    data = ok_json(daemon, "metrics", "--since", "1h", "--type", "cpu")
    assert data["interval"] == "1m" and data["metrics"]
    assert {"timestamp", "cpu_percent"} <= set(data["metrics"][-1])
    assert "avg_response_time" in data["summary"]

    # The bucket length follows --since unless given.
    assert ok_json(daemon, "metrics", "--since", "7d")["interval"] == "1h"
    assert ok_json(daemon, "metrics", "--since", "90s", "--interval", "5m")["interval"] == "5m"
    models = ok(daemon, "metrics", "--since", "30m", "--type", "model")
    assert MODEL in models and "queue_depth" in models


def test_metrics_bad_since_is_a_usage_error(daemon):
    p = llmctl(daemon, "metrics", "--since", "1week")
    assert p.returncode == 2 and "--since" in p.stderr and "Traceback" not in p.stderr
    assert llmctl(daemon, "metrics", "--type", "disk").returncode == 2


# -- alerts -------------------------------------------------------------------------------------------------------


def test_alerts_lifecycle(daemon, fast_sampling):
    bad = one_line_error(llmctl(daemon, "alerts", "add", "bad rule", "load_1m >> 1"))
    assert "condition" in bad and "'>>'" in bad
    bad = one_line_error(llmctl(daemon, "alerts", "add", "bad rule", "no_such_metric > 1"))
    assert "condition" in bad and "no_such_metric" in bad

    p = llmctl(daemon, "alerts", "add", "e2e always", "load_1m >= 0", "--severity", "info",
               "--channel", "journal", "--repeat", "0", "--description", "from test_llmctl_ops")
    assert p.returncode == 0, p.stderr
    rule_id = p.stdout.strip()
    assert rule_id.startswith("alert-")
    try:
        out = ok(daemon, "alerts", "list")
        assert rule_id in out and "e2e always" in out and "load_1m >= 0" in out
        rules = {r["id"]: r for r in ok_json(daemon, "alerts", "list")}
        assert rules[rule_id]["severity"] == "info" and rules[rule_id]["enabled"] is True
        assert rules[rule_id]["description"] == "from test_llmctl_ops" and rules[rule_id]["repeat_interval_s"] == 0

        # load_1m >= 0 always holds: the next sample fires it, and the history and top show it.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            events = ok_json(daemon, "alerts", "history", "--alert", rule_id)["items"]
            if events:
                break
            time.sleep(0.5)
        assert events and events[0]["alert_id"] == rule_id and events[0]["state"] == "firing"
        history = ok(daemon, "alerts", "history", "--limit", "5")
        assert rule_id in history and "firing" in history
        assert any(r["id"] == rule_id for r in ok_json(daemon, "top")["firing"])
        assert "e2e always" in ok(daemon, "top", "--once")

        assert ok(daemon, "alerts", "disable", rule_id).strip() == f"{rule_id}: disabled"
        rules = {r["id"]: r for r in ok_json(daemon, "alerts", "list")}
        assert rules[rule_id]["enabled"] is False
        assert "disabled" in next(line for line in ok(daemon, "alerts").splitlines() if line.startswith(rule_id))
        assert ok_json(daemon, "alerts", "enable", rule_id)["enabled"] is True

        # The built-in rules change through the configuration, not here.
        err = one_line_error(llmctl(daemon, "alerts", "rm", "threshold-error_rate_high"))
        assert "alert_thresholds" in err
    finally:
        assert ok(daemon, "alerts", "rm", rule_id).strip() == f"{rule_id}: deleted"
    assert rule_id not in {r["id"] for r in ok_json(daemon, "alerts", "list")}
    assert "no alert rule" in one_line_error(llmctl(daemon, "alerts", "enable", rule_id))
    # Its history stays.
    assert ok_json(daemon, "alerts", "history", "--alert", rule_id)["total"] >= 1


# -- config -------------------------------------------------------------------------------------------------------


def test_config_get(daemon):
    out = ok(daemon, "config", "get")
    for key in ("gpu_monitor_interval", "max_concurrent_models", "default_model_timeout", "health_check_interval",
                "log_level", "alert_thresholds.gpu_utilization_high", "alert_thresholds.error_rate_high"):
        assert any(line.startswith(key + " ") for line in out.splitlines()), key
    doc = ok_json(daemon, "config", "get")
    assert {"settings", "sources", "restart_required"} <= set(doc)
    one = ok_json(daemon, "config", "get", "engine.n_ctx")
    assert one["value"] == doc["settings"]["engine.n_ctx"]["value"] and one["applies"] == "restart"
    thr = ok_json(daemon, "config", "get", "alert_thresholds.error_rate_high")
    assert thr["value"] == doc["alert_thresholds"]["error_rate_high"] and thr["setting"] == "alerts.error_rate_high"
    err = one_line_error(llmctl(daemon, "config", "get", "gpu_monitor_intreval"))
    assert "gpu_monitor_interval" in err  # the suggestion


def test_config_set_get_unset(daemon, restore_settings):
    restore_settings += ["monitor.interval_s", "engine.n_ctx", "alerts.error_rate_high"]
    out = ok(daemon, "config", "set", "gpu_monitor_interval=45", "alert_thresholds.error_rate_high=0.25")
    assert "gpu_monitor_interval = 45: applied now" in out
    assert "alert_thresholds.error_rate_high = 0.25: applied now" in out
    line = ok(daemon, "config", "get", "gpu_monitor_interval").strip()
    assert line.startswith("gpu_monitor_interval = 45") and "source: override" in line
    assert ok_json(daemon, "config", "get", "monitor.interval_s")["value"] == 45
    assert ok_json(daemon, "config", "get", "alert_thresholds.error_rate_high")["value"] == 0.25
    rules = {r["id"]: r for r in ok_json(daemon, "alerts", "list")}
    assert rules["threshold-error_rate_high"]["threshold"] == 0.25

    out = ok(daemon, "config", "set", "engine.n_ctx=2048")
    assert "engine.n_ctx = 2048" in out and "restart" in out
    entry = ok_json(daemon, "config", "get", "engine.n_ctx")
    assert entry["pending"] == 2048 and entry["value"] != 2048
    assert "2048 after a restart" in ok(daemon, "config", "get", "engine.n_ctx")
    assert "engine.n_ctx = 2048" in ok(daemon, "config", "get")  # under "waiting for a restart"

    out = ok(daemon, "config", "unset", "engine.n_ctx")
    assert out.startswith("engine.n_ctx: override dropped")
    assert "pending" not in ok_json(daemon, "config", "get", "engine.n_ctx")
    assert "engine.n_ctx" not in ok_json(daemon, "config", "get")["restart_required"]


def test_config_set_errors(daemon):
    before = ok_json(daemon, "config", "get")
    err = one_line_error(llmctl(daemon, "config", "set", "max_concurrent_models=-1"))
    assert "max_concurrent_models" in err
    err = one_line_error(llmctl(daemon, "config", "set", "engine.n_ctx=lots"))
    assert "engine.n_ctx" in err
    err = one_line_error(llmctl(daemon, "config", "set", "engine.no_such_key=1"))
    assert "engine.no_such_key" in err
    p = llmctl(daemon, "config", "set", "gpu_monitor_interval")
    assert p.returncode == 2 and "KEY=VALUE" in p.stderr
    # A refused change changes nothing.
    after = ok_json(daemon, "config", "get")
    assert after["max_concurrent_models"] == before["max_concurrent_models"]
    assert after["settings"]["engine.n_ctx"] == before["settings"]["engine.n_ctx"]
