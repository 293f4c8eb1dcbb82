"""Alerts in SQLite: rules, the event history (paging, filter, pruning), firing state, atomic writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from llmd.store import Store

T0 = 1_800_000_000.0


def event(rule_id: str = "alert-1", ts: float = T0, state: str = "firing", **kw) -> dict:
    return {"rule_id": rule_id, "rule_name": f"rule {rule_id}", "severity": "warning", "state": state,
            "condition": "cpu_percent > 90", "value": 95.0, "message": "cpu_percent is 95.0 (> 90)", "ts": ts, **kw}


def firing(since: float = T0, **kw) -> dict:
    return {"state": "firing", "since": since, "last_notified": since, "last_value": 95.0, "rule_name": "r",
            "severity": "warning", "condition": "cpu_percent > 90", "channels": ["journal"], **kw}


async def test_the_migration_is_recorded(store):
    assert "0012_alerts" in await store.applied_migrations()


async def test_rules_are_added_read_updated_and_deleted(store):
    repo = store.alerts
    a = await repo.add_rule(name="a", condition="cpu_percent > 90", severity="warning", enabled=True,
                            channels=["journal", "webhook"], repeat_interval_s=None, description="", now=T0)
    b = await repo.add_rule(name="b", condition="load_1m > 4 for 5m", severity="info", enabled=False,
                            channels=[], repeat_interval_s=60.0, description="d", now=T0 + 1)
    assert a == {"id": a["id"], "name": "a", "condition": "cpu_percent > 90", "severity": "warning",
                 "enabled": True, "channels": ["journal", "webhook"], "repeat_interval_s": None, "description": "",
                 "created_at": T0, "updated_at": T0}
    assert (b["enabled"], b["channels"], b["repeat_interval_s"]) == (False, [], 60.0)
    assert [r["id"] for r in await repo.list_rules()] == [a["id"], b["id"]]
    assert await repo.get_rule(a["id"]) == a

    changed = await repo.update_rule(a["id"], {"enabled": False, "channels": ["email"], "name": "A"}, T0 + 5)
    assert (changed["enabled"], changed["channels"], changed["name"], changed["updated_at"], changed["created_at"],
            changed["condition"]) == (False, ["email"], "A", T0 + 5, T0, "cpu_percent > 90")
    assert await repo.update_rule(999, {"name": "x"}, T0) is None
    with pytest.raises(ValueError):  # column names never come from the caller into the SQL
        await repo.update_rule(a["id"], {"name = 'x', id": 1}, T0)

    assert await repo.delete_rule(a["id"]) is True
    assert await repo.delete_rule(a["id"]) is False
    assert await repo.get_rule(a["id"]) is None
    c = await repo.add_rule(name="c", condition="cpu_percent > 1", severity="warning", enabled=True,
                            channels=[], repeat_interval_s=None, description="", now=T0)
    assert c["id"] > b["id"]  # AUTOINCREMENT: ids are not reused


async def test_events_are_paged_newest_first_filtered_and_pruned(store):
    repo = store.alerts
    ids = [await repo.record_event(event(f"alert-{i % 3}", ts=T0 + i), f"alert-{i % 3}", None) for i in range(10)]
    assert ids == sorted(ids)
    rows, total = await repo.events(rule_id=None, limit=4, offset=0)
    assert total == 10 and [r["ts"] for r in rows] == [T0 + 9, T0 + 8, T0 + 7, T0 + 6]
    rows, total = await repo.events(rule_id=None, limit=4, offset=8)
    assert [r["ts"] for r in rows] == [T0 + 1, T0]
    rows, total = await repo.events(rule_id="alert-1", limit=10, offset=0)
    assert total == 3 and [r["ts"] for r in rows] == [T0 + 7, T0 + 4, T0 + 1]
    assert rows[0]["notified"] == {} and rows[0]["value"] == 95.0

    await repo.set_notified(ids[7], {"journal": "ok", "webhook": "failed"})
    rows, _ = await repo.events(rule_id="alert-1", limit=1, offset=0)
    assert rows[0]["notified"] == {"journal": "ok", "webhook": "failed"}

    assert await repo.prune_events(T0 + 5) == 5
    rows, total = await repo.events(rule_id=None, limit=100, offset=0)
    assert total == 5 and min(r["ts"] for r in rows) == T0 + 5
    assert await repo.prune_events(T0) == 0


async def test_firing_state_is_written_with_its_event_and_forgotten_with_the_resolution(store):
    repo = store.alerts
    await repo.record_event(event(), "alert-1", firing())
    await repo.record_event(event("threshold-error_rate_high"), "threshold-error_rate_high",
                            firing(since=T0 + 1, channels=["webhook", "email"], last_value=None))
    states = await repo.states()
    assert [s["rule_id"] for s in states] == ["alert-1", "threshold-error_rate_high"]
    assert states[1]["channels"] == ["webhook", "email"] and states[1]["last_value"] is None
    await repo.record_event(event(state="firing", ts=T0 + 60), "alert-1", firing(last_notified=T0 + 60))
    assert (await repo.states())[0]["last_notified"] == T0 + 60  # replaced, not added
    await repo.record_event(event(state="resolved", ts=T0 + 70), "alert-1", None)
    assert [s["rule_id"] for s in await repo.states()] == ["threshold-error_rate_high"]
    await repo.save_state("threshold-error_rate_high", None)
    assert await repo.states() == []


async def test_a_failed_write_leaves_neither_the_event_nor_the_state(store):
    repo = store.alerts
    await repo.record_event(event(), "alert-1", firing())
    with pytest.raises(sqlite3.IntegrityError):  # the state breaks NOT NULL after the event row is written
        await repo.record_event(event("alert-2", ts=T0 + 1), "alert-2", firing(rule_name=None))
    rows, total = await repo.events(rule_id=None, limit=10, offset=0)
    assert total == 1 and rows[0]["rule_id"] == "alert-1"
    assert [s["rule_id"] for s in await repo.states()] == ["alert-1"]


CRASH = textwrap.dedent("""
    import asyncio, contextlib, os, sys
    from llmd.store import Store

    async def main(path):
        store = Store(path)
        await store.open()
        real = store.transaction

        @contextlib.asynccontextmanager
        async def crashing():
            async with real() as db:
                class Dies:
                    n = 0
                    async def execute(self, *args):
                        Dies.n += 1
                        if Dies.n == 2:  # the event row is written, the state is next: the power goes
                            os._exit(9)
                        return await db.execute(*args)
                yield Dies()

        store.transaction = crashing
        event = {"rule_id": "alert-1", "rule_name": "r", "severity": "warning", "state": "firing",
                 "condition": "cpu_percent > 90", "value": 95.0, "message": "m", "ts": 1.0}
        state = {"state": "firing", "since": 1.0, "last_notified": 1.0, "last_value": 95.0, "rule_name": "r",
                 "severity": "warning", "condition": "cpu_percent > 90", "channels": []}
        await store.alerts.record_event(event, "alert-1", state)

    asyncio.run(main(sys.argv[1]))
""")


async def test_a_crash_in_the_middle_of_a_write_leaves_no_half_of_it(tmp_path: Path):
    path = tmp_path / "llmd.db"
    store = Store(path)
    await store.open()
    await store.alerts.record_event(event("alert-0"), "alert-0", None)
    await store.close()

    done = subprocess.run([sys.executable, "-c", CRASH, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 9, done.stderr  # it died between the two statements

    store = Store(path)
    await store.open()
    try:
        rows, total = await store.alerts.events(rule_id=None, limit=10, offset=0)
        assert total == 1 and rows[0]["rule_id"] == "alert-0"
        assert await store.alerts.states() == []
    finally:
        await store.close()
