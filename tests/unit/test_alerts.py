"""Alert rules: the condition grammar, the rules' CRUD and the state machine driven by a fake clock."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmd.config import AlertsConfig
from llmd.core.alert_channels import NotificationCounters
from llmd.core.alerts import METRICS, AlertEvent, Alerts, Condition, parse_condition
from llmd.core.background import Background
from llmd.core.events import EventBroker
from llmd.errors import ConflictError, NotFoundError, ValidationError
from llmd.store import Store

T0 = 1_800_000_000.0


# -- the grammar -------------------------------------------------------------
@pytest.mark.parametrize(("text", "metric", "op", "threshold", "for_s", "canonical"), [
    ("gpu_utilization > 90", "gpu_utilization", ">", 90.0, 0, "gpu_utilization > 90"),
    ("gpu_temperature >= 80 for 5m", "gpu_temperature", ">=", 80.0, 300, "gpu_temperature >= 80 for 5m"),
    ("error_rate > 0.05", "error_rate", ">", 0.05, 0, "error_rate > 0.05"),
    ("response_time > 2.0", "response_time", ">", 2.0, 0, "response_time > 2"),
    ("queue_depth > 10", "queue_depth", ">", 10.0, 0, "queue_depth > 10"),
    ("cpu_percent > 0 for 0s", "cpu_percent", ">", 0.0, 0, "cpu_percent > 0"),
    ("  memory_percent<=  -1.5   for   30s ", "memory_percent", "<=", -1.5, 30, "memory_percent <= -1.5 for 30s"),
    ("load_1m==.5", "load_1m", "==", 0.5, 0, "load_1m == 0.5"),
    ("disk_percent != +3. for 1h", "disk_percent", "!=", 3.0, 3600, "disk_percent != 3 for 1h"),
    ("active_slots < 1 for 90s", "active_slots", "<", 1.0, 90, "active_slots < 1 for 90s"),
    ("requests_per_second > 0.00001 for 2d", "requests_per_second", ">", 1e-5, 172800,
     "requests_per_second > 0.00001 for 2d"),
    ("gpu_power_usage\t>\n250 for 120m", "gpu_power_usage", ">", 250.0, 7200, "gpu_power_usage > 250 for 2h"),
])
def test_conditions_parse_to_their_parts_and_canonical_text(text, metric, op, threshold, for_s, canonical):
    cond = parse_condition(text)
    assert (cond.metric, cond.op, cond.threshold, cond.for_s) == (metric, op, threshold, for_s)
    assert str(cond) == canonical
    assert parse_condition(str(cond)) == cond  # the canonical text is what is stored: it must read back


@pytest.mark.parametrize(("text", "says"), [
    ("cpu > 90", "unknown metric 'cpu': one of cpu_percent, memory_percent"),
    ("CPU_PERCENT > 90", "unknown metric 'CPU_PERCENT'"),
    ("cpu_percent 90", "expected an operator (>, >=, <, <=, ==, !=) after 'cpu_percent', got '90'"),
    ("cpu_percent", "expected an operator"),
    ("cpu_percent >> 90", "unknown operator '>>'"),
    ("cpu_percent => 90", "unknown operator '=>'"),
    ("cpu_percent = 90", "unknown operator '='"),
    ("cpu_percent > abc", "threshold must be a finite decimal number (e.g. 90, 0.05, -1.5), got 'abc'"),
    ("cpu_percent > nan", "got 'nan'"),
    ("cpu_percent > inf", "got 'inf'"),
    ("cpu_percent > 1e3", "got '1e3'"),
    ("cpu_percent > ", "expected a number after '>', got the end"),
    ("cpu_percent > 90 for 5x", "duration must be a whole number followed by s, m, h or d"),
    ("cpu_percent > 90 for", "got the end"),
    ("cpu_percent > 90 for 1.5m", "got '1.5m'"),
    ("cpu_percent > 90 for 31d", "longer than 30d"),
    ("cpu_percent > 90 and 1", "expected 'for <duration>' or the end after the threshold, got 'and'"),
    ("cpu_percent > 90 for 5m extra", "unexpected 'extra' after the duration"),
    ("cpu_percent > 90;", "got '90;'"),
    ("__import__('os')", "unknown metric '__import__'"),
    ("__import__('os').system('true') > 1", "unknown metric '__import__'"),
    ("", "condition is empty"),
    ("   ", "condition is empty"),
    ("cpu_percent > " + "9" * 200, "longer than 200 characters"),
    ("cpu_percent > ١٠", "finite decimal number"),  # digits of another script are not digits here
])
def test_bad_conditions_name_the_field_and_what_was_expected(text, says):
    with pytest.raises(ValidationError) as err:
        parse_condition(text)
    assert err.value.field == "condition"
    assert says in err.value.message


def test_a_condition_that_is_not_a_string_is_refused():
    with pytest.raises(ValidationError) as err:
        parse_condition(90)
    assert err.value.field == "condition"


def test_every_operator_holds_as_written():
    cases = {">": (91, 90), ">=": (90, 89.9), "<": (89, 90), "<=": (90, 90.1), "==": (90, 90.5), "!=": (1, 90)}
    for op, (yes, no) in cases.items():
        cond = parse_condition(f"cpu_percent {op} 90")
        assert cond.holds(yes) and not cond.holds(no), op
    assert set(cases) == set(Condition.OPS)
    assert "gpu_temperature" in METRICS and "°" not in "".join(METRICS)  # names are plain ASCII


# -- the component -------------------------------------------------------------
class FakeChannels:
    """Records each send; with ``gate`` set, a send waits for it (a hung webhook never returns)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, AlertEvent]] = []
        self.counters = NotificationCounters()
        self.gate: asyncio.Event | None = None

    async def send(self, channel: str, event: AlertEvent) -> bool:
        self.sent.append((channel, event))
        if self.gate is not None:
            await self.gate.wait()
        self.counters.record(channel, True)
        return True

    def states(self) -> list[tuple[str, str, str]]:
        return [(c, e.rule_id, e.state) for c, e in self.sent]


