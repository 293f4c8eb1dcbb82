"""Alert rules for the box: ``<metric> <op> <threshold> [for <duration>]``, evaluated after every sample.

A rule is one of two kinds. *Stored* rules (``alert-<n>``) are made through
the API and live in SQLite. *Built-in* rules (``threshold-<key>``) are made
from the ``[alerts]`` thresholds each time they are asked for, because
``PUT /api/config`` changes those while the daemon runs; a threshold of 0
means the rule does not exist.

The metrics sampler calls :meth:`Alerts.evaluate` with the figures of the
moment. Each enabled rule moves ``ok`` -> ``pending`` (the condition holds,
its ``for`` duration has not passed yet) -> ``firing`` -> (resolved) ->
``ok``. Firing and resolving write an ``alert_events`` row, publish the
event on the broker (topic ``alert.<rule id>``, for WebSocket feeds) and
notify the rule's channels in a background task: ``evaluate`` never waits
for a webhook or an SMTP server. A firing rule is recorded in SQLite with
the event that made it fire, so a restart keeps it firing and does not
notify it a second time.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Mapping

from llmd.config import AlertsConfig
from llmd.core.background import Background
from llmd.core.events import EventBroker
from llmd.core.types import Page
from llmd.errors import ConflictError, NotFoundError, ValidationError
from llmd.store.alerts import AlertsRepo

if TYPE_CHECKING:
    from llmd.core.alert_channels import Channels, NotificationCounters

log = logging.getLogger(__name__)

# The metrics a condition can name, with their units. The sampler passes their values to
# Alerts.evaluate; a metric it leaves out (no GPU, no request yet) has no data, and a condition on it is false.
METRICS: dict[str, str] = {
    "cpu_percent": "percent: CPU use of the box",
    "memory_percent": "percent: memory in use",
    "disk_percent": "percent: disk in use where the models are",
    "load_1m": "load average over 1 minute",
    "gpu_utilization": "percent: utilization of the busiest GPU",
    "gpu_memory_percent": "percent: memory in use on the fullest GPU",
    "gpu_temperature": "degrees Celsius: the hottest GPU",
    "gpu_power_usage": "watts: power drawn by the hungriest GPU",
    "queue_depth": "requests waiting, over all deployments",
    "active_slots": "slots generating, over all deployments",
    "error_rate": "0..1: failed requests over all requests of the last 5 minutes",
    "response_time": "seconds: mean response time over the last 5 minutes",
    "requests_per_second": "requests per second",
}


def _number(x: float) -> str:
    """A threshold as the grammar reads it back: no exponent, no trailing ``.0`` on a whole number."""
    if x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return format(Decimal(repr(x)), "f")


def _duration(seconds: float) -> str:
    """Whole seconds in the largest unit that holds them exactly: ``300`` -> ``5m``."""
    s = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def _elapsed(seconds: float) -> str:
    """A rough length of time for messages: ``45s``, ``12m``, ``3h``, ``2d``."""
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


def _value(v: float) -> str:
    """A metric's value for a message: three decimals are plenty for percent, seconds and rates."""
    return str(round(v, 3)) if abs(v) >= 0.01 or v == 0 else f"{v:.3g}"


@dataclass(frozen=True)
class Condition:
    """A parsed condition: ``metric op threshold``, true for ``for_s`` seconds before the rule fires."""

    metric: str
    op: str
    threshold: float
    for_s: int = 0

    OPS: ClassVar[tuple[str, ...]] = (">", ">=", "<", "<=", "==", "!=")
    MAX_LENGTH: ClassVar[int] = 200
    MAX_FOR_S: ClassVar[int] = 30 * 86400  # a longer "for" is almost surely a typo (5d meant as 5m?)

    def holds(self, value: float) -> bool:
        """Whether ``value`` meets the condition (the duration aside)."""
        t = self.threshold
        match self.op:
            case ">":
                return value > t
            case ">=":
                return value >= t
            case "<":
                return value < t
            case "<=":
                return value <= t
            case "==":
                return value == t
            case "!=":
                return value != t
        raise ValueError(f"unknown operator {self.op!r}")  # a Condition is only made by parse_condition

    def __str__(self) -> str:
        text = f"{self.metric} {self.op} {_number(self.threshold)}"
        return f"{text} for {_duration(self.for_s)}" if self.for_s else text

    def explain(self) -> str:
        """The condition without its metric, for messages: ``> 90 for 5m``."""
        return str(self)[len(self.metric) + 1:]


