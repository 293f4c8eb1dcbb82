"""Hub search and downloads through the seed-004 routes, on a FakeEngine core and the fake hub.

The fake hub is a real HTTP server on 127.0.0.1 (tests/fakehub.py); the core
talks to it with the real huggingface_hub and httpx code.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from fakehub import FakeHub, sha256_file, write_gguf
from helpers import make_config, parse_sse

from llmd.core import Core
from llmd.core.engine.fake import FakeEngine
from llmd.http import create_app
from llmd.store import Store


@pytest.fixture(scope="module")
def src_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hubsrc")


@pytest.fixture(scope="module")
def files(src_dir: Path) -> dict[str, Path]:
    return {
        "q4km": write_gguf(src_dir / "tiny.Q4_K_M.gguf", payload_bytes=300_000, seed=1),
        "q8": write_gguf(src_dir / "tiny.Q8_0.gguf", payload_bytes=200_000, file_type=7, seed=2),
        "big": write_gguf(src_dir / "big.Q4_0.gguf", payload_bytes=600_000, file_type=2, seed=3),
        "split1": write_gguf(src_dir / "split-00001-of-00002.gguf", payload_bytes=100_000, seed=4),
        "split2": write_gguf(src_dir / "split-00002-of-00002.gguf", payload_bytes=100_000, seed=5),
        "ollama": write_gguf(src_dir / "ollama.gguf", payload_bytes=150_000, seed=6),
    }


@pytest.fixture
def hub(files: dict[str, Path]):
    h = FakeHub()
    h.add_repo("testorg/tiny-GGUF", {"tiny.Q4_K_M.gguf": files["q4km"], "tiny.Q8_0.gguf": files["q8"]},
               downloads=500, trending=9)
    h.add_repo("testorg/big-GGUF", {"big.Q4_0.gguf": files["big"]}, downloads=50, trending=1)
    h.add_repo("testorg/split-GGUF", {"split-00001-of-00002.gguf": files["split1"],
                                      "split-00002-of-00002.gguf": files["split2"]}, downloads=5)
    h.add_repo("testorg/embedder", {"e.Q8_0.gguf": files["q8"]}, pipeline_tag="feature-extraction",
               tags=["gguf", "feature-extraction"], downloads=7)
    h.add_ollama("library/tinyllama", "latest", files["ollama"])
    with h:
        yield h


@pytest.fixture
async def env(tmp_path: Path, hub: FakeHub):
    """(core, client, hub) on the fake hub; ``env.restart()`` reopens the same state dir."""
    made: list[tuple[Core, Store]] = []

    class Env:
        core: Core
        client: object

        async def open(self, **flags: object) -> Env:
            base = {"downloads.hf_endpoint": hub.url, "downloads.ollama_registry": hub.url,
                    "models.load_default": False, "hub.cache_ttl_s": 0, "downloads.retry_backoff_s": 0.05,
                    "downloads.progress_interval_s": 0.05, "downloads.disk_margin_mb": 1,
                    "hub.timeout_s": 3.0}  # generous: 2 busy cores
            base.update(flags)
            cfg = make_config(tmp_path, **base)
            store = Store(cfg.db_path)
            await store.open()
            core = Core(cfg, store, FakeEngine())
            await core.start()
            made.append((core, store))
            self.core, self.client, self.hub = core, create_app(core).test_client(), hub
            return self

        async def close(self) -> None:
            core, store = made.pop()
            await core.shutdown()
            await store.close()

    e = Env()
    e.hub = hub
    yield e
    while made:
        await e.close()


async def _json(resp) -> dict:
    return json.loads(await resp.get_data(as_text=True))


async def wait_status(client, task_id: str, states: tuple[str, ...], timeout: float = 30) -> dict:
    """Poll GET /api/downloads/{id} until its status is one of ``states``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        body = await _json(await client.get(f"/api/downloads/{task_id}"))
        assert body["success"], body
        if body["data"]["status"] in states:
            return body["data"]
        assert loop.time() < deadline, f"task stayed {body['data']['status']}: {body['data']}"
        await asyncio.sleep(0.05)


