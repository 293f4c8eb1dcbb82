"""Hub search and downloads against the real daemon, with the fake hub on 127.0.0.1 as HF_ENDPOINT.

Covers: a full pull of the bundled model, then load and chat with it under its
new name; pause/resume and progress over WebSocket /ws/downloads; kill -9 of
the daemon mid-download, then a restart that resumes from the partial file
(the hub logs ``Range: bytes=N-``) and a favourite that survived; llmctl
search, pull and downloads.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from daemonproc import DaemonProcess, interruptible, llmd_bin
from fakehub import FakeHub, sha256_file, write_gguf

from llmd.core.registry import find_bundled_gguf

pytestmark = pytest.mark.e2e

BUNDLED_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"


def config_text(hub: FakeHub, disk_margin_mb: int = 1) -> str:
    return f"""
[models]
load_default = false

[downloads]
ollama_registry = "{hub.url}"
retry_backoff_s = 0.1
progress_interval_s = 0.1
disk_margin_mb = {disk_margin_mb}

[hub]
cache_ttl_s = 0
timeout_s = 5.0
"""


def start_daemon(root: Path, hub: FakeHub, disk_margin_mb: int = 1) -> DaemonProcess:
    (root / "llmd.toml").write_text(config_text(hub, disk_margin_mb))
    d = DaemonProcess(root, env={"HF_ENDPOINT": hub.url}).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if d.proc is not None and d.proc.poll() is not None:
            raise RuntimeError(f"llmd exited:\n{d.log()}")
        if d.socket_path.exists():
            try:
                if api(d).get("/health", timeout=2).status_code == 200:
                    return d
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"llmd did not come up:\n{d.log()}")


def api(d: DaemonProcess) -> httpx.Client:
    """A client over the daemon's Unix socket (a local admin)."""
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket_path)), base_url="http://llmd", timeout=60)