def parse_condition(text: Any) -> Condition:
    """Parse ``<metric> <op> <threshold> [for <duration>]`` (e.g. ``gpu_temperature >= 80 for 5m``).

    Metrics are the names of :data:`METRICS` (lower case); operators ``> >= < <= == !=``; the threshold a
    finite decimal number; the duration a whole number of ``s``, ``m``, ``h`` or ``d``. Read with regular
    expressions, token by token; nothing of the text is ever evaluated. Raises :class:`ValidationError`
    (field ``condition``) that says what was expected where.
    """
    def bad(message: str) -> ValidationError:
        return ValidationError(message, field="condition",
                               details={"field": "condition",
                                        "expected": "<metric> <op> <threshold> [for <duration>]"})

    if not isinstance(text, str):
        raise bad("condition must be a string: <metric> <op> <threshold> [for <duration>]")
    if len(text) > Condition.MAX_LENGTH:
        raise bad(f"condition is longer than {Condition.MAX_LENGTH} characters")
    if not text.strip():
        raise bad("condition is empty: expected <metric> <op> <threshold> [for <duration>],"
                  " e.g. 'gpu_temperature > 80 for 5m'")
    known = ", ".join(METRICS)
    ops = ", ".join(Condition.OPS)
    pos = 0

    def skip() -> None:
        nonlocal pos
        while pos < len(text) and text[pos].isspace():
            pos += 1

    def word() -> str:
        """The run of characters up to the next space."""
        nonlocal pos
        m = re.compile(r"\S+").match(text, pos)
        pos = m.end() if m else pos
        return m.group() if m else ""

    skip()
    m = re.compile(r"[A-Za-z_][A-Za-z0-9_]*", re.ASCII).match(text, pos)
    if m is None:
        raise bad(f"expected a metric name at the start, got {word()!r}: one of {known}")
    metric = m.group()
    pos = m.end()
    if metric not in METRICS:
        raise bad(f"unknown metric {metric!r}: one of {known}")
    skip()
    m = re.compile(r"[<>=!]+").match(text, pos)
    if m is None:
        got = word()
        raise bad(f"expected an operator ({ops}) after {metric!r}, got " + (repr(got) if got else "the end"))
    op = m.group()
    pos = m.end()
    if op not in Condition.OPS:
        raise bad(f"unknown operator {op!r}: one of {ops}")
    skip()
    number = word()
    if not number:
        raise bad(f"expected a number after {op!r}, got the end")
    if not re.fullmatch(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)", number):
        raise bad(f"threshold must be a finite decimal number (e.g. 90, 0.05, -1.5), got {number!r}")
    threshold = float(number)
    if not math.isfinite(threshold):
        raise bad(f"threshold {number!r} is too large")
    skip()
    for_s = 0
    if pos < len(text):
        keyword = word()
        if keyword != "for":
            raise bad(f"expected 'for <duration>' or the end after the threshold, got {keyword!r}")
        skip()
        duration = word()
        m = re.fullmatch(r"([0-9]+)([smhd])", duration)
        if m is None:
            raise bad("duration must be a whole number followed by s, m, h or d (e.g. 30s, 5m, 1h), got "
                      + (repr(duration) if duration else "the end"))
        for_s = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        if for_s > Condition.MAX_FOR_S:
            raise bad(f"duration {duration!r} is longer than {_duration(Condition.MAX_FOR_S)}")
        skip()
        if pos < len(text):
            raise bad(f"unexpected {word()!r} after the duration: the condition ends there")
    return Condition(metric, op, threshold, for_s)