async def start(client, **body) -> dict:
    r = await client.post("/api/downloads/start", json=body)
    data = await _json(r)
    assert r.status_code == 200, data
    return data["data"]["task"]


# -- hub --------------------------------------------------------------------------

async def test_search_online_then_from_cache_when_the_hub_is_down(env):
    await env.open()
    c = env.client
    body = await _json(await c.get("/api/models/search", query_string={"query": "GGUF", "page_size": 2}))
    assert body["success"] is True
    data = body["data"]
    assert data["from_cache"] is False
    assert [i["id"] for i in data["items"]] == ["testorg/tiny-GGUF", "testorg/big-GGUF"]  # most downloaded first
    assert data["pagination"] == {"page": 1, "page_size": 2, "total": 3, "total_pages": 2, "has_next": True,
                                  "has_prev": False}
    page2 = (await _json(await c.get("/api/models/search", query_string={"query": "GGUF", "page": 2,
                                                                          "page_size": 2})))["data"]
    assert [i["id"] for i in page2["items"]] == ["testorg/split-GGUF"] and page2["pagination"]["has_prev"]
    info = (await _json(await c.get("/api/models/testorg/tiny-GGUF/info")))["data"]
    assert info["from_cache"] is False and info["parameters"] == "135M"
    assert {f["filename"]: f["quantization"] for f in info["files"]} == {"tiny.Q4_K_M.gguf": "Q4_K_M",
                                                                         "tiny.Q8_0.gguf": "Q8_0"}
    assert all(len(f["sha256"]) == 64 for f in info["files"])

    env.hub.stop()
    cached = (await _json(await c.get("/api/models/search", query_string={"query": "GGUF", "page_size": 2})))
    assert cached["success"] and cached["data"]["from_cache"] is True
    assert cached["data"]["cache_age_s"] >= 0 and "hub_error" in cached["data"]
    assert [i["id"] for i in cached["data"]["items"]] == ["testorg/tiny-GGUF", "testorg/big-GGUF"]
    # A query never asked online is answered from the catalogue too.
    other = (await _json(await c.get("/api/models/search", query_string={"query": "split"})))["data"]
    assert other["from_cache"] and [i["id"] for i in other["items"]] == ["testorg/split-GGUF"]
    info2 = (await _json(await c.get("/api/models/testorg/tiny-GGUF/info")))["data"]
    assert info2["from_cache"] is True and info2["files"] == info["files"]
    # Never seen, hub down: the seed-004 error envelope with a clear code.
    r = await c.get("/api/models/testorg/never-seen/info")
    err = await _json(r)
    assert r.status_code == 502 and err["success"] is False and err["error"] == "HUB_UNAVAILABLE"


async def test_hub_errors_and_bad_input(env):
    await env.open()
    c = env.client
    r = await c.get("/api/models/testorg/nope/info")
    assert r.status_code == 404 and (await _json(r))["error"] == "MODEL_NOT_FOUND"
    r = await c.get("/api/models/search", query_string={"source": "civitai"})
    body = await _json(r)
    assert r.status_code == 400 and body["error"] == "INVALID_SOURCE" and body["field"] == "source"
    r = await c.get("/api/models/search", query_string={"page_size": 101})
    body = await _json(r)
    assert r.status_code == 400 and body["field"] == "page_size"
    r = await c.get("/api/models/trending", query_string={"limit": 51})
    assert r.status_code == 400 and (await _json(r))["field"] == "limit"


