"""A write cancelled while it waits for SQLite (a client that went away) leaves no transaction open."""

from __future__ import annotations

import asyncio


async def test_a_write_cancelled_at_begin_leaves_no_transaction_open(store):
    async def write() -> None:
        async with store.transaction() as db:
            await db.execute("INSERT INTO settings_overrides(key, value, updated_at) VALUES ('a.b', '1', 0)")

    for _ in range(20):  # cancel at the first await: the BEGIN is queued on aiosqlite's thread by then
        task = asyncio.ensure_future(write())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
        async with store.transaction() as db:  # "cannot start a transaction within a transaction" if one leaked
            await db.execute("DELETE FROM settings_overrides")
    assert await store.fetchall("SELECT * FROM settings_overrides") == []