class Rig:
    """An Alerts over a real SQLite store, a broker subscription and fake channels."""

    def __init__(self, store: Store, config: AlertsConfig | None = None) -> None:
        self.store = store
        self.config = config or AlertsConfig(gpu_utilization_high=0, gpu_temperature_high=0,
                                             response_time_high=0, error_rate_high=0)
        self.background = Background()
        self.events = EventBroker()
        self.channels = FakeChannels()
        self.alerts = Alerts(self.config, store.alerts, self.events, self.background, self.channels,  # type: ignore[arg-type]
                             clock=lambda: T0)

    async def settle(self) -> None:
        """Let the background notifications finish."""
        await asyncio.wait_for(self.background.drain(5), 6)

    async def step(self, now: float, **values: float) -> None:
        await self.alerts.evaluate(values, now)
        await self.settle()

    async def events_of(self, rule_id: str | None = None) -> list[AlertEvent]:
        return (await self.alerts.history(1, 100, rule_id)).items


@pytest.fixture
def rig(store):
    return Rig(store)


async def test_a_rule_fires_once_and_not_again_while_it_keeps_firing(rig):
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90", channels=["journal", "webhook"],
                                        repeat_interval_s=0)
    assert rule.id.startswith("alert-") and rule.state == "ok"
    with rig.events.subscribe("alert.*") as sub:
        await rig.step(T0, cpu_percent=97.2)
        topic, published = await sub.get(1)
        assert topic == f"alert.{rule.id}" and published.state == "firing"
        for i in range(1, 10):
            await rig.step(T0 + 10 * i, cpu_percent=95.0 + i)
        assert await sub.get(0.05) is None
    assert rig.channels.states() == [("journal", rule.id, "firing"), ("webhook", rule.id, "firing")]
    (event,) = await rig.events_of()
    assert event.message == "cpu_percent is 97.2 (> 90)"
    assert (event.value, event.ts, event.condition, event.severity) == (97.2, T0, "cpu_percent > 90", "warning")
    assert event.notified == {"journal": "ok", "webhook": "ok"}
    now = await rig.alerts.get_rule(rule.id)
    assert (now.state, now.since, now.last_value) == ("firing", T0, 104.0)
    assert [r.id for r in rig.alerts.firing()] == [rule.id]
    assert rig.alerts.counters.sent == {"journal": 1, "webhook": 1}


