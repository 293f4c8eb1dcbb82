"""The store across versions: a copy before a migration, and a database from a newer llmd refused."""

from __future__ import annotations

import sqlite3

import pytest

from llmd.store import Store, backup
from llmd.store import db as store_db
from llmd.store.db import StoreVersionError
from llmd.store.migrations import MIGRATIONS


def migrations(path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        return [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY name")]
    finally:
        con.close()


async def test_an_upgrade_copies_the_database_before_migrating(tmp_path, monkeypatch):
    path = tmp_path / "llmd.db"
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS[:10])  # an older llmd
    old = Store(path)
    await old.open()
    await old.close()
    monkeypatch.setattr(store_db, "MIGRATIONS", MIGRATIONS)
    new = Store(path)
    await new.open()
    await new.close()
    (saved,) = (tmp_path / "backups").iterdir()
    assert saved.name.endswith(f"-before-{MIGRATIONS[10][0]}.db")
    assert migrations(saved) == [name for name, _ in MIGRATIONS[:10]]  # the database as it was
    assert migrations(path) == sorted(name for name, _ in MIGRATIONS)
    # a fresh database has nothing to keep, and a start with nothing to migrate copies nothing
    again = Store(path)
    await again.open()
    await again.close()
    assert len(list((tmp_path / "backups").iterdir())) == 1


async def test_a_database_from_a_newer_llmd_is_refused_untouched(tmp_path):
    path = tmp_path / "llmd.db"
    s = Store(path)
    await s.open()
    await s.close()
    con = sqlite3.connect(path)
    con.execute("INSERT INTO schema_migrations(name, applied_at) VALUES ('9999_future', 0)")
    con.commit()
    con.close()
    before = path.read_bytes()
    with pytest.raises(StoreVersionError, match="newer llmd.*9999_future"):
        await Store(path).open()
    assert path.read_bytes() == before
    with pytest.raises(backup.DatabaseFileError, match="not an SQLite database"):
        (tmp_path / "junk.db").write_bytes(b"x" * 4096)
        backup.inspect(tmp_path / "junk.db")
    assert backup.inspect(path).newer == ["9999_future"]


async def test_apply_restore_keeps_the_replaced_database(tmp_path):
    live, other = tmp_path / "llmd.db", tmp_path / "other.db"
    for p in (live, other):
        s = Store(p)
        await s.open()
        await s.close()
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE marker(x)")
    con.commit()
    con.close()
    pending = tmp_path / "restore.pending.db"
    other.rename(pending)
    saved = backup.apply_restore(live, pending, tmp_path / "backups")
    assert saved is not None and saved.exists() and not pending.exists()
    con = sqlite3.connect(live)
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name = 'marker'").fetchone() == (1,)
    con.close()