async def test_categories_trending_stats_sync_and_favorites(env):
    await env.open()
    c = env.client
    synced = await _json(await c.post("/api/models/sync", query_string={"source": "huggingface"}))
    assert synced["success"] and synced["data"]["synced"]["huggingface"]["models"] == 4
    ollama = await _json(await c.post("/api/models/sync", query_string={"source": "ollama"}))
    assert ollama["data"]["synced"]["ollama"]["models"] == 1
    cats = (await _json(await c.get("/api/models/categories", query_string={"source": "huggingface"})))["data"]
    counts = {x["id"]: x["count"] for x in cats["categories"]}
    assert counts["text-generation"] == 3 and counts["feature-extraction"] == 1
    trending = (await _json(await c.get("/api/models/trending", query_string={"limit": 2})))["data"]
    assert [i["id"] for i in trending["items"]] == ["testorg/tiny-GGUF", "testorg/big-GGUF"]

    r = await c.post("/api/models/testorg/big-GGUF/favorite")
    assert (await _json(r))["data"] == {"id": "testorg/big-GGUF", "source": "huggingface", "favorite": True,
                                        "changed": True}
    stats = (await _json(await c.get("/api/models/stats")))["data"]
    assert stats["favorites"] == 1 and stats["catalog"]["huggingface"]["cached_models"] == 4
    assert stats["catalog"]["huggingface"]["last_sync"] is not None

    # Favourites are in SQLite: they survive a restart, and the hub being down.
    await env.close()
    env.hub.stop()
    await env.open()
    hit = (await _json(await env.client.get("/api/models/search", query_string={"query": "big"})))["data"]
    assert hit["from_cache"] and hit["items"][0]["favorite"] is True
    trending = (await _json(await env.client.get("/api/models/trending")))["data"]
    assert trending["from_cache"] is True and trending["items"][0]["id"] == "testorg/tiny-GGUF"
    r = await env.client.delete("/api/models/testorg/big-GGUF/favorite")
    assert (await _json(r))["data"]["favorite"] is False
    assert (await _json(await env.client.get("/api/models/stats")))["data"]["favorites"] == 0


# -- downloads ------------------------------------------------------------------------

