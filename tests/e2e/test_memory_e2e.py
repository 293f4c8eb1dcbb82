"""The memory budget on the real daemon and llama.cpp: the estimate against the process's real growth, and a
budget that fits one deployment and its embedding context.

The growth is read from outside, in /proc/<pid>/status of the daemon, so the test checks both llmd's estimate
and llmd's own measurement against the kernel's figure.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from daemonproc import DaemonProcess
from fakehub import FakeHub
from runnable_gguf import write_random_llama_gguf

from llmd.core.registry import find_bundled_gguf

pytestmark = pytest.mark.e2e

RANDOM_REPO = "testorg/random-llama-GGUF"
BUNDLED = "smollm2-135m-instruct"
SETTINGS = {"max_model_len": 2048, "parallel": 2}
TOLERANCE = 0.10


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    """The second model, a small llama of another shape with random weights, on a local fake hub."""
    src = Path(tempfile.mkdtemp(prefix="llmd-hub-"))
    h = FakeHub()
    h.add_repo(RANDOM_REPO, {"random-llama.Q8_0.gguf": write_random_llama_gguf(src / "random.gguf", n_embd=320,
                                                                              n_layer=6, n_head=5, n_head_kv=1,
                                                                              n_ff=864)})
    with h:
        yield h
    shutil.rmtree(src, ignore_errors=True)


def start(root: Path, hub: FakeHub, extra: str = "") -> DaemonProcess:
    (root / "llmd.toml").write_text(f"[models]\nload_default = false\n{extra}")
    d = DaemonProcess(root, env={"HF_ENDPOINT": hub.url}).start()
    deadline = time.monotonic() + 60
    while True:
        assert d.proc.poll() is None, d.log()
        try:
            if d.socket_path.exists() and api(d).get("/health", timeout=2).status_code == 200:
                return d
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, d.log()
        time.sleep(0.1)


def api(d: DaemonProcess) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(d.socket_path)), base_url="http://llmd", timeout=300)


def rss(d: DaemonProcess) -> int:
    """The daemon's resident memory, as the kernel counts it."""
    for line in Path(f"/proc/{d.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def pull_random(c: httpx.Client) -> str:
    task = c.post("/api/downloads/start", json={"model_id": RANDOM_REPO, "source": "huggingface"}).json()
    task_id = task["data"]["task"]["id"]
    deadline = time.monotonic() + 60
    while True:
        data = c.get(f"/api/downloads/{task_id}").json()["data"]
        if data["status"] == "completed":
            return data["model_name"]
        assert data["status"] not in ("failed", "cancelled") and time.monotonic() < deadline, data
        time.sleep(0.05)


def deployment(c: httpx.Client, name: str) -> dict:
    items = c.get("/api/deployments/list").json()["data"]["items"]
    return next(i for i in items if i["model_id"] == name and i["status"] == "running")


def exercise(c: httpx.Client, name: str) -> None:
    """A chat whose prompt fills most of a slot (every compute page a step can touch), and embeddings of a long
    and a short input (the embedding context and a whole chunk)."""
    long_text = " ".join(f"item {i} is a small blue stone." for i in range(180))
    r = c.post("/v1/chat/completions", json={"model": name, "max_tokens": 4, "temperature": 0,
                                             "messages": [{"role": "user", "content": long_text}]})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 1500
    r = c.post("/v1/embeddings", json={"model": name, "input": [long_text[:5000], "hello"]})
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 1000


@pytest.mark.parametrize("which", ["bundled", "random"])
def test_the_estimate_is_within_ten_percent_of_the_real_growth(hub, which, tmp_path):
    d = start(tmp_path, hub)
    try:
        with api(d) as c:
            name = BUNDLED if which == "bundled" else pull_random(c)
            time.sleep(0.5)
            before = rss(d)
            r = c.post("/api/deployments/start", json={"model_id": name, "wait": True, **SETTINGS})
            assert r.status_code in (200, 201) and r.json()["data"]["status"] == "running", r.text
            loaded = deployment(c, name)
            exercise(c, name)
            grown = rss(d) - before
            dep = deployment(c, name)
            est, measured = dep["memory"]["estimate"], dep["memory"]["measured"]
            mib = 1 << 20
            summary = (f"{which}: grew {grown / mib:.1f} MiB; estimate {est}; measured {measured}; "
                       f"at load {loaded['memory']}")
            print(summary)
            # The estimate, and llmd's own measurement, within 10% of what the kernel says the process grew by
            assert abs(dep["memory_estimate_mb"] * mib - grown) <= TOLERANCE * grown, summary
            assert abs(dep["memory_measured_mb"] * mib - grown) <= TOLERANCE * grown, summary
            # Before any embeddings the measurement left the embedding context out, and the estimate did not
            assert loaded["memory"]["measured"]["embedding"] == 0 and est["embedding"] > 0
            assert measured["embedding"] > 0.5 * est["embedding"]
            # What the budget counts is the larger figure; /health and /metrics show them too
            assert dep["memory_mb"] == max(dep["memory_estimate_mb"], dep["memory_measured_mb"])
            health = c.get("/health").json()["details"]
            (h,) = [x for x in health["deployments"] if x["model"] == name]
            assert h["memory_estimate_mb"] == dep["memory_estimate_mb"] and h["memory_measured_mb"] > 0
            assert health["memory_budget_mb"] > 0 and "derived" in health["memory_budget_source"]
            metrics = c.get("/metrics").text
            assert f'llmd_deployment_memory_estimate_bytes{{model="{name}"}}' in metrics
            assert f'llmd_deployment_memory_measured_bytes{{model="{name}"}}' in metrics
    finally:
        d.stop()


def test_a_budget_for_one_model_and_its_embedding_context(hub, tmp_path):
    d = start(tmp_path, hub, "[deployments]\npin_default = false\n")
    try:
        with api(d) as c:
            second = pull_random(c)
            r = c.post("/api/deployments/start", json={"model_id": BUNDLED, "wait": True, **SETTINGS})
            assert r.json()["data"]["status"] == "running", r.text
            exercise(c, BUNDLED)  # the embedding context exists and is counted
            first = deployment(c, BUNDLED)
            # A budget that holds the first deployment, embedding context included, and not a second one
            budget_mb = int(first["memory_mb"]) + 20
            r = c.put("/api/config", json={"settings": {"deployments.memory_budget_mb": budget_mb}})
            assert r.status_code == 200 and "deployments.memory_budget_mb" in r.json()["applied"], r.text
            # The first is idle: starting the second evicts it
            r = c.post("/api/deployments/start", json={"model_id": second, "wait": True, **SETTINGS})
            assert r.status_code in (200, 201) and r.json()["data"]["status"] == "running", r.text
            items = c.get("/api/deployments/list").json()["data"]["items"]
            old = next(i for i in items if i["model_id"] == BUNDLED)
            assert old["status"] == "stopped" and old["stop_reason"] == "evicted", old
            # Pinned, the first refuses to make room: the start is refused with the figures, in each API's envelope
            r = c.post("/api/deployments/start", json={"model_id": BUNDLED, "wait": True, "pinned": True,
                                                       **SETTINGS})
            assert r.json()["data"]["status"] == "running", r.text
            r = c.post("/api/deployments/start", json={"model_id": second, "wait": True, **SETTINGS})
            body = r.json()
            assert r.status_code == 503 and body["success"] is False and body["error"] == "INSUFFICIENT_RESOURCES"
            figures = body["details"]
            assert figures["needed_mb"] == figures["estimate"]["total"] and figures["budget_mb"] == budget_mb
            (held,) = figures["deployments"]
            assert held["model"] == BUNDLED and held["pinned"] and held["measured_mb"] > 0
            r = c.post("/v1/chat/completions", json={"model": second, "max_tokens": 2,
                                                     "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code != 200
            r = c.post("/llmd/v1/models/" + second + "/load")
            assert 400 <= r.status_code < 600 and r.status_code != 500, r.text
            # The daemon is alive and still serves the first
            assert d.proc.poll() is None
            r = c.post("/v1/chat/completions", json={"model": BUNDLED, "max_tokens": 2,
                                                     "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
    finally:
        d.stop()


def test_bundled_model_is_there():
    assert find_bundled_gguf()
