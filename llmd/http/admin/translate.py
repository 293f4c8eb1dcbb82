"""Pure renderers of the admin API's shapes (what llmctl reads)."""

from __future__ import annotations

import dataclasses
from typing import Any

from llmd.core.deployment import DeploymentInfo
from llmd.core.models import ModelView
from llmd.core.monitor import Health, Status
from llmd.core.registry import Model


def model_fields(model: Model) -> dict[str, Any]:
    """A registered model's fields (no chat template body)."""
    return model.to_dict()


def model(view: ModelView) -> dict[str, Any]:
    """A model with its deployment state."""
    return {**model_fields(view.model), "state": view.state.value, "loaded": view.loaded}


def deployment(info: DeploymentInfo) -> dict[str, Any]:
    """A deployment's figures, every field, with its state as text."""
    return {**dataclasses.asdict(info), "state": info.state.value}


def health(h: Health) -> dict[str, Any]:
    """The daemon's health, every field."""
    return {"status": h.status, "model_loaded": h.model_loaded, "default_model": h.default_model,
            "store": "ok" if h.store_ok else "error", "shutting_down": h.shutting_down, "uptime_s": h.uptime_s,
            "active_streams": h.active_streams, "deployments": [deployment(d) for d in h.deployments],
            "auth": h.auth}


def status(s: Status) -> dict[str, Any]:
    """``llmctl status``: version, health, memory, request totals and where the daemon lives."""
    return {"version": s.version, "pid": s.pid, "engine": s.engine, "health": health(s.health),
            "memory_rss_bytes": s.memory_rss_bytes, "requests": dataclasses.asdict(s.requests),
            "state_dir": s.state_dir, "socket": s.socket, "listen": s.listen}