@dataclass(frozen=True)
class AlertRule:
    """A rule and where it stands: ``state`` ok, pending or firing since ``since``, at ``last_value``."""

    id: str  # alert-<n> (stored) or threshold-<key> (built in, from [alerts])
    name: str
    condition: Condition
    severity: str  # info | warning | critical
    enabled: bool
    channels: tuple[str, ...]  # journal, webhook, email; empty: history and WebSocket only
    repeat_interval_s: float | None  # None: alerts.repeat_interval_s; 0: notified once
    description: str
    builtin: bool
    created_at: float
    updated_at: float
    state: str = "ok"
    since: float | None = None
    last_value: float | None = None


@dataclass(frozen=True)
class AlertEvent:
    """A rule fired (again) or resolved: a row of the history, a broker event, a notification."""

    id: int
    rule_id: str
    rule_name: str
    severity: str
    state: str  # firing | resolved
    condition: str
    value: float | None  # None: the metric had no data
    message: str
    ts: float
    notified: dict[str, str] = field(default_factory=dict)  # channel -> ok | failed (once the sends ended)


@dataclass
class _Track:
    """A rule that is not ok: pending or firing, since when, and the rule as last evaluated."""

    rule: AlertRule  # a deleted rule's last definition is what its resolution names
    state: str
    since: float
    last_notified: float | None = None
    last_value: float | None = None


