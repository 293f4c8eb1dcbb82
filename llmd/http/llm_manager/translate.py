"""Pure renderers of the LLM Manager API's shapes: deployments, downloads, hub records, system figures."""

from __future__ import annotations

from typing import Any

from llmd.core.deployment import DeploymentInfo
from llmd.core.downloads import DownloadEvent, DownloadQueue, DownloadTask, Storage
from llmd.core.fleet import DeploymentHealth
from llmd.core.hub import HubAnswer
from llmd.core.modellog import LogEntry
from llmd.core.monitor import SystemHealth, SystemLoad
from llmd.core.registry import Model
from llmd.core.system import SystemResources
from llmd.core.types import DeploymentState
from llmd.http.format import gib, hms, human_count, human_size, iso, memory_fields, pagination, round_or_none

# -- deployments -------------------------------------------------------------------------


def status(state: DeploymentState) -> str:
    """The state in this API's words: the core's brief ``pending`` shows as ``starting``."""
    return "starting" if state is DeploymentState.PENDING else state.value


def deployment(d: DeploymentInfo, host: str) -> dict[str, Any]:
    """A deployment in this API's field names (plus llmd's own figures)."""
    return {
        "deployment_id": d.deployment_id,
        "model_id": d.model,
        "model_source": d.model_source,
        "status": status(d.state),
        "host": host,
        "port": d.port,
        "gpu_memory_utilization": d.gpu_memory_utilization,
        "max_model_len": d.settings.get("n_ctx"),
        "created_at": iso(d.created_at),
        "started_at": iso(d.started_at),
        "stopped_at": iso(d.stopped_at),
        "last_used": iso(d.last_used),
        "idle_s": d.idle_s,
        "pinned": d.pinned,
        **memory_fields(d),
        "error": d.error,
        "stop_reason": d.stop_reason,
        "note": d.note,
        "device": d.device,
        "queued": d.queued,
        "active": d.active,
        "settings": d.settings,
        "endpoints": {"chat": f"/api/chat/{d.deployment_id}", "completions": f"/api/completions/{d.deployment_id}"},
    }


def deployment_health(h: DeploymentHealth) -> dict[str, Any]:
    """``GET /api/deployments/{id}/health``."""
    d = h.info
    return {"deployment_id": d.deployment_id, "model_id": d.model, "status": h.verdict,
            "healthy": h.verdict == "healthy", "deployment_status": status(d.state), "error": d.error,
            "queued": d.queued, "active": d.active, "uptime_s": h.uptime_s, "checked_at": iso(h.checked_at)}


def model_info(d: DeploymentInfo, model: Model) -> dict[str, Any]:
    """``GET /api/deployments/{id}/model-info``: the registry entry with the deployment's runtime figures."""
    return {**model.to_dict(), "model_id": model.name, "has_chat_template": bool(model.chat_template),
            "chat_supported": bool(model.chat_template), "deployment_id": d.deployment_id,
            "status": status(d.state), "settings": d.settings, "device": d.device, **memory_fields(d)}


def log_entry(e: LogEntry) -> dict[str, Any]:
    """One log line: ``{"ts", "level", "message", "timestamp"}``."""
    return {"ts": e.ts, "level": e.level, "message": e.message, "timestamp": iso(e.ts)}


def follow_entry(e: LogEntry) -> dict[str, Any]:
    """One followed log line: ``{"ts", "level", "message"}``."""
    return {"ts": e.ts, "level": e.level, "message": e.message}


# -- downloads -----------------------------------------------------------------------------

def download(t: DownloadTask) -> dict[str, Any]:
    """A download task with sizes, speed and ETA written as the document shows them (``500MB``, ``00:01:00``)."""
    out = {
        "id": t.id, "task_id": t.id, "model_id": t.model_id, "source": t.source, "filename": t.filename,
        "quantization": t.quantization, "revision": t.revision, "status": t.status, "phase": t.phase,
        "progress": round(t.progress, 2),
        "downloaded_size": human_size(t.downloaded_bytes), "total_size": human_size(t.total_bytes),
        "speed": f"{human_size(t.speed_bps)}/s", "eta": hms(t.eta_s),
        "downloaded_bytes": t.downloaded_bytes, "total_bytes": t.total_bytes, "speed_bps": round(t.speed_bps),
        "eta_seconds": round_or_none(t.eta_s, 1),
        "files": [{"name": f.name, "size": f.size, "sha256": f.sha256, "path": f.path} for f in t.files],
        "model_name": t.model_name, "message": t.message, "error": t.error, "error_code": t.error_code,
        "error_details": t.error_details, "created_at": iso(t.created_at), "updated_at": iso(t.updated_at),
        "started_at": iso(t.started_at), "completed_at": iso(t.finished_at),
    }
    if t.position is not None:
        out["position"] = t.position
    return out


def download_event(e: DownloadEvent, *, one: bool = False) -> dict[str, Any]:
    """A download change as one SSE or WebSocket message; ``one``: the snapshot of a single followed task."""
    if e.kind == "snapshot":
        if one:
            return {"type": "snapshot", "task": download(e.tasks[0])}
        return {"type": "snapshot", "tasks": [download(t) for t in e.tasks]}
    task = download(e.tasks[0])
    return {"type": e.kind, "task_id": task["id"], "task": task}


def download_queue(q: DownloadQueue) -> dict[str, Any]:
    """``GET /api/downloads/queue``."""
    return {"max_concurrent": q.max_concurrent, "active": [download(t) for t in q.active],
            "pending": [download(t) for t in q.pending], "paused": [download(t) for t in q.paused],
            "active_count": len(q.active), "pending_count": len(q.pending), "paused_count": len(q.paused),
            "total_speed_bps": round(q.total_speed_bps)}