async def test_a_firing_rule_is_notified_again_after_its_repeat_interval(rig):
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90", repeat_interval_s=60)
    for t in (0, 30, 59, 60, 90, 119, 120):
        await rig.step(T0 + t, cpu_percent=99)
    events = await rig.events_of(rule.id)
    assert [e.ts - T0 for e in reversed(events)] == [0, 60, 120]
    assert all(e.state == "firing" for e in events)
    assert events[0].message == "cpu_percent is 99.0 (> 90): still firing, for 2m"
    assert len(rig.channels.sent) == 3
    assert (await rig.alerts.get_rule(rule.id)).since == T0  # still firing since the first time


async def test_the_config_repeat_interval_applies_when_the_rule_has_none(rig):
    rig.config.repeat_interval_s = 100
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90")
    for t in (0, 50, 100):
        await rig.step(T0 + t, cpu_percent=99)
    assert len(await rig.events_of(rule.id)) == 2
    rig.config.repeat_interval_s = 0  # changed at run time: never again
    for t in (200, 300, 1000):
        await rig.step(T0 + t, cpu_percent=99)
    assert len(await rig.events_of(rule.id)) == 2


async def test_a_rule_resolves_when_its_condition_no_longer_holds(rig):
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90 for 0s", severity="critical")
    await rig.step(T0, cpu_percent=97)
    await rig.step(T0 + 10, cpu_percent=12.0)
    resolved, fired = await rig.events_of(rule.id)
    assert (resolved.state, resolved.value, resolved.ts) == ("resolved", 12.0, T0 + 10)
    assert resolved.message == "cpu_percent is back to 12.0 (rule: cpu_percent > 90)"
    assert resolved.notified == {"journal": "ok"} and resolved.severity == "critical"
    assert rig.channels.states() == [("journal", rule.id, "firing"), ("journal", rule.id, "resolved")]
    assert (await rig.alerts.get_rule(rule.id)).state == "ok" and rig.alerts.firing() == []
    await rig.step(T0 + 20, cpu_percent=10)  # ok stays ok, silently
    assert len(await rig.events_of()) == 2


async def test_the_for_duration_makes_a_rule_pending_first(rig):
    rule = await rig.alerts.create_rule("hot GPU", "gpu_temperature >= 80 for 30s")
    await rig.step(T0, gpu_temperature=85)
    pending = await rig.alerts.get_rule(rule.id)
    assert (pending.state, pending.since, pending.last_value) == ("pending", T0, 85.0)
    await rig.step(T0 + 20, gpu_temperature=81)
    assert (await rig.alerts.get_rule(rule.id)).state == "pending" and await rig.events_of() == []
    await rig.step(T0 + 25, gpu_temperature=70)  # it dipped: the duration starts over
    assert (await rig.alerts.get_rule(rule.id)).state == "ok" and await rig.events_of() == []
    await rig.step(T0 + 40, gpu_temperature=80)
    await rig.step(T0 + 60, gpu_temperature=90)
    assert (await rig.alerts.get_rule(rule.id)).state == "pending"
    await rig.step(T0 + 70, gpu_temperature=90)
    firing = await rig.alerts.get_rule(rule.id)
    assert (firing.state, firing.since) == ("firing", T0 + 70)
    (event,) = await rig.events_of()
    assert event.message == "gpu_temperature is 90.0 (>= 80 for 30s)"
    assert rig.channels.states() == [("journal", rule.id, "firing")]


async def test_a_disabled_or_deleted_firing_rule_resolves(rig):
    a = await rig.alerts.create_rule("a", "cpu_percent > 90")
    b = await rig.alerts.create_rule("b", "memory_percent > 90")
    await rig.step(T0, cpu_percent=95, memory_percent=95)
    assert {r.id for r in rig.alerts.firing()} == {a.id, b.id}
    disabled = await rig.alerts.set_enabled(a.id, False)
    assert disabled.enabled is False
    await rig.alerts.delete_rule(b.id)
    await rig.step(T0 + 10, cpu_percent=95, memory_percent=95)
    assert rig.alerts.firing() == []
    (a_resolved, _) = await rig.events_of(a.id)
    (b_resolved, _) = await rig.events_of(b.id)
    assert a_resolved.message == "rule disabled (rule: cpu_percent > 90)" and a_resolved.value is None
    assert b_resolved.message == "rule deleted (rule: memory_percent > 90)" and b_resolved.rule_name == "b"
    assert sorted(rig.channels.states()) == sorted([("journal", a.id, "firing"), ("journal", b.id, "firing"),
                                                    ("journal", a.id, "resolved"), ("journal", b.id, "resolved")])
    await rig.step(T0 + 20, cpu_percent=95)  # a disabled rule is not evaluated
    assert len(await rig.events_of(a.id)) == 2
    await rig.alerts.set_enabled(a.id, True)
    await rig.step(T0 + 30, cpu_percent=95)
    assert [r.id for r in rig.alerts.firing()] == [a.id]


