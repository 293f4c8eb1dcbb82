"""SQL for alerts: the rules made through the API, what they did (the events), and which ones are firing.

An event and the firing state it changes are written in one transaction, so
after a crash a rule is either firing with its event recorded or neither:
a restart never notifies a rule again that had already been notified, and
never forgets one whose firing was recorded.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Mapping

from llmd.store.db import dumps

if TYPE_CHECKING:
    from llmd.store.db import Store


def _rule(row: dict[str, Any]) -> dict[str, Any]:
    """A rule row with its JSON and boolean columns decoded."""
    row["channels"] = json.loads(row["channels"])
    row["enabled"] = bool(row["enabled"])
    return row


def _event(row: dict[str, Any]) -> dict[str, Any]:
    row["notified"] = json.loads(row["notified"] or "{}")
    return row


def _state(row: dict[str, Any]) -> dict[str, Any]:
    row["channels"] = json.loads(row["channels"])
    return row


class AlertsRepo:
    """Alert rules (``alert_rules``), their history (``alert_events``) and firing state (``alert_state``)."""

    # The columns a rule update may set: the names come from here, never from the caller, into the SQL.
    _RULE_COLUMNS = ("name", "condition", "severity", "enabled", "channels", "repeat_interval_s", "description")

    def __init__(self, store: Store) -> None:
        self.store = store

    # -- rules -----------------------------------------------------------
    async def add_rule(self, *, name: str, condition: str, severity: str, enabled: bool, channels: list[str],
                       repeat_interval_s: float | None, description: str, now: float) -> dict[str, Any]:
        """Store a new rule; returns its row (``id`` is the row id)."""
        async with self.store.transaction() as db:
            cur = await db.execute(
                "INSERT INTO alert_rules(name, condition, severity, enabled, channels, repeat_interval_s,"
                " description, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (name, condition, severity, int(enabled), dumps(list(channels)), repeat_interval_s, description,
                 now, now))
            # read back inside the transaction: the row as stored, before anyone could change it
            row = await self.store.fetchone("SELECT * FROM alert_rules WHERE id=?", (cur.lastrowid,))
        return _rule(row)  # type: ignore[arg-type]

    async def get_rule(self, rule_id: int) -> dict[str, Any] | None:
        """One rule's row, or ``None``."""
        row = await self.store.fetchone("SELECT * FROM alert_rules WHERE id=?", (rule_id,))
        return _rule(row) if row is not None else None

    async def list_rules(self) -> list[dict[str, Any]]:
        """Every stored rule, by id."""
        return [_rule(r) for r in await self.store.fetchall("SELECT * FROM alert_rules ORDER BY id")]

    async def update_rule(self, rule_id: int, changes: Mapping[str, Any], now: float) -> dict[str, Any] | None:
        """Set the given columns of a rule (``channels`` a list); its new row, or ``None`` if there is no rule."""
        unknown = set(changes) - set(self._RULE_COLUMNS)
        if unknown:
            raise ValueError(f"not a rule column: {', '.join(sorted(unknown))}")
        values = {k: dumps(list(v)) if k == "channels" else int(v) if k == "enabled" else v
                  for k, v in changes.items()}
        sets = "".join(f"{k}=?, " for k in values)
        async with self.store.transaction() as db:
            cur = await db.execute(f"UPDATE alert_rules SET {sets}updated_at=? WHERE id=?",
                                   (*values.values(), now, rule_id))
            if cur.rowcount == 0:
                return None
            row = await self.store.fetchone("SELECT * FROM alert_rules WHERE id=?", (rule_id,))
        return _rule(row)  # type: ignore[arg-type]

    async def delete_rule(self, rule_id: int) -> bool:
        """Delete a rule (its history stays); False if there was none."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM alert_rules WHERE id=?", (rule_id,))
            return cur.rowcount > 0

    # -- events and firing state -----------------------------------------
    async def record_event(self, event: Mapping[str, Any], rule_id: str,
                           state: Mapping[str, Any] | None) -> int:
        """Write an event and, in the same transaction, the rule's firing state (``None``: it no longer fires).

        ``event`` has rule_id, rule_name, severity, state, condition, value, message and ts; ``state`` has
        state, since, last_notified, last_value, rule_name, severity, condition and channels (a list).
        Returns the event's id.
        """
        async with self.store.transaction() as db:
            cur = await db.execute(
                "INSERT INTO alert_events(rule_id, rule_name, severity, state, condition, value, message, ts)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (event["rule_id"], event["rule_name"], event["severity"], event["state"], event["condition"],
                 event["value"], event["message"], event["ts"]))
            event_id = int(cur.lastrowid)
            await self._put_state(db, rule_id, state)
        return event_id

    async def save_state(self, rule_id: str, state: Mapping[str, Any] | None) -> None:
        """Record a rule's firing state without an event (``None``: forget it)."""
        async with self.store.transaction() as db:
            await self._put_state(db, rule_id, state)

    @staticmethod
    async def _put_state(db: Any, rule_id: str, state: Mapping[str, Any] | None) -> None:
        if state is None:
            await db.execute("DELETE FROM alert_state WHERE rule_id=?", (rule_id,))
            return
        await db.execute(
            "INSERT OR REPLACE INTO alert_state(rule_id, state, since, last_notified, last_value, rule_name,"
            " severity, condition, channels) VALUES (?,?,?,?,?,?,?,?,?)",
            (rule_id, state["state"], state["since"], state["last_notified"], state["last_value"],
             state["rule_name"], state["severity"], state["condition"], dumps(list(state["channels"]))))

    async def states(self) -> list[dict[str, Any]]:
        """Every recorded firing state, by rule id."""
        return [_state(r) for r in await self.store.fetchall("SELECT * FROM alert_state ORDER BY rule_id")]

    async def set_notified(self, event_id: int, notified: Mapping[str, str]) -> None:
        """Record how each channel's notification of an event went (``channel -> ok | failed``)."""
        async with self.store.transaction() as db:
            await db.execute("UPDATE alert_events SET notified=? WHERE id=?", (dumps(dict(notified)), event_id))

    async def events(self, *, rule_id: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
        """A page of events, newest first (of one rule when ``rule_id`` is given), and how many there are."""
        where, params = ("WHERE rule_id=? ", (rule_id,)) if rule_id is not None else ("", ())
        rows = await self.store.fetchall(
            f"SELECT * FROM alert_events {where}ORDER BY ts DESC, id DESC LIMIT ? OFFSET ?",
            (*params, limit, offset))
        total = await self.store.fetchone(f"SELECT COUNT(*) AS n FROM alert_events {where}", params)
        return [_event(r) for r in rows], int(total["n"]) if total else 0

    async def prune_events(self, before: float) -> int:
        """Delete the events older than ``before`` (a Unix time); how many went."""
        async with self.store.transaction() as db:
            cur = await db.execute("DELETE FROM alert_events WHERE ts < ?", (before,))
            return cur.rowcount