def storage(s: Storage) -> dict[str, Any]:
    """``GET /api/downloads/storage``."""
    return {"models_dir": s.models_dir, "total_bytes": s.total_bytes, "used_bytes": s.used_bytes,
            "free_bytes": s.free_bytes, "total_gb": gib(s.total_bytes), "used_gb": gib(s.used_bytes),
            "free_gb": gib(s.free_bytes), "usage_percent": round(s.usage_percent, 1),
            "models_bytes": s.models_bytes, "models_size": human_size(s.models_bytes),
            "partial_bytes": s.partial_bytes, "partial_size": human_size(s.partial_bytes),
            "disk_margin_mb": round(s.margin_bytes / (1 << 20)), "reserved_bytes": s.reserved_bytes,
            "reserved": human_size(s.reserved_bytes), "available_for_downloads_bytes": s.available_for_downloads_bytes}


# -- hub -------------------------------------------------------------------------------------

def hub_item(item: dict[str, Any]) -> dict[str, Any]:
    """A hub record with its times as ISO text and its parameter count as ``7B``."""
    out = dict(item)
    for key in ("created_at", "updated_at"):
        if key in out:
            out[key] = iso(out[key])
    if "parameters" in out:
        out["parameters"] = human_count(out["parameters"])
    return out


def hub_answer(a: HubAnswer, **extra: Any) -> dict[str, Any]:
    """Hub records, with where they came from (``from_cache``, ``cache_age_s``, ``hub_error``)."""
    out: dict[str, Any] = {"items": [hub_item(i) for i in a.items], **extra, "from_cache": a.from_cache,
                           "cache_age_s": round_or_none(a.cache_age_s, 3)}
    if a.page is not None:
        out["pagination"] = pagination(a.page)
    if a.hub_error:
        out["hub_error"] = a.hub_error
    return out


def hub_info(a: HubAnswer) -> dict[str, Any]:
    """One hub record with where it came from."""
    out = {**hub_item(a.items[0]), "from_cache": a.from_cache, "cache_age_s": round_or_none(a.cache_age_s, 3)}
    if a.hub_error:
        out["hub_error"] = a.hub_error
    return out


def hub_stats(stats: dict[str, Any]) -> dict[str, Any]:
    """``GET /api/models/stats`` with its times as ISO text."""
    catalog = {src: {"cached_models": c["cached_models"], "last_sync": iso(c["last_sync"]),
                     "oldest_entry": iso(c["oldest_entry"]), "newest_entry": iso(c["newest_entry"])}
               for src, c in stats["catalog"].items()}
    return {**stats, "catalog": catalog}


def hub_sync(result: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/models/sync`` with its times as ISO text."""
    synced = {src: {**v, "synced_at": iso(v["synced_at"])} for src, v in result["synced"].items()}
    return {**result, "synced": synced}


# -- system ----------------------------------------------------------------------------------

def resources(r: SystemResources) -> dict[str, Any]:
    """``GET /api/system/resources``: sizes in GB (GiB), as the document shows them."""
    gpu: dict[str, Any] = {"available": r.gpu.available, "devices": [
        {"index": g.index, "name": g.name, "memory_total_gb": gib(g.memory_total_bytes),
         "memory_used_gb": gib(g.memory_used_bytes), "memory_free_gb": gib(g.memory_free_bytes),
         "utilization_percent": g.utilization_percent} for g in r.gpu.devices]}
    if r.gpu.reason:
        gpu["reason"] = r.gpu.reason
    return {
        "cpu": {"usage_percent": r.cpu.usage_percent, "cores": r.cpu.cores, "physical_cores": r.cpu.physical_cores},
        "memory": {"total_gb": gib(r.memory.total_bytes), "used_gb": gib(r.memory.used_bytes),
                   "available_gb": gib(r.memory.available_bytes), "usage_percent": r.memory.usage_percent},
        "disk": {"path": r.disk.path, "total_gb": gib(r.disk.total_bytes), "used_gb": gib(r.disk.used_bytes),
                 "free_gb": gib(r.disk.free_bytes), "usage_percent": round(r.disk.usage_percent, 1)},
        "gpu": gpu,
    }


def load(s: SystemLoad) -> dict[str, Any]:
    """``GET /api/system/load``."""
    m, p = s.machine, s.machine.process
    return {
        "load_average": {"1m": round(m.load_1m, 2), "5m": round(m.load_5m, 2), "15m": round(m.load_15m, 2)},
        "load_per_core": round(m.load_per_core, 2),
        "cpu_percent_per_core": m.cpu_percent_per_core,
        "cores": m.cores,
        "process": {"pid": p.pid, "rss_gb": gib(p.rss_bytes), "rss_bytes": p.rss_bytes, "threads": p.threads,
                    "cpu_percent": p.cpu_percent},
        "boot_time": m.boot_time,
        "uptime_s": round(m.uptime_s, 1),
        "llmd": {"deployments_running": s.llmd.deployments_running,
                 "generations_active": s.llmd.generations_active,
                 "generations_queued": s.llmd.generations_queued, "active_streams": s.llmd.active_streams},
    }


def system_health(h: SystemHealth) -> dict[str, Any]:
    """``GET /api/system/health``: each check's status and what it looked at (free disk in MB)."""
    checks: dict[str, Any] = {}
    for name, c in h.checks.items():
        details = dict(c.details)
        if "free_bytes" in details:
            details["free_mb"] = details.pop("free_bytes") // (1 << 20)
            details["margin_mb"] = details.pop("margin_bytes") // (1 << 20)
        checks[name] = {"status": c.status, **details}
    return {"status": h.status, "checks": checks, "version": h.version}