async def test_a_metric_without_data_resolves_its_rule(rig):
    rule = await rig.alerts.create_rule("GPU busy", "gpu_utilization > 50")
    await rig.step(T0, gpu_utilization=80, cpu_percent=1)
    await rig.step(T0 + 10, cpu_percent=1)  # the GPU went away
    resolved, _ = await rig.events_of(rule.id)
    assert resolved.state == "resolved" and resolved.value is None
    assert resolved.message == "gpu_utilization has no data (rule: gpu_utilization > 50)"
    await rig.step(T0 + 20, gpu_utilization=float("nan"))  # not a number: no data either
    ne = await rig.alerts.create_rule("not zero", "gpu_utilization != 0")
    await rig.step(T0 + 30)
    assert (await rig.alerts.get_rule(ne.id)).state == "ok"  # no data is not "different from 0"


async def test_built_in_rules_come_from_the_config_and_go_when_their_threshold_is_zero(store):
    cfg = AlertsConfig(threshold_channels="journal, email")
    rig = Rig(store, cfg)
    stored = await rig.alerts.create_rule("mine", "cpu_percent > 1")
    rules = await rig.alerts.list_rules()
    assert [r.id for r in rules] == ["threshold-gpu_utilization_high", "threshold-gpu_temperature_high",
                                     "threshold-response_time_high", "threshold-error_rate_high", stored.id]
    assert [str(r.condition) for r in rules[:4]] == ["gpu_utilization > 90", "gpu_temperature > 80",
                                                     "response_time > 2", "error_rate > 0.05"]
    assert all(r.builtin and r.severity == "warning" and r.channels == ("journal", "email") for r in rules[:4])
    await rig.step(T0, gpu_utilization=95, error_rate=0.01, response_time=2.5)
    assert {r.id for r in rig.alerts.firing()} == {"threshold-gpu_utilization_high", "threshold-response_time_high"}
    assert ("email", "threshold-gpu_utilization_high", "firing") in rig.channels.states()

    cfg.gpu_utilization_high = 0  # PUT /api/config at run time
    cfg.response_time_high = 5.0
    assert "threshold-gpu_utilization_high" not in [r.id for r in await rig.alerts.list_rules()]
    with pytest.raises(NotFoundError):
        await rig.alerts.get_rule("threshold-gpu_utilization_high")
    await rig.step(T0 + 10, gpu_utilization=95, response_time=2.5)
    assert rig.alerts.firing() == []
    (gone, _) = await rig.events_of("threshold-gpu_utilization_high")
    assert gone.message == "threshold turned off in the configuration (rule: gpu_utilization > 90)"
    (raised, _) = await rig.events_of("threshold-response_time_high")
    assert raised.message == "response_time is back to 2.5 (rule: response_time > 5)"

    for call in (rig.alerts.update_rule("threshold-error_rate_high", name="x"),
                 rig.alerts.delete_rule("threshold-error_rate_high"),
                 rig.alerts.set_enabled("threshold-gpu_temperature_high", False),
                 rig.alerts.delete_rule("threshold-gpu_utilization_high")):  # off, but still not a stored rule
        with pytest.raises(ConflictError) as err:
            await call
        assert err.value.message == "built-in threshold rule: change alert_thresholds in PUT /api/config"


async def test_a_restart_keeps_a_firing_rule_firing_without_notifying_it_again(tmp_path: Path):
    path = tmp_path / "llmd.db"
    store = Store(path)
    await store.open()
    rig = Rig(store)
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90 for 20s", repeat_interval_s=3600)
    other = await rig.alerts.create_rule("disk", "disk_percent > 90")
    for t in (0, 10, 20):
        await rig.step(T0 + t, cpu_percent=95, disk_percent=95)
    await rig.step(T0 + 30, cpu_percent=95)  # disk resolved: not restored after the restart
    assert len(rig.channels.sent) == 3
    await store.close()

    store = Store(path)
    await store.open()
    try:
        again = Rig(store)
        await again.alerts.load()
        (restored,) = again.alerts.firing()
        assert (restored.id, restored.state, restored.since, restored.last_value) == (rule.id, "firing", T0 + 20, 95)
        assert (await again.alerts.get_rule(other.id)).state == "ok"
        for t in (100, 200, 300):
            await again.step(T0 + t, cpu_percent=96, disk_percent=10)
        assert again.channels.sent == []  # no second notification
        await again.step(T0 + 20 + 3600, cpu_percent=96)  # the repeat interval runs on from before
        assert again.channels.states() == [("journal", rule.id, "firing")]
        await again.step(T0 + 4000, cpu_percent=50)
        assert again.channels.states()[-1] == ("journal", rule.id, "resolved")
        assert [e.state for e in await again.events_of(rule.id)] == ["resolved", "firing", "firing"]
    finally:
        await store.close()