def wait_task(d: DaemonProcess, task_id: str, states: tuple[str, ...], timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    with api(d) as c:
        while True:
            body = c.get(f"/api/downloads/{task_id}").json()
            assert body["success"], body
            if body["data"]["status"] in states:
                return body["data"]
            assert time.monotonic() < deadline, f"{task_id} stayed {body['data']}\n{d.log()[-3000:]}"
            time.sleep(0.05)


def llmctl(d: DaemonProcess, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    return subprocess.run([llmd_bin("llmctl"), "--socket", str(d.socket_path), *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    src = Path(tempfile.mkdtemp(prefix="llmd-hub-"))
    bundled = find_bundled_gguf()[0]
    h = FakeHub()
    h.add_repo(BUNDLED_REPO, {bundled.name: bundled}, downloads=9000, trending=50)
    h.add_repo("testorg/slow-GGUF", {"slow.Q4_K_M.gguf": write_gguf(src / "slow.gguf", payload_bytes=1_500_000,
                                                                     seed=11)}, downloads=10)
    h.add_repo("testorg/tty-GGUF", {"tty.Q4_K_M.gguf": write_gguf(src / "tty.gguf", payload_bytes=1_500_000,
                                                               seed=14)}, downloads=3)
    h.add_repo("testorg/tiny-GGUF", {"tiny.Q8_0.gguf": write_gguf(src / "tiny.gguf", payload_bytes=100_000,
                                                                   file_type=7, seed=12)}, downloads=5)
    h.add_ollama("library/tinyllama", "latest", write_gguf(src / "ollama.gguf", payload_bytes=80_000, seed=13))
    with h:
        yield h
    shutil.rmtree(src, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon_hub(hub: FakeHub) -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    d = start_daemon(root, hub)
    try:
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_full_pull_of_the_bundled_model_then_deploy_and_chat(daemon_hub, hub):
    hub.throttle_bps = 0
    bundled = find_bundled_gguf()[0]
    with api(daemon_hub) as c:
        found = c.get("/api/models/search", params={"query": "SmolLM2"}).json()["data"]
        assert found["items"][0]["id"] == BUNDLED_REPO and found["from_cache"] is False
        r = c.post("/api/downloads/start", json={"model_id": BUNDLED_REPO, "source": "huggingface"})
        assert r.status_code == 200, r.text
        task = r.json()["data"]["task"]
    done = wait_task(daemon_hub, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    path = Path(done["files"][0]["path"])
    assert sha256_file(path) == sha256_file(bundled) == done["files"][0]["sha256"]
    name = done["model_name"]
    assert name == BUNDLED_REPO
    with api(daemon_hub) as c:
        models = {m["name"]: m for m in c.get("/llmd/v1/models").json()["models"]}
        assert models[name]["source"] == "hf" and models[name]["path"] == str(path)
        # deploy through seed 004 with chosen settings, chat with the deployment, then through the OpenAI dialect
        r = c.post("/api/deployments/start", json={"model_id": name, "max_model_len": 1024, "wait": True})
        assert r.status_code in (200, 201), r.text
        dep = r.json()["data"]
        assert dep["status"] == "running" and dep["max_model_len"] == 1024, dep
        r = c.post(f"/api/chat/{dep['deployment_id']}", json={
            "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 8, "temperature": 0})
        assert r.status_code == 200, r.text
        assert r.json()["data"]["choices"][0]["message"]["content"].strip()
        r = c.post("/v1/chat/completions", json={"model": name, "max_tokens": 8, "temperature": 0,
                                                 "messages": [{"role": "user", "content": "Say hi."}]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == name and body["choices"][0]["message"]["content"].strip()
        assert c.put(f"/api/deployments/{dep['deployment_id']}/stop").json()["data"]["status"] == "stopped"
        # Bad input: seed 004's envelope naming the field.
        r = c.post("/api/downloads/start", json={"model_id": 5})
        assert r.status_code == 400 and r.json()["success"] is False and r.json()["field"] == "model_id"


def test_pause_resume_with_progress_over_websocket(daemon_hub, hub):
    from websockets.sync.client import unix_connect

    hub.throttle_bps = 300_000
    with unix_connect(str(daemon_hub.socket_path), "ws://llmd/ws/downloads") as ws:
        snapshot = json.loads(ws.recv(timeout=10))
        assert snapshot["type"] == "snapshot" and isinstance(snapshot["tasks"], list)
        with api(daemon_hub) as c:
            task = c.post("/api/downloads/start", json={"model_id": "testorg/slow-GGUF"}).json()["data"]["task"]
        seen: list[dict] = []
        deadline = time.monotonic() + 30
        while not any(m["type"] == "progress" and m["task"]["downloaded_bytes"] > 100_000 for m in seen):
            assert time.monotonic() < deadline, seen[-3:]
            msg = json.loads(ws.recv(timeout=10))
            if msg.get("task_id") == task["id"]:
                seen.append(msg)
        assert {"status", "progress"} <= {m["type"] for m in seen}
        with api(daemon_hub) as c:
            paused = c.put(f"/api/downloads/{task['id']}/pause").json()["data"]
        assert paused["status"] == "paused"
        held = Path(paused["files"][0]["path"] + ".partial").stat().st_size
        assert held > 0
        deadline = time.monotonic() + 10
        while True:  # the pause is pushed too
            msg = json.loads(ws.recv(timeout=10))
            if msg.get("task_id") == task["id"] and msg["task"]["status"] == "paused":
                break
            assert time.monotonic() < deadline
    hub.throttle_bps = 0
    with api(daemon_hub) as c:
        assert c.put(f"/api/downloads/{task['id']}/resume").json()["success"]
    done = wait_task(daemon_hub, task["id"], ("completed", "failed"))
    assert done["status"] == "completed", done
    assert hub.ranges("slow.Q4_K_M.gguf")[-1] == f"bytes={held}-"
    assert sha256_file(Path(done["files"][0]["path"])) == done["files"][0]["sha256"]


def test_kill_9_mid_download_then_restart_resumes_from_the_partial_file(hub, short_tmp):
    hub.throttle_bps = 250_000
    d = start_daemon(short_tmp, hub)
    try:
        with api(d) as c:
            assert c.post("/api/models/testorg/tiny-GGUF/favorite").json()["data"]["favorite"] is True
            task = c.post("/api/downloads/start", json={"model_id": "testorg/slow-GGUF"}).json()["data"]["task"]
        partial = Path(task["files"][0]["path"] + ".partial")
        deadline = time.monotonic() + 30
        while not (partial.exists() and partial.stat().st_size > 200_000):
            assert time.monotonic() < deadline, d.log()[-2000:]
            time.sleep(0.02)
        d.proc.kill()  # SIGKILL: no shutdown code runs
        d.proc.wait()
        held = partial.stat().st_size
        assert 0 < held < task["total_bytes"]
    finally:
        d.stop()
    hub.throttle_bps = 0
    before = len(hub.ranges("slow.Q4_K_M.gguf"))
    d2 = start_daemon(short_tmp, hub)
    try:
        done = wait_task(d2, task["id"], ("completed", "failed"))
        assert done["status"] == "completed", done
        resumed = hub.ranges("slow.Q4_K_M.gguf")[before:]
        assert resumed == [f"bytes={held}-"], resumed
        assert sha256_file(Path(done["files"][0]["path"])) == done["files"][0]["sha256"]
        with api(d2) as c:
            assert any(m["name"] == "testorg/slow-GGUF" for m in c.get("/llmd/v1/models").json()["models"])
            assert c.get("/api/models/stats").json()["data"]["favorites"] == 1
            info = c.get("/api/models/testorg/tiny-GGUF/info").json()["data"]
            assert info["favorite"] is True
    finally:
        d2.stop()


def test_llmctl_search_pull_and_downloads(daemon_hub, hub):
    hub.throttle_bps = 0
    p = llmctl(daemon_hub, "search", "GGUF")
    assert p.returncode == 0, p.stderr
    assert "testorg/tiny-GGUF" in p.stdout and BUNDLED_REPO in p.stdout
    p = llmctl(daemon_hub, "pull", "testorg/tiny-GGUF:tiny.Q8_0.gguf", "--wait")
    assert p.returncode == 0, p.stderr
    assert "completed; registered as 'testorg/tiny-GGUF'" in p.stdout
    p = llmctl(daemon_hub, "pull", "tinyllama", "--source", "ollama", "--wait")
    assert p.returncode == 0, p.stderr
    assert "registered as 'tinyllama:latest'" in p.stdout
    p = llmctl(daemon_hub, "downloads")
    assert p.returncode == 0 and "testorg/tiny-GGUF" in p.stdout and "tinyllama:latest" in p.stdout
    assert "completed" in p.stdout
    rows = json.loads(llmctl(daemon_hub, "downloads", "--json", "--status", "completed").stdout)["items"]
    assert {"testorg/tiny-GGUF", "tinyllama:latest"} <= {t["model_id"] for t in rows}
    p = llmctl(daemon_hub, "downloads", "pause", "task_nope")
    assert p.returncode == 1 and "task_nope" in p.stderr and "Traceback" not in p.stderr
    p = llmctl(daemon_hub, "pull", "testorg/none-GGUF", "--wait")
    assert p.returncode == 1 and "not found" in p.stderr


def test_llmctl_pull_on_a_terminal_ctrl_c_detaches_and_wait_attaches_again(daemon_hub, hub):
    """On a real terminal: a live progress bar; Ctrl-C leaves the download running; --wait follows it to the end."""
    import pty
    import signal

    from test_llmctl_tty import Terminal

    hub.throttle_bps = 200_000  # the 1.5 MB file takes ~7 s
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    env["COLUMNS"] = "120"
    proc = subprocess.Popen([llmd_bin("llmctl"), "--socket", str(daemon_hub.socket_path), "pull",
                             "testorg/tty-GGUF"], stdin=slave, stdout=slave, stderr=slave, env=env,
                            start_new_session=True, preexec_fn=interruptible)
    os.close(slave)
    try:
        term = Terminal(master)
        term.expect(b"B/s", 30)  # the bar is drawn, with its speed
        os.killpg(proc.pid, signal.SIGINT)
        out = term.expect(b"attaches again", 15)
        assert b"detached" in out and b"Traceback" not in out
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    with api(daemon_hub) as c:
        rows = c.get("/api/downloads/list", params={"status": "downloading"}).json()["data"]["items"]
    assert [t["model_id"] for t in rows] == ["testorg/tty-GGUF"]  # still going after the client left
    hub.throttle_bps = 0
    p = llmctl(daemon_hub, "pull", "testorg/tty-GGUF", "--wait")
    assert p.returncode == 0, p.stderr
    assert "registered as 'testorg/tty-GGUF" in p.stdout


def test_the_daemon_wide_event_feed_carries_a_download_throttled(daemon_hub, hub, tmp_path):
    """GET /api/downloads/events: a snapshot, then progress and status events of every task, throttled."""
    hub.throttle_bps = 0
    size = 1_000_000
    hub.add_repo("testorg/feed-GGUF", {"feed.Q4_K_M.gguf": write_gguf(tmp_path / "feed.gguf", payload_bytes=size,
                                                                       seed=15)}, downloads=1)
    hub.throttle_bps = size  # ~1 s of transfer, written in ~60 chunks of 16 KiB
    msgs: list[dict] = []
    with api(daemon_hub) as c, c.stream("GET", "/api/downloads/events") as feed:
        assert feed.status_code == 200 and feed.headers["content-type"].startswith("text/event-stream")
        lines = feed.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["type"] == "snapshot"
        with api(daemon_hub) as starter:
            task = starter.post("/api/downloads/start", json={"model_id": "testorg/feed-GGUF"}).json()["data"]["task"]
        for line in lines:
            if not line.startswith("data: "):
                continue
            msg = json.loads(line[6:])
            if msg.get("task_id") == task["id"]:
                msgs.append(msg)
                if msg["task"]["status"] in ("completed", "failed"):
                    break
    hub.throttle_bps = 0
    assert msgs[-1]["task"]["status"] == "completed", msgs[-1]
    progress = [m["task"]["downloaded_bytes"] for m in msgs if m["type"] == "progress"]
    assert progress and progress == sorted(progress)
    # progress_interval_s = 0.1 over ~1 s gives ~10 events; one per chunk written would be ~60
    chunks = size // (16 * 1024)
    assert len(progress) < chunks // 2, (len(progress), chunks)


def test_a_corrupt_file_fails_and_nothing_is_registered(daemon_hub, hub, tmp_path):
    hub.throttle_bps = 0
    hub.add_repo("testorg/bad-GGUF", {"bad.Q4_K_M.gguf": write_gguf(tmp_path / "bad.gguf", payload_bytes=200_000,
                                                                     seed=16)}, downloads=1)
    hub.corrupt.add("bad.Q4_K_M.gguf")
    with api(daemon_hub) as c:
        task = c.post("/api/downloads/start", json={"model_id": "testorg/bad-GGUF"}).json()["data"]["task"]
    done = wait_task(daemon_hub, task["id"], ("completed", "failed"))
    assert done["status"] == "failed" and done["error_code"] == "CHECKSUM_MISMATCH", done
    path = Path(done["files"][0]["path"])
    assert not path.exists() and not Path(str(path) + ".partial").exists()
    with api(daemon_hub) as c:
        assert "testorg/bad-GGUF" not in {m["name"] for m in c.get("/llmd/v1/models").json()["models"]}


def test_offline_cache_and_disk_space_on_a_daemon_of_its_own(tmp_path):
    """Search and info answer from the cache once the hub is gone; a margin larger than the disk fails the pull."""
    h = FakeHub()
    h.add_repo("testorg/cached-GGUF", {"cached.Q4_K_M.gguf": write_gguf(tmp_path / "c.gguf", payload_bytes=50_000,
                                                                         seed=17)}, downloads=7)
    h.start()
    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    d = start_daemon(root, h, disk_margin_mb=1 << 30)  # a margin of 1 PiB: no disk has that much free
    try:
        with api(d) as c:
            online = c.get("/api/models/search", params={"query": "cached"}).json()["data"]
            assert [i["id"] for i in online["items"]] == ["testorg/cached-GGUF"] and online["from_cache"] is False
            assert c.get("/api/models/testorg/cached-GGUF/info").json()["data"]["from_cache"] is False
            r = c.post("/api/downloads/start", json={"model_id": "testorg/cached-GGUF"})
            body = r.json()
            if r.status_code == 200:  # refused when the task runs rather than at once
                body = {"error": wait_task(d, body["data"]["task"]["id"], ("failed", "completed"))["error_code"]}
            assert body["error"] == "INSUFFICIENT_STORAGE", body
            h.stop()  # the hub goes away
            cached = c.get("/api/models/search", params={"query": "cached"}).json()["data"]
            assert [i["id"] for i in cached["items"]] == ["testorg/cached-GGUF"]
            assert cached["from_cache"] is True and cached["cache_age_s"] >= 0 and cached["hub_error"]
            info = c.get("/api/models/testorg/cached-GGUF/info").json()["data"]
            assert info["from_cache"] is True and info["files"][0]["filename"] == "cached.Q4_K_M.gguf"
    finally:
        d.stop()
        h.close()
        shutil.rmtree(root, ignore_errors=True)
