"""LLM Inference Service API routes: alert rules (``/api/config/alerts``) and their history.

A rule's ``condition`` is ``<metric> <op> <threshold> [for <duration>]``
(docs/api-ops.md lists the metrics); the built-in rules made from
``alert_thresholds`` are listed too (``builtin: true``, ids ``threshold-...``)
and are changed through ``PUT /api/config``.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import ConfigDict, Field
from quart import jsonify

from llmd.core import Core
from llmd.core.alerts import AlertEvent, AlertRule
from llmd.http.body import parse_body, parse_query
from llmd.http.fields import PageNumber, PageSize, StrictModel
from llmd.http.format import iso, page_block
from llmd.http.routing import Dialect

Severity = Literal["info", "warning", "critical"]
Channel = Literal["journal", "webhook", "email"]
RULE_ID = "Rule id: alert-<n> (stored) or threshold-<key> (built in)."


class RuleBody(StrictModel):
    """``POST /api/config/alerts``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"name": "GPU busy", "condition": "gpu_utilization > 90", "severity": "warning", "enabled": True,
         "notification_channels": ["email", "webhook"]},
        {"name": "Hot GPU", "condition": "gpu_temperature >= 80 for 5m", "severity": "critical"}]})

    name: str = Field(min_length=1, max_length=100, description="Shown in notifications.")
    condition: str = Field(min_length=1, max_length=200, description=(
        "`<metric> <op> <threshold> [for <duration>]`, e.g. `error_rate > 0.05` or `queue_depth > 10 for 1m`."))
    severity: Severity = "warning"
    enabled: bool = True
    notification_channels: list[Channel] = Field(default=["journal"], max_length=3, description=(
        "Where it is sent besides the history and /ws/monitor: journal, webhook, email."))
    repeat_interval_s: Optional[float] = Field(default=None, ge=0, le=31_536_000, description=(
        "Notify again while it stays firing, every this many seconds; 0: once; null: alerts.repeat_interval_s."))
    description: str = Field(default="", max_length=1000)


class RuleUpdate(StrictModel):
    """``PUT /api/config/alerts/{alert_id}``: only the fields given change."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"condition": "cpu_percent > 95"}]})

    name: Optional[str] = Field(default=None, min_length=1, max_length=100)
    condition: Optional[str] = Field(default=None, min_length=1, max_length=200)
    severity: Optional[Severity] = None
    enabled: Optional[bool] = None
    notification_channels: Optional[list[Channel]] = Field(default=None, max_length=3)
    repeat_interval_s: Optional[float] = Field(default=None, ge=0, le=31_536_000)
    description: Optional[str] = Field(default=None, max_length=1000)


class PageQuery(StrictModel):
    """A page of rules."""

    page: PageNumber = 1
    size: PageSize = 20


class HistoryQuery(PageQuery):
    """A page of the alert history, newest first."""

    alert_id: Optional[str] = Field(default=None, min_length=1, max_length=64, description="Only this rule's events.")


def rule(r: AlertRule) -> dict[str, Any]:
    """One rule, with where it stands now."""
    c = r.condition
    return {"id": r.id, "name": r.name, "condition": str(c), "metric": c.metric, "operator": c.op,
            "threshold": c.threshold, "for_s": c.for_s, "severity": r.severity, "enabled": r.enabled,
            "notification_channels": list(r.channels), "repeat_interval_s": r.repeat_interval_s,
            "description": r.description, "builtin": r.builtin, "state": r.state, "since": iso(r.since),
            "last_value": r.last_value, "created_at": iso(r.created_at), "updated_at": iso(r.updated_at)}


def event(e: AlertEvent) -> dict[str, Any]:
    """One entry of the history: a rule that fired, fired again, or resolved."""
    return {"id": e.id, "alert_id": e.rule_id, "rule_name": e.rule_name, "severity": e.severity, "state": e.state,
            "condition": e.condition, "value": e.value, "message": e.message, "timestamp": iso(e.ts),
            "notified": e.notified}


def changes(body: RuleUpdate) -> dict[str, Any]:
    """The fields a PUT gives, named as the core names them."""
    out = body.model_dump(exclude_unset=True)
    if "notification_channels" in out:
        out["channels"] = out.pop("notification_channels")
    for key in ("name", "condition", "severity", "enabled", "channels", "description"):
        if key in out and out[key] is None:
            del out[key]  # null: unchanged (repeat_interval_s null means "the default" and is kept)
    return out


def register(d: Dialect, core: Core) -> None:
    """Declare the alert routes."""

    @d.route("/api/config/alerts", summary="List alert rules", query=PageQuery, auth="admin")
    async def list_rules() -> Any:
        """``{"items", "total", "page", "size", "pages"}``: the built-in rules, then the stored ones, each with
        ``state`` ok, pending or firing."""
        q = parse_query(PageQuery)
        return jsonify(page_block(await core.alerts.rules_page(q.page, q.size), rule))

    @d.route("/api/config/alerts", ("POST",), summary="Create an alert rule", body=RuleBody, auth="admin")
    async def create_rule() -> Any:
        """201 with the rule; a condition that does not parse is a 400 naming ``condition``."""
        b = await parse_body(RuleBody)
        created = await core.alerts.create_rule(b.name, b.condition, b.severity, b.enabled, b.notification_channels,
                                                b.repeat_interval_s, b.description)
        return jsonify(rule(created)), 201

    @d.route("/api/config/alerts/history", summary="Alert history", query=HistoryQuery, auth="admin")
    async def alert_history() -> Any:
        """Every firing (and repeat) and resolution, newest first, with what was notified where."""
        q = parse_query(HistoryQuery)
        return jsonify(page_block(await core.alerts.history(q.page, q.size, q.alert_id), event))

    @d.route("/api/config/alerts/<alert_id>", summary="Get an alert rule", auth="admin")
    async def get_rule(alert_id: str) -> Any:
        """One rule and its state."""
        return jsonify(rule(await core.alerts.get_rule(alert_id)))

    @d.route("/api/config/alerts/<alert_id>", ("PUT",), summary="Update an alert rule", body=RuleUpdate,
             auth="admin")
    async def update_rule(alert_id: str) -> Any:
        """Only the fields given change; a built-in rule is a 409 (change ``alert_thresholds`` instead)."""
        b = await parse_body(RuleUpdate)
        return jsonify(rule(await core.alerts.update_rule(alert_id, **changes(b))))

    @d.route("/api/config/alerts/<alert_id>", ("DELETE",), summary="Delete an alert rule", auth="admin")
    async def delete_rule(alert_id: str) -> Any:
        """The rule goes (a firing one resolves at the next sample); its history stays."""
        await core.alerts.delete_rule(alert_id)
        return jsonify({"id": alert_id, "deleted": True})

    @d.route("/api/config/alerts/<alert_id>/enable", ("POST",), summary="Enable an alert rule", auth="admin")
    async def enable_rule(alert_id: str) -> Any:
        """Evaluated again from the next sample."""
        return jsonify(rule(await core.alerts.set_enabled(alert_id, True)))

    @d.route("/api/config/alerts/<alert_id>/disable", ("POST",), summary="Disable an alert rule", auth="admin")
    async def disable_rule(alert_id: str) -> Any:
        """No longer evaluated; if it was firing, it resolves at the next sample."""
        return jsonify(rule(await core.alerts.set_enabled(alert_id, False)))