async def test_a_rule_deleted_while_llmd_was_down_resolves_after_the_restart(tmp_path: Path):
    path = tmp_path / "llmd.db"
    store = Store(path)
    await store.open()
    rig = Rig(store)
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90", channels=["webhook"])
    await rig.step(T0, cpu_percent=95)
    await store.alerts.delete_rule(int(rule.id.split("-")[1]))  # behind the component's back
    await store.close()
    store = Store(path)
    await store.open()
    try:
        again = Rig(store)
        await again.step(T0 + 10, cpu_percent=95)  # evaluate loads the recorded state itself
        assert again.channels.states() == [("webhook", rule.id, "resolved")]
        (resolved, _) = await again.events_of(rule.id)
        assert resolved.message == "rule deleted (rule: cpu_percent > 90)" and resolved.rule_name == "CPU hot"
    finally:
        await store.close()


async def test_a_channel_that_hangs_does_not_stall_evaluate(rig):
    rig.channels.gate = asyncio.Event()  # never set: every send hangs
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90", channels=["webhook"])
    await asyncio.wait_for(rig.alerts.evaluate({"cpu_percent": 95}, T0), 1)
    await asyncio.wait_for(rig.alerts.evaluate({"cpu_percent": 10}, T0 + 10), 1)
    assert [e.state for e in await rig.events_of(rule.id)] == ["resolved", "firing"]
    assert len(rig.background.pending()) == 2  # both notifications still waiting on the webhook
    rig.channels.gate.set()
    await rig.settle()
    assert [e.notified for e in await rig.events_of(rule.id)] == [{"webhook": "ok"}] * 2


async def test_a_channel_that_raises_is_recorded_as_failed(rig):
    async def broken(channel, event):
        raise RuntimeError("boom")
    rig.channels.send = broken  # type: ignore[method-assign]
    rule = await rig.alerts.create_rule("CPU hot", "cpu_percent > 90", channels=["email", "journal"])
    await rig.step(T0, cpu_percent=95)
    (event,) = await rig.events_of(rule.id)
    assert event.notified == {"email": "failed", "journal": "failed"}


async def test_a_rule_without_channels_is_only_recorded_and_published(rig):
    rule = await rig.alerts.create_rule("quiet", "queue_depth > 10", channels=[])
    with rig.events.subscribe(f"alert.{rule.id}") as sub:
        await rig.step(T0, queue_depth=11)
        assert (await sub.get(1))[1].message == "queue_depth is 11.0 (> 10)"
    assert rig.channels.sent == [] and rig.background.pending() == []
    assert (await rig.events_of())[0].notified == {}


