"""LLM Inference Service API routes: ``GET`` and ``PUT /api/config`` (settings at run time).

The document's keys map onto llmd's settings (docs/api-ops.md); ``settings``
reaches any other ``section.key`` of llmd.toml.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field
from quart import jsonify

from llmd.core import Core
from llmd.core.settings import SettingsChange, SettingView
from llmd.http.body import parse_body
from llmd.http.fields import StrictModel
from llmd.http.routing import Dialect

# The document's keys -> llmd's settings.
KEYS = {
    "gpu_monitor_interval": "monitor.interval_s",
    "max_concurrent_models": "deployments.max_running",
    "default_model_timeout": "deployments.start_timeout_s",
    "health_check_interval": "deployments.health_check_interval_s",
    "log_level": "log.level",
}
THRESHOLDS = {name: f"alerts.{name}" for name in
              ("gpu_utilization_high", "gpu_temperature_high", "response_time_high", "error_rate_high")}
NAMES = {**{v: k for k, v in KEYS.items()}, **{v: f"alert_thresholds.{k}" for k, v in THRESHOLDS.items()}}


class Thresholds(StrictModel):
    """The built-in alert rules' thresholds; 0 turns one off."""

    model_config = ConfigDict(extra="forbid")

    gpu_utilization_high: Optional[float] = Field(default=None, ge=0, le=100, description="%, busiest GPU.")
    gpu_temperature_high: Optional[float] = Field(default=None, ge=0, le=200, description="°C, hottest GPU.")
    response_time_high: Optional[float] = Field(default=None, ge=0, le=86400, description=(
        "Seconds, mean of the last 5 minutes of requests."))
    error_rate_high: Optional[float] = Field(default=None, ge=0, le=1, description="0-1, last 5 minutes.")


class ConfigBody(StrictModel):
    """``PUT /api/config``: only the keys given change; an unknown key is a 400 naming it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"gpu_monitor_interval": 60, "max_concurrent_models": 15,
         "alert_thresholds": {"gpu_utilization_high": 85, "gpu_temperature_high": 75}}]})

    gpu_monitor_interval: Optional[float] = Field(default=None, ge=0, le=86400, description=(
        "Seconds between samples of the metrics history (0: none)."))
    max_concurrent_models: Optional[int] = Field(default=None, ge=0, le=1024, description=(
        "Deployments that may run at once (0: only the memory budget bounds them)."))
    default_model_timeout: Optional[float] = Field(default=None, gt=0, le=86400, description=(
        "Seconds a start waits by default."))
    health_check_interval: Optional[float] = Field(default=None, ge=1, le=86400, description=(
        "Seconds between checks of the running deployments."))
    log_level: Optional[Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"]] = None
    alert_thresholds: Optional[Thresholds] = None
    settings: Optional[dict[str, Any]] = Field(default=None, description=(
        "Any other setting of llmd.toml by `section.key` (docs/configuration.md), e.g. "
        "`{\"monitor.keep_raw_h\": 48}`."))
    reset: Optional[list[str]] = Field(default=None, max_length=256, description=(
        "Settings (`section.key`) whose stored override is dropped: the file's value applies again."))


class ConfigResponse(StrictModel):
    """The document's keys, where each value came from, and what waits for a restart."""

    gpu_monitor_interval: float
    max_concurrent_models: int
    default_model_timeout: float
    health_check_interval: float
    log_level: str
    alert_thresholds: dict[str, float]
    sources: dict[str, str]
    restart_required: dict[str, Any]
    settings: dict[str, dict[str, Any]]
    applied: Optional[list[str]] = None


def changes(body: ConfigBody) -> tuple[dict[str, Any], dict[str, str]]:
    """``section.key -> value`` of a PUT, and the name of each in the request (for a 400's field)."""
    out: dict[str, Any] = {}
    for name, key in KEYS.items():
        value = getattr(body, name)
        if value is not None:
            out[key] = value.lower() if name == "log_level" else value
    if body.alert_thresholds is not None:
        for name, key in THRESHOLDS.items():
            value = getattr(body.alert_thresholds, name)
            if value is not None:
                out[key] = value
    names = dict(NAMES)
    for key, value in (body.settings or {}).items():
        out[key] = value
        names[key] = f"settings.{key}"  # named as the request gave it
    return out, names


def _shown(v: SettingView) -> Any:
    return "********" if v.secret and v.value else v.value


def render(views: list[SettingView], change: SettingsChange | None = None) -> dict[str, Any]:
    """The document's keys first, then every setting with its source; secrets are masked."""
    by_key = {v.key: v for v in views}
    out: dict[str, Any] = {name: by_key[key].value for name, key in KEYS.items()}
    out["log_level"] = str(out["log_level"]).upper()
    out["alert_thresholds"] = {name: by_key[key].value for name, key in THRESHOLDS.items()}
    out["sources"] = {NAMES[k]: by_key[k].source for k in NAMES}
    out["restart_required"] = {NAMES.get(v.key, v.key): v.pending for v in views if v.pending is not None}
    out["settings"] = {v.key: {"value": _shown(v), "source": v.source, "applies": "now" if v.runtime else "restart",
                               **({"pending": v.pending} if v.pending is not None else {})} for v in views}
    if change is not None:
        out["applied"] = [NAMES.get(k, k) for k in change.applied]
    return out


def register(d: Dialect, core: Core) -> None:
    """Declare the configuration routes."""

    @d.route("/api/config", summary="Get the configuration", response=ConfigResponse, auth="admin")
    async def get_config() -> Any:
        """The document's keys (``gpu_monitor_interval``, ``max_concurrent_models``, ``default_model_timeout``,
        ``health_check_interval``, ``log_level``, ``alert_thresholds``), each key's source, settings waiting for a
        restart, and every llmd setting under ``settings``."""
        return jsonify(render(core.settings.view()))

    @d.route("/api/config", ("PUT",), summary="Update the configuration", body=ConfigBody,
             response=ConfigResponse, auth="admin")
    async def put_config() -> Any:
        """Validated (a 400 names the field), stored as an override that wins over the config file, applied at
        once where it can be; ``restart_required`` lists what waits for a restart, ``applied`` what changed now."""
        body = await parse_body(ConfigBody)
        values, names = changes(body)
        change = await core.settings.change(values, reset=body.reset or [], names=names)
        return jsonify(render(change.settings, change))