class Alerts:
    """Alert rules, their evaluation after each sample, their history and notifications."""

    SEVERITIES: ClassVar[tuple[str, ...]] = ("info", "warning", "critical")
    CHANNELS: ClassVar[tuple[str, ...]] = ("journal", "webhook", "email")
    # The built-in rules: [alerts] key -> (metric, name); each is "<metric> > <the key's value>".
    BUILTINS: ClassVar[dict[str, tuple[str, str]]] = {
        "gpu_utilization_high": ("gpu_utilization", "GPU utilization high"),
        "gpu_temperature_high": ("gpu_temperature", "GPU temperature high"),
        "response_time_high": ("response_time", "Response time high"),
        "error_rate_high": ("error_rate", "Error rate high"),
    }
    BUILTIN_CONFLICT: ClassVar[str] = "built-in threshold rule: change alert_thresholds in PUT /api/config"
    MAX_NAME: ClassVar[int] = 100
    MAX_DESCRIPTION: ClassVar[int] = 1000
    MAX_PAGE_SIZE: ClassVar[int] = 1000

    def __init__(self, config: AlertsConfig, repo: AlertsRepo, events: EventBroker, background: Background,
                 channels: Channels, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config  # read on every call: thresholds and intervals change at run time
        self.repo = repo
        self.events = events
        self.background = background
        self.channels = channels
        self.clock = clock
        self.started_at = clock()  # the built-in rules' creation time: they exist from the start
        self._tracks: dict[str, _Track] = {}
        self._loaded = False
        # One evaluation at a time: two overlapping ones could both fire the same rule.
        self._lock = asyncio.Lock()

    @property
    def counters(self) -> NotificationCounters:
        """Notifications delivered and failed, per channel."""
        return self.channels.counters

    # -- rules -----------------------------------------------------------
    def _builtin_channels(self) -> tuple[str, ...]:
        chosen = [c.strip() for c in self.config.threshold_channels.split(",")]
        return tuple(dict.fromkeys(c for c in chosen if c in self.CHANNELS))

    def _builtins(self) -> list[AlertRule]:
        """The built-in rules as the config stands now (a threshold of 0 or less: no rule)."""
        out = []
        for key, (metric, name) in self.BUILTINS.items():
            threshold = float(getattr(self.config, key))
            if not (math.isfinite(threshold) and threshold > 0):
                continue
            out.append(AlertRule(
                id=f"threshold-{key}", name=name, condition=Condition(metric, ">", threshold, 0),
                severity="warning", enabled=True, channels=self._builtin_channels(), repeat_interval_s=None,
                description=f"Built in: {metric} above alerts.{key}; change it in the configuration (0 turns"
                            " it off).",
                builtin=True, created_at=self.started_at, updated_at=self.started_at))
        return out

    @staticmethod
    def _stored(row: Mapping[str, Any]) -> AlertRule | None:
        try:
            condition = parse_condition(row["condition"])
        except ValidationError as exc:
            # Written by an older or newer llmd whose metrics differ: shown nowhere, evaluated never,
            # but still deletable by its id.
            log.warning("alert rule alert-%d: stored condition %r is not valid here (%s); ignored",
                        row["id"], row["condition"], exc.message)
            return None
        return AlertRule(
            id=f"alert-{row['id']}", name=row["name"], condition=condition, severity=row["severity"],
            enabled=bool(row["enabled"]), channels=tuple(row["channels"]),
            repeat_interval_s=row["repeat_interval_s"], description=row["description"], builtin=False,
            created_at=row["created_at"], updated_at=row["updated_at"])

    async def _definitions(self) -> list[AlertRule]:
        """Every rule as defined (state ok): built-ins first, then the stored ones by id."""
        stored = [self._stored(r) for r in await self.repo.list_rules()]
        return self._builtins() + [r for r in stored if r is not None]

    def _with_state(self, rule: AlertRule) -> AlertRule:
        track = self._tracks.get(rule.id)
        if track is None:
            return rule
        return replace(rule, state=track.state, since=track.since, last_value=track.last_value)

    @staticmethod
    def _not_found(rule_id: str) -> NotFoundError:
        return NotFoundError(f"no alert rule {rule_id!r}", field="rule_id", details={"rule_id": rule_id})

    def _row_id(self, rule_id: str) -> int:
        """The row id of a stored rule's id; a built-in's id is a conflict, anything else not found."""
        if not isinstance(rule_id, str):
            raise self._not_found(str(rule_id))
        if rule_id.startswith("threshold-") and rule_id[len("threshold-"):] in self.BUILTINS:
            raise ConflictError(self.BUILTIN_CONFLICT, field="rule_id", details={"rule_id": rule_id})
        m = re.fullmatch(r"alert-([1-9][0-9]{0,17})", rule_id)
        if m is None:
            raise self._not_found(rule_id)
        return int(m.group(1))

    async def list_rules(self) -> list[AlertRule]:
        """Every rule with its state: the built-in ones first, then the stored ones by id."""
        return [self._with_state(r) for r in await self._definitions()]

    async def rules_page(self, page: int, size: int) -> Page[AlertRule]:
        """One page of :meth:`list_rules` (``page`` from 1)."""
        rules = await self.list_rules()
        return Page(rules[(page - 1) * size:page * size], len(rules), page, size)

    async def get_rule(self, rule_id: str) -> AlertRule:
        """One rule with its state; :class:`NotFoundError` if there is none."""
        for rule in self._builtins():
            if rule.id == rule_id:
                return self._with_state(rule)
        try:
            row_id = self._row_id(rule_id)
        except ConflictError:  # a built-in whose threshold is 0: it does not exist now
            raise self._not_found(rule_id) from None
        row = await self.repo.get_rule(row_id)
        rule = self._stored(row) if row is not None else None
        if rule is None:
            raise self._not_found(rule_id)
        return self._with_state(rule)

    # validation: each raises ValidationError naming the field as the APIs call it
    def _check_name(self, name: Any) -> str:
        if not isinstance(name, str) or not name.strip():
            raise ValidationError("name must be a non-empty string", field="name")
        name = name.strip()
        if len(name) > self.MAX_NAME:
            raise ValidationError(f"name must be at most {self.MAX_NAME} characters", field="name")
        if any(ord(c) < 32 or ord(c) == 127 for c in name):
            # it becomes an email subject and a log line: no line breaks or control characters
            raise ValidationError("name must not contain control characters", field="name")
        return name

    def _check_severity(self, severity: Any) -> str:
        if severity not in self.SEVERITIES:
            raise ValidationError(f"severity must be one of {', '.join(self.SEVERITIES)}", field="severity")
        return severity

    def _check_channels(self, channels: Any) -> list[str]:
        expected = f"notification_channels must be a list of {', '.join(self.CHANNELS)} (or empty)"
        if isinstance(channels, (str, bytes)) or not isinstance(channels, Iterable):
            raise ValidationError(expected, field="notification_channels")
        out = list(channels)
        for c in out:
            if c not in self.CHANNELS:
                raise ValidationError(f"unknown channel {c!r}: {expected}", field="notification_channels")
        return list(dict.fromkeys(out))  # a channel named twice is notified once

    @staticmethod
    def _check_repeat(value: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValidationError("repeat_interval_s must be a number of seconds >= 0 (0: never repeat), or null",
                                  field="repeat_interval_s")
        return float(value)

    def _check_description(self, value: Any) -> str:
        if not isinstance(value, str) or len(value) > self.MAX_DESCRIPTION:
            raise ValidationError(f"description must be a string of at most {self.MAX_DESCRIPTION} characters",
                                  field="description")
        return value

    @staticmethod
    def _check_enabled(value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValidationError("enabled must be true or false", field="enabled")
        return value

    async def create_rule(self, name: str, condition: str, severity: str = "warning", enabled: bool = True,
                          channels: Iterable[str] = ("journal",), repeat_interval_s: float | None = None,
                          description: str = "") -> AlertRule:
        """Store a new rule after checking every field; it is evaluated from the next sample on."""
        row = await self.repo.add_rule(
            name=self._check_name(name), condition=str(parse_condition(condition)),
            severity=self._check_severity(severity), enabled=self._check_enabled(enabled),
            channels=self._check_channels(channels), repeat_interval_s=self._check_repeat(repeat_interval_s),
            description=self._check_description(description), now=self.clock())
        rule = self._stored(row)
        assert rule is not None  # its condition was just parsed
        return rule

    async def update_rule(self, rule_id: str, **changes: Any) -> AlertRule:
        """Change the given fields of a stored rule (``name``, ``condition``, ``severity``, ``enabled``,
        ``channels``, ``repeat_interval_s``, ``description``); the others stay as they are."""
        checks: dict[str, Callable[[Any], Any]] = {
            "name": self._check_name, "condition": lambda c: str(parse_condition(c)),
            "severity": self._check_severity, "enabled": self._check_enabled, "channels": self._check_channels,
            "repeat_interval_s": self._check_repeat, "description": self._check_description,
        }
        row_id = self._row_id(rule_id)
        for key in changes:
            if key not in checks:
                raise ValidationError(f"unknown field {key!r}: one of {', '.join(checks)}", field=key)
        values = {key: checks[key](value) for key, value in changes.items()}
        if values:
            row = await self.repo.update_rule(row_id, values, self.clock())
        else:
            row = await self.repo.get_rule(row_id)
        rule = self._stored(row) if row is not None else None
        if rule is None:
            raise self._not_found(rule_id)
        return self._with_state(rule)

    async def set_enabled(self, rule_id: str, enabled: bool) -> AlertRule:
        """Enable or disable a stored rule; a disabled firing rule resolves at the next evaluation."""
        return await self.update_rule(rule_id, enabled=enabled)

    async def delete_rule(self, rule_id: str) -> None:
        """Delete a stored rule (its history stays); a firing one resolves at the next evaluation."""
        if not await self.repo.delete_rule(self._row_id(rule_id)):
            raise self._not_found(rule_id)

    # -- history ---------------------------------------------------------
    async def history(self, page: int, size: int, rule_id: str | None = None) -> Page[AlertEvent]:
        """The events, newest first, ``size`` to a page (from 1); of one rule when ``rule_id`` is given."""
        if isinstance(page, bool) or not isinstance(page, int) or page < 1:
            raise ValidationError("page must be a whole number >= 1", field="page")
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= self.MAX_PAGE_SIZE:
            raise ValidationError(f"size must be a whole number from 1 to {self.MAX_PAGE_SIZE}", field="size")
        rows, total = await self.repo.events(rule_id=rule_id, limit=size, offset=(page - 1) * size)
        items = [AlertEvent(r["id"], r["rule_id"], r["rule_name"], r["severity"], r["state"], r["condition"],
                            r["value"], r["message"], r["ts"], r["notified"]) for r in rows]
        return Page(items, total, page, size)

    async def prune_history(self, keep_days: float, now: float | None = None) -> int:
        """Delete the events older than ``keep_days`` days (0: keep everything); how many went."""
        if keep_days <= 0:
            return 0
        return await self.repo.prune_events((self.clock() if now is None else now) - keep_days * 86400)

    # -- state -----------------------------------------------------------
    def firing(self) -> list[AlertRule]:
        """The rules firing now, longest firing first (from memory: cheap enough for every /metrics)."""
        tracks = sorted((t for t in self._tracks.values() if t.state == "firing"), key=lambda t: t.since)
        return [replace(t.rule, state=t.state, since=t.since, last_value=t.last_value) for t in tracks]

    async def load(self) -> None:
        """Restore the firing rules recorded before a restart (they stay firing without a new notification)."""
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        self._tracks.clear()
        current = {r.id: r for r in await self._definitions()}
        for row in await self.repo.states():
            rule_id = row["rule_id"]
            rule = current.get(rule_id)
            if rule is None:  # deleted (or its threshold set to 0) while llmd was down: resolved next
                try:
                    condition = parse_condition(row["condition"])
                except ValidationError:
                    log.warning("alert %s: recorded condition %r is not valid here; forgotten", rule_id,
                                row["condition"])
                    await self.repo.save_state(rule_id, None)
                    continue
                rule = AlertRule(
                    id=rule_id, name=row["rule_name"], condition=condition, severity=row["severity"],
                    enabled=True, channels=tuple(row["channels"]), repeat_interval_s=None, description="",
                    builtin=rule_id.startswith("threshold-"), created_at=row["since"], updated_at=row["since"])
            self._tracks[rule_id] = _Track(rule, row["state"], row["since"], row["last_notified"],
                                           row["last_value"])
        self._loaded = True

    async def evaluate(self, values: Mapping[str, float], now: float) -> None:
        """Move every rule on with the metric values of the moment ``now`` (a missing metric: no data).

        Writes and publishes what fired or resolved and hands the notifications to background tasks;
        it never waits for a channel. A rule whose step fails (the database) is logged and retried at the
        next call; the others go on.
        """
        async with self._lock:
            if not self._loaded:
                await self._load()
            rules = await self._definitions()
            enabled = {r.id: r for r in rules if r.enabled}
            for rule in enabled.values():
                try:
                    await self._step(rule, _finite(values.get(rule.condition.metric)), now)
                except Exception:  # noqa: BLE001 - one rule's failure must not stop the others
                    log.exception("alert %s: evaluation failed", rule.id)
            exists = {r.id for r in rules}
            for rule_id in [k for k in self._tracks if k not in enabled]:
                if rule_id in exists:
                    reason = "rule disabled"
                elif rule_id.startswith("threshold-"):
                    reason = "threshold turned off in the configuration"
                else:
                    reason = "rule deleted"
                try:
                    await self._leave(self._tracks[rule_id], now, None, reason)
                except Exception:  # noqa: BLE001 - as above
                    log.exception("alert %s: resolving failed", rule_id)

    async def _step(self, rule: AlertRule, value: float | None, now: float) -> None:
        track = self._tracks.get(rule.id)
        if value is None or not rule.condition.holds(value):
            if track is not None:
                track.rule = rule
                await self._leave(track, now, value, None)
            return
        if track is None or (track.state == "pending" and track.rule.condition != rule.condition):
            # Pending is kept in memory only: after a restart the duration is counted again, since
            # nobody watched the metric while llmd was down.
            track = self._tracks[rule.id] = _Track(rule, "pending", now)
        track.rule = rule
        track.last_value = value
        if track.state == "pending":
            if now - track.since >= rule.condition.for_s:
                await self._fire(track, now, value, repeat=False)
            return
        repeat = rule.repeat_interval_s if rule.repeat_interval_s is not None else self.config.repeat_interval_s
        last = track.last_notified if track.last_notified is not None else track.since
        if repeat > 0 and now - last >= repeat:
            await self._fire(track, now, value, repeat=True)

    async def _fire(self, track: _Track, now: float, value: float, *, repeat: bool) -> None:
        """Record, publish and notify a firing (or, with ``repeat``, a still firing) rule."""
        rule = track.rule
        since = track.since if repeat else now
        message = f"{rule.condition.metric} is {_value(value)} ({rule.condition.explain()})"
        if repeat:
            message += f": still firing, for {_elapsed(now - since)}"
        state = {"state": "firing", "since": since, "last_notified": now, "last_value": value,
                 "rule_name": rule.name, "severity": rule.severity, "condition": str(rule.condition),
                 "channels": list(rule.channels)}
        event = await self._record(rule, "firing", value, message, now, state)
        # only now that it is written: a failed write leaves the rule as it was, to be fired next time
        track.state, track.since, track.last_notified = "firing", since, now
        self._announce(event, rule.channels)

    async def _leave(self, track: _Track, now: float, value: float | None, reason: str | None) -> None:
        """Back to ok: a pending rule silently, a firing one with a resolved event."""
        rule = track.rule
        if track.state != "firing":
            del self._tracks[rule.id]
            return
        metric = rule.condition.metric
        if reason is not None:
            message = f"{reason} (rule: {rule.condition})"
        elif value is None:
            message = f"{metric} has no data (rule: {rule.condition})"
        else:
            message = f"{metric} is back to {_value(value)} (rule: {rule.condition})"
        event = await self._record(rule, "resolved", value, message, now, None)
        del self._tracks[rule.id]
        self._announce(event, rule.channels)

    async def _record(self, rule: AlertRule, state: str, value: float | None, message: str, now: float,
                      firing: dict[str, Any] | None) -> AlertEvent:
        row = {"rule_id": rule.id, "rule_name": rule.name, "severity": rule.severity, "state": state,
               "condition": str(rule.condition), "value": value, "message": message, "ts": now}
        event_id = await self.repo.record_event(row, rule.id, firing)
        return AlertEvent(event_id, rule.id, rule.name, rule.severity, state, str(rule.condition), value,
                          message, now)

    def _announce(self, event: AlertEvent, channels: tuple[str, ...]) -> None:
        self.events.publish(f"alert.{event.rule_id}", event)
        if channels:
            self.background.spawn(self._notify(event, channels))

    async def _notify(self, event: AlertEvent, channels: tuple[str, ...]) -> None:
        """Send to every channel at once and record how each went (a background task)."""
        results = await asyncio.gather(*(self.channels.send(c, event) for c in channels), return_exceptions=True)
        notified = {}
        for channel, result in zip(channels, results, strict=True):
            if isinstance(result, BaseException):  # Channels.send never raises; a substitute might
                log.warning("alert %s: %s notification raised %s", event.rule_id, channel, type(result).__name__)
            notified[channel] = "ok" if result is True else "failed"
        try:
            await self.repo.set_notified(event.id, notified)
        except Exception:  # noqa: BLE001 - the notification went out; only its record is missing
            log.exception("alert %s: recording the notification of event %d failed", event.rule_id, event.id)


def _finite(value: Any) -> float | None:
    """A metric's value, or None when it has none that a condition could be tested on."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)