# -- rules: create, read, update, delete ---------------------------------------
async def test_rules_are_created_read_updated_and_deleted(rig):
    a = await rig.alerts.create_rule("  CPU hot ", " cpu_percent>90 for 300s", severity="critical",
                                     channels=["webhook", "email", "webhook"], repeat_interval_s=600,
                                     description="the fan")
    assert (a.name, str(a.condition), a.severity, a.channels, a.repeat_interval_s, a.description, a.enabled) == (
        "CPU hot", "cpu_percent > 90 for 5m", "critical", ("webhook", "email"), 600.0, "the fan", True)
    assert (a.created_at, a.updated_at, a.builtin) == (T0, T0, False)
    b = await rig.alerts.create_rule("queue", "queue_depth > 5", enabled=False)
    assert [r.id for r in await rig.alerts.list_rules()] == [a.id, b.id]
    assert await rig.alerts.get_rule(b.id) == b

    changed = await rig.alerts.update_rule(a.id, condition="cpu_percent > 95", repeat_interval_s=None)
    assert (str(changed.condition), changed.repeat_interval_s, changed.name, changed.severity, changed.channels) == (
        "cpu_percent > 95", None, "CPU hot", "critical", ("webhook", "email"))
    assert await rig.alerts.update_rule(a.id) == changed  # nothing given: nothing changes
    assert (await rig.alerts.update_rule(b.id, channels=[])).channels == ()

    await rig.alerts.delete_rule(a.id)
    assert [r.id for r in await rig.alerts.list_rules()] == [b.id]
    c = await rig.alerts.create_rule("new", "load_1m > 4")
    assert int(c.id.split("-")[1]) > int(a.id.split("-")[1])  # a deleted rule's id is never given again
    for call in (rig.alerts.get_rule(a.id), rig.alerts.delete_rule(a.id), rig.alerts.update_rule(a.id, name="x"),
                 rig.alerts.get_rule("alert-x"), rig.alerts.get_rule("threshold-nope"), rig.alerts.get_rule("")):
        with pytest.raises(NotFoundError) as err:
            await call
        assert err.value.field == "rule_id" and "rule_id" in err.value.details


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "x" * 101}, "name"),
    ({"name": "two\nlines"}, "name"),
    ({"name": 5}, "name"),
    ({"condition": "cpu_percent >> 1"}, "condition"),
    ({"condition": None}, "condition"),
    ({"severity": "fatal"}, "severity"),
    ({"channels": ["slack"]}, "notification_channels"),
    ({"channels": "journal"}, "notification_channels"),
    ({"channels": None}, "notification_channels"),
    ({"repeat_interval_s": -1}, "repeat_interval_s"),
    ({"repeat_interval_s": float("inf")}, "repeat_interval_s"),
    ({"repeat_interval_s": True}, "repeat_interval_s"),
    ({"repeat_interval_s": "60"}, "repeat_interval_s"),
    ({"enabled": "yes"}, "enabled"),
    ({"description": "x" * 1001}, "description"),
])
async def test_bad_rule_fields_are_refused_with_their_field(rig, kwargs, field):
    args = {"name": "ok", "condition": "cpu_percent > 1", **kwargs}
    with pytest.raises(ValidationError) as err:
        await rig.alerts.create_rule(**args)
    assert err.value.field == field
    rule = await rig.alerts.create_rule("ok", "cpu_percent > 1")
    with pytest.raises(ValidationError) as err:
        await rig.alerts.update_rule(rule.id, **kwargs)
    assert err.value.field == field
    assert await rig.alerts.get_rule(rule.id) == rule  # nothing of a refused update was written
    with pytest.raises(ValidationError) as err:
        await rig.alerts.update_rule(rule.id, colour="red")
    assert err.value.field == "colour"


async def test_the_history_is_paged_newest_first_and_filtered_by_rule(rig):
    a = await rig.alerts.create_rule("a", "cpu_percent > 90")
    b = await rig.alerts.create_rule("b", "memory_percent > 90")
    for i in range(5):  # a and b fire and resolve in turn: 5 x 2 events each
        await rig.step(T0 + 20 * i, cpu_percent=95, memory_percent=95)
        await rig.step(T0 + 20 * i + 10, cpu_percent=5, memory_percent=5)
    page = await rig.alerts.history(2, 3)
    assert (page.total, page.page, page.size, page.pages) == (20, 2, 3, 7)
    everything = (await rig.alerts.history(1, 100)).items
    assert [e.ts for e in everything] == sorted((e.ts for e in everything), reverse=True)
    assert page.items == everything[3:6]
    only_a = await rig.alerts.history(1, 4, rule_id=a.id)
    assert only_a.total == 10 and {e.rule_id for e in only_a.items} == {a.id}
    assert [e.state for e in only_a.items] == ["resolved", "firing"] * 2
    assert (await rig.alerts.history(9, 4, rule_id=b.id)).items == []
    assert (await rig.alerts.history(1, 10, rule_id="alert-999")).total == 0
    for page_no, size, field in ((0, 10, "page"), (1, 0, "size"), (1, 1001, "size"), (True, 10, "page")):
        with pytest.raises(ValidationError) as err:
            await rig.alerts.history(page_no, size)
        assert err.value.field == field
    assert await rig.alerts.prune_history(1, now=T0 + 86400 + 45) == 10
    assert (await rig.alerts.history(1, 100)).total == 10
    assert await rig.alerts.prune_history(0) == 0