async def test_download_picks_the_preferred_quantization_verifies_and_registers(env, files):
    await env.open()
    c = env.client
    task = await start(c, model_id="testorg/tiny-GGUF", source="huggingface")
    assert task["id"].startswith("task_") and task["status"] in ("pending", "downloading")
    assert task["filename"] == "tiny.Q4_K_M.gguf"  # Q4_K_M is first in downloads.quantization_preference
    done = await wait_status(c, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    assert done["progress"] == 100.0 and done["downloaded_bytes"] == done["total_bytes"] == files["q4km"].stat().st_size
    path = Path(done["files"][0]["path"])
    assert path.exists() and not Path(str(path) + ".partial").exists()
    assert sha256_file(path) == sha256_file(files["q4km"])
    model = await env.core.registry.get("testorg/tiny-GGUF")
    assert model.path == str(path) and model.source == "hf" and model.quantization == "Q4_K_M"
    assert model.metadata["origin"]["repo"] == "testorg/tiny-GGUF"
    assert model.metadata["origin"]["sha256"] == sha256_file(files["q4km"])
    # The same request again attaches to the finished task instead of downloading twice.
    again = await _json(await c.post("/api/downloads/start", json={"model_id": "testorg/tiny-GGUF"}))
    assert again["data"]["task"]["id"] == task["id"] and again["data"]["created"] is False
    # A second file of the same repo is registered as <repo>:<quant>.
    t2 = await start(c, model_id="testorg/tiny-GGUF", quantization="Q8_0")
    d2 = await wait_status(c, t2["id"], ("completed", "failed"))
    assert d2["status"] == "completed" and d2["model_name"] == "testorg/tiny-GGUF:Q8_0"


async def test_download_bad_input_is_a_4xx_naming_the_field(env):
    await env.open()
    c = env.client
    cases = [
        ({"model_id": "testorg/tiny-GGUF", "source": "civitai"}, 400, "INVALID_SOURCE", "source"),
        ({"source": "huggingface"}, 400, "INVALID_REQUEST", "model_id"),
        ({"model_id": 42}, 400, "INVALID_REQUEST", "model_id"),
        ({"model_id": "../../etc"}, 400, "INVALID_REQUEST", "model_id"),
        ({"model_id": "testorg/nope"}, 404, "MODEL_NOT_FOUND", "model_id"),
        ({"model_id": "testorg/tiny-GGUF", "filename": "nope.gguf"}, 400, "INVALID_REQUEST", "filename"),
        ({"model_id": "testorg/tiny-GGUF", "quantization": "Q2_K"}, 400, "INVALID_REQUEST", "quantization"),
    ]
    for body, status, code, field in cases:
        r = await c.post("/api/downloads/start", json=body)
        data = await _json(r)
        assert (r.status_code, data["error"], data.get("field")) == (status, code, field), (body, data)
        assert data["success"] is False and data["message"]
    r = await c.get("/api/downloads/task_nope")
    assert r.status_code == 404 and (await _json(r))["error"] == "TASK_NOT_FOUND"
    r = await c.get("/api/downloads/list", query_string={"page_size": 101})
    assert r.status_code == 400 and (await _json(r))["field"] == "page_size"
    r = await c.get("/api/downloads/list", query_string={"status": "sleeping"})
    assert r.status_code == 400 and (await _json(r))["field"] == "status"


async def test_pause_and_resume_continue_with_a_range_request(env, files):
    env.hub.throttle_bps = 400_000
    await env.open()
    c = env.client
    task = await start(c, model_id="testorg/big-GGUF")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        d = (await _json(await c.get(f"/api/downloads/{task['id']}")))["data"]
        if d["status"] == "downloading" and d["downloaded_bytes"] > 50_000:
            break
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    paused = (await _json(await c.put(f"/api/downloads/{task['id']}/pause")))["data"]
    assert paused["status"] == "paused"
    partial = Path(paused["files"][0]["path"] + ".partial")
    held = partial.stat().st_size
    assert 0 < held < files["big"].stat().st_size
    assert paused["downloaded_bytes"] == held
    queue = (await _json(await c.get("/api/downloads/queue")))["data"]
    assert queue["paused_count"] == 1 and queue["active_count"] == 0
    # Pausing twice is harmless; cancelling a finished task is not allowed (later).
    assert (await _json(await c.put(f"/api/downloads/{task['id']}/pause")))["data"]["status"] == "paused"
    env.hub.throttle_bps = 0
    resumed = (await _json(await c.put(f"/api/downloads/{task['id']}/resume")))["data"]
    assert resumed["status"] in ("pending", "downloading", "completed")
    done = await wait_status(c, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    ranges = env.hub.ranges("big.Q4_0.gguf")
    assert ranges[0] is None and ranges[-1] == f"bytes={held}-", ranges
    assert sha256_file(Path(done["files"][0]["path"])) == sha256_file(files["big"])
    r = await c.put(f"/api/downloads/{task['id']}/cancel")
    assert r.status_code == 409 and (await _json(r))["error"] == "INVALID_ACTION"


async def test_a_cut_connection_is_retried_from_where_it_stopped(env, files):
    env.hub.fail_once.add("tiny.Q8_0.gguf")
    await env.open()
    task = await start(env.client, model_id="testorg/tiny-GGUF", filename="tiny.Q8_0.gguf")
    done = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    ranges = env.hub.ranges("tiny.Q8_0.gguf")
    assert len(ranges) == 2 and ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert sha256_file(Path(done["files"][0]["path"])) == sha256_file(files["q8"])


async def test_a_corrupt_file_fails_is_deleted_and_nothing_is_registered(env):
    env.hub.corrupt.add("big.Q4_0.gguf")
    await env.open()
    task = await start(env.client, model_id="testorg/big-GGUF")
    done = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert done["status"] == "failed" and done["error_code"] == "CHECKSUM_MISMATCH"
    details = done["error_details"]
    assert "sha256" in done["error"] and details["expected_sha256"] != details["actual_sha256"]
    path = Path(done["files"][0]["path"])
    assert not path.exists() and not Path(str(path) + ".partial").exists()
    assert await env.core.registry.find("testorg/big-GGUF") is None


async def test_not_enough_disk_fails_with_the_figures(env):
    await env.open(**{"downloads.disk_margin_mb": 1024 * 1024 * 1024})  # 1 PiB of margin
    task = await start(env.client, model_id="testorg/big-GGUF")
    done = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert done["status"] == "failed" and done["error_code"] == "INSUFFICIENT_STORAGE"
    figures = done["error_details"]
    assert figures["required_bytes"] == done["total_bytes"] and figures["free_bytes"] > 0
    assert figures["margin_bytes"] == 1024 ** 5
    assert await env.core.registry.find("testorg/big-GGUF") is None
    storage = (await _json(await env.client.get("/api/downloads/storage")))["data"]
    assert storage["free_bytes"] > 0 and storage["disk_margin_mb"] == 1024 ** 3


async def test_split_gguf_downloads_every_part_and_registers_one_model(env, files):
    await env.open()
    task = await start(env.client, model_id="testorg/split-GGUF")
    assert [f["name"] for f in task["files"]] == ["split-00001-of-00002.gguf", "split-00002-of-00002.gguf"]
    done = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    assert all(Path(f["path"]).exists() for f in done["files"])
    model = await env.core.registry.get("testorg/split-GGUF")
    assert model.path.endswith("split-00001-of-00002.gguf")
    assert len([m for m in await env.core.registry.list() if m.name.startswith("testorg/split")]) == 1


async def test_ollama_pull_verifies_the_digest(env, files):
    await env.open()
    task = await start(env.client, model_id="tinyllama", source="ollama")
    assert task["model_id"] == "tinyllama:latest"
    done = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    model = await env.core.registry.get("tinyllama:latest")
    assert model.source == "ollama" and sha256_file(Path(model.path)) == sha256_file(files["ollama"])
    info = (await _json(await env.client.get("/api/models/tinyllama:latest/info",
                                             query_string={"source": "ollama"})))["data"]
    assert info["files"][0]["sha256"] == sha256_file(files["ollama"])
    r = await env.client.post("/api/downloads/start", json={"model_id": "nothere", "source": "ollama"})
    assert r.status_code == 404
    # a blob that does not match its digest fails, is deleted, and registers nothing
    env.hub.add_ollama("library/tinybad", "latest", files["ollama"])
    env.hub.corrupt.add("tinybad:latest")
    bad = await start(env.client, model_id="tinybad", source="ollama")
    done = await wait_status(env.client, bad["id"], ("completed", "failed"))
    assert done["status"] == "failed" and done["error_code"] == "CHECKSUM_MISMATCH", done
    assert not Path(done["files"][0]["path"]).exists()
    assert await env.core.registry.find("tinybad:latest") is None


async def test_queue_is_bounded_cancel_and_delete(env):
    env.hub.throttle_bps = 200_000
    await env.open(**{"downloads.max_concurrent": 1})
    c = env.client
    t1 = await start(c, model_id="testorg/big-GGUF")
    t2 = await start(c, model_id="testorg/tiny-GGUF")
    queue = (await _json(await c.get("/api/downloads/queue")))["data"]
    assert queue["max_concurrent"] == 1 and queue["active_count"] + queue["pending_count"] == 2
    assert [p["id"] for p in queue["pending"]] == [t2["id"]] and queue["pending"][0]["position"] == 1
    assert (await _json(await c.get(f"/api/downloads/{t2['id']}")))["data"]["status"] == "pending"
    await wait_status(c, t1["id"], ("downloading",))
    cancelled = (await _json(await c.put(f"/api/downloads/{t1['id']}/cancel")))["data"]
    assert cancelled["status"] == "cancelled"
    assert not Path(cancelled["files"][0]["path"] + ".partial").exists()
    await wait_status(c, t2["id"], ("downloading", "completed"))  # the slot went to the next task
    listed = (await _json(await c.get("/api/downloads/list", query_string={"status": "cancelled"})))["data"]
    assert [t["id"] for t in listed["items"]] == [t1["id"]] and listed["pagination"]["total"] == 1
    deleted = await _json(await c.delete(f"/api/downloads/{t1['id']}"))
    assert deleted["data"]["deleted"] is True
    assert (await c.get(f"/api/downloads/{t1['id']}")).status_code == 404
    env.hub.throttle_bps = 0
    await wait_status(c, t2["id"], ("completed",))


async def test_sse_progress_ends_when_the_task_finishes(env):
    env.hub.throttle_bps = 1_000_000
    await env.open()
    c = env.client
    task = await start(c, model_id="testorg/big-GGUF")
    r = await c.get(f"/api/downloads/{task['id']}/events")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
    events = parse_sse(await r.get_data(as_text=True))
    assert events[-1] == "[DONE]"
    msgs = [json.loads(e) for e in events[:-1]]
    assert msgs[0]["type"] == "snapshot"
    assert msgs[-1]["task"]["status"] == "completed"
    progress = [m["task"]["progress"] for m in msgs if m["type"] == "progress"]
    assert progress and progress == sorted(progress)
    r = await c.get("/api/downloads/task_nope/events")
    assert r.status_code == 404


async def test_restart_finishes_a_registration_that_a_crash_interrupted(env, files):
    await env.open()
    task = await start(env.client, model_id="testorg/tiny-GGUF", filename="tiny.Q8_0.gguf")
    await wait_status(env.client, task["id"], ("completed",))
    path = Path((await env.core.downloads.get(task["id"])).files[0].path)
    # Re-create the state a crash right after the verify would leave: the file still .partial,
    # the row in phase 'register', no model registered.
    await env.core.registry.repo.delete("testorg/tiny-GGUF")
    path.rename(str(path) + ".partial")
    await env.core.store.downloads.update(task["id"], status="downloading", phase="register", model_name=None)
    await env.close()
    await env.open()
    done = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert done["status"] == "completed" and done["model_name"] == "testorg/tiny-GGUF"
    assert path.exists() and (await env.core.registry.get("testorg/tiny-GGUF")).path == str(path)


async def test_an_interrupted_download_resumes_after_restart(env, files):
    env.hub.throttle_bps = 300_000
    await env.open()
    task = await start(env.client, model_id="testorg/big-GGUF")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    partial = Path(task["files"][0]["path"] + ".partial")
    while not (partial.exists() and partial.stat().st_size > 50_000):
        assert loop.time() < deadline
        await asyncio.sleep(0.02)
    await env.close()  # a clean shutdown: the task stays resumable
    held = partial.stat().st_size
    env.hub.throttle_bps = 0
    await env.open()
    done = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    assert env.hub.ranges("big.Q4_0.gguf")[-1] == f"bytes={held}-"
    assert sha256_file(Path(done["files"][0]["path"])) == sha256_file(files["big"])


async def test_a_failed_registration_resumes_without_downloading_again(env, monkeypatch):
    """Verified files whose registration failed are registered on resume; if they vanished, they are fetched anew."""
    from llmd.errors import ValidationError

    await env.open()
    real_add = env.core.registry.add_file
    refuse = {"on": True}

    async def add_file(*args, **kwargs):
        if refuse["on"]:
            raise ValidationError("the registry refused it (test)")
        return await real_add(*args, **kwargs)

    monkeypatch.setattr(env.core.registry, "add_file", add_file)
    task = await start(env.client, model_id="testorg/tiny-GGUF", filename="tiny.Q8_0.gguf")
    failed = await wait_status(env.client, task["id"], ("completed", "failed"))
    assert failed["status"] == "failed" and failed["phase"] == "register", failed
    path = Path(failed["files"][0]["path"])
    assert path.exists()  # verified and in place
    gets = len(env.hub.ranges("tiny.Q8_0.gguf"))
    refuse["on"] = False
    done = (await _json(await env.client.put(f"/api/downloads/{task['id']}/resume")))["data"]
    assert done["status"] == "completed" and done["model_name"] == "testorg/tiny-GGUF", done
    assert len(env.hub.ranges("tiny.Q8_0.gguf")) == gets  # nothing downloaded again
    # the same failure, but the file is gone before the resume: back to the transfer phase, then a fresh download
    await env.core.registry.repo.delete("testorg/tiny-GGUF")
    refuse["on"] = True
    task2 = await start(env.client, model_id="testorg/tiny-GGUF", filename="tiny.Q8_0.gguf")
    assert (await wait_status(env.client, task2["id"], ("completed", "failed")))["phase"] == "register"
    Path((await env.core.downloads.get(task2["id"])).files[0].path).unlink()
    refuse["on"] = False
    again = (await _json(await env.client.put(f"/api/downloads/{task2['id']}/resume")))["data"]
    assert again["status"] == "failed" and again["phase"] == "transfer", again
    await env.client.put(f"/api/downloads/{task2['id']}/resume")
    done2 = await wait_status(env.client, task2["id"], ("completed", "failed"))
    assert done2["status"] == "completed" and Path(done2["files"][0]["path"]).exists(), done2
