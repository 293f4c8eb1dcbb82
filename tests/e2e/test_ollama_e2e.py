"""The official Ollama clients against the real daemon and the bundled model.

The Python client (``ollama`` on PyPI) lists, shows, chats (streamed and not),
generates, embeds, pulls from the fake Ollama registry and a fake Hugging Face
hub (tests/fakehub.py) with progress, copies, deletes, and creates a model from
the bundled GGUF through its blob upload; the JavaScript client (``ollama`` on
npm, installed into a cache directory outside the repository) streams a chat
under Node.
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
from daemonproc import DaemonProcess
from fakehub import FakeHub, write_gguf

from llmd.core.registry import find_bundled_gguf

ollama = pytest.importorskip("ollama", reason="the ollama client is not installed (pip install '.[test]')")

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct"
JS = Path(__file__).parent / "js"
JS_CACHE = Path(os.environ.get("LLMD_OLLAMA_JS_DIR", Path.home() / ".cache" / "llmd-ollama-js"))


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    src = Path(tempfile.mkdtemp(prefix="llmd-hub-"))
    h = FakeHub()
    h.add_ollama("library/tinyllama", "latest", write_gguf(src / "ollama.gguf", payload_bytes=300_000, seed=21))
    h.add_repo("testorg/tiny-GGUF", {"tiny.Q8_0.gguf": write_gguf(src / "tiny.gguf", payload_bytes=100_000,
                                                                   file_type=7, seed=22)}, downloads=5)
    with h:
        yield h
    shutil.rmtree(src, ignore_errors=True)


@pytest.fixture(scope="module")
def daemon(hub: FakeHub) -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    (root / "llmd.toml").write_text(f"""
[downloads]
ollama_registry = "{hub.url}"
progress_interval_s = 0.05
disk_margin_mb = 1

[hub]
timeout_s = 5.0
""")
    d = DaemonProcess(root, env={"HF_ENDPOINT": hub.url}).start()
    try:
        d.wait_loaded()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def client(daemon: DaemonProcess):
    return ollama.Client(host=daemon.url, timeout=120)


def names(client) -> set[str]:
    return {m.model for m in client.list().models}


def test_probe_version_list_show_ps(daemon, client):
    r = httpx.get(daemon.url + "/")
    assert r.status_code == 200 and r.text == "Ollama is running"
    assert httpx.get(daemon.url + "/api/version").json()["version"]
    assert f"{MODEL}:latest" in names(client)
    info = client.show(MODEL)
    assert info.modelinfo["general.architecture"] == "llama"
    assert info.details.family == "llama" and info.details.quantization_level
    assert "completion" in info.capabilities and info.template
    loaded = client.ps().models
    assert [m.model for m in loaded] == [f"{MODEL}:latest"] and loaded[0].size > 0


def test_chat_not_streamed(client):
    r = client.chat(model=f"{MODEL}:latest", messages=[{"role": "user", "content": "What is the capital of France?"}],
                    options={"num_predict": 24, "temperature": 0, "seed": 1})
    assert r.message.role == "assistant" and r.message.content.strip()
    assert r.done and r.done_reason in ("stop", "length")
    assert 0 < r.eval_count <= 24 and r.prompt_eval_count > 5
    assert r.eval_duration > 0 and r.prompt_eval_duration > 0 and r.total_duration >= r.eval_duration


def test_chat_streamed(client):
    parts = list(client.chat(model=MODEL, messages=[{"role": "user", "content": "Count from one to five."}],
                             stream=True, options={"num_predict": 20, "temperature": 0}))
    *pieces, last = parts
    assert len(pieces) > 1 and "".join(p.message.content for p in pieces).strip()
    assert last.done and last.eval_count > 0 and last.total_duration > 0


def test_generate_and_format_json(client):
    r = client.generate(model=MODEL, prompt="Say hello.", options={"num_predict": 12, "temperature": 0})
    assert r.response.strip() and r.done
    r = client.generate(model=MODEL, prompt="Give a JSON object with a key 'a'.", format="json",
                        options={"num_predict": 40, "temperature": 0})
    if r.done_reason == "stop":
        assert isinstance(json.loads(r.response), dict)


def test_embed(client):
    r = client.embed(model=MODEL, input=["hello", "a second input"])
    assert len(r.embeddings) == 2 and len(r.embeddings[0]) > 100
    assert len(client.embeddings(model=MODEL, prompt="hello").embedding) == len(r.embeddings[0])


def test_unknown_model_is_a_404(client):
    with pytest.raises(ollama.ResponseError) as info:
        client.chat(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404 and "no-such-model" in info.value.error


def test_pull_from_the_ollama_registry_with_progress(client):
    progress = list(client.pull("tinyllama", stream=True))
    statuses = [p.status for p in progress]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    transfer = [p for p in progress if p.status.startswith("pulling ") and p.total]
    assert transfer and transfer[-1].total >= 300_000 and transfer[-1].completed <= transfer[-1].total
    assert all(p.digest.startswith("sha256:") for p in transfer)
    assert "tinyllama:latest" in names(client)
    # again: already there, nothing fetched
    assert client.pull("tinyllama").status == "success"


def test_pull_from_hugging_face_by_hf_co_name(client):
    assert client.pull("hf.co/testorg/tiny-GGUF:Q8_0").status == "success"
    assert "hf.co/testorg/tiny-GGUF:Q8_0" in names(client)
    assert client.show("hf.co/testorg/tiny-GGUF:Q8_0").details.quantization_level == "Q8_0"


def test_copy_then_delete(client):
    client.copy(MODEL, "smol-copy")
    assert "smol-copy:latest" in names(client)
    r = client.chat(model="smol-copy", messages=[{"role": "user", "content": "Hi"}], options={"num_predict": 4})
    assert r.done
    client.delete("smol-copy")
    assert "smol-copy:latest" not in names(client) and f"{MODEL}:latest" in names(client)
    client.delete("tinyllama")
    assert "tinyllama:latest" not in names(client)
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("tinyllama")
    assert info.value.status_code == 404


def test_create_from_the_bundled_gguf(client, daemon):
    digest = client.create_blob(find_bundled_gguf()[0])
    assert httpx.head(f"{daemon.url}/api/blobs/{digest}").status_code == 200
    steps = list(client.create(model="smol-made", files={"model.gguf": digest}, system="Answer in one word.",
                               parameters={"num_predict": 6, "temperature": 0}, stream=True))
    assert steps[-1].status == "success"
    r = client.chat(model="smol-made", messages=[{"role": "user", "content": "What color is the sky?"}])
    assert r.done and 0 < r.eval_count <= 6  # the created model's own num_predict
    assert "SYSTEM \"\"\"Answer in one word.\"\"\"" in client.show("smol-made").modelfile
    client.generate(model="smol-made", keep_alive=0)  # unload it again
    deadline = time.monotonic() + 10
    while "smol-made:latest" in {m.model for m in client.ps().models}:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    client.delete("smol-made")


# -- the JavaScript client ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ollama_js() -> Path:
    """The npm ``ollama`` package's ESM entry, installed once into a cache directory outside the repo."""
    entry = JS_CACHE / "node_modules" / "ollama" / "dist" / "index.mjs"
    if entry.exists():
        return entry
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        pytest.skip("node and npm are needed for the Ollama JavaScript client")
    JS_CACHE.mkdir(parents=True, exist_ok=True)
    try:
        p = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(JS_CACHE), "ollama"],
                           capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.skip("npm could not install the ollama package within 300 s")
    if p.returncode != 0 or not entry.exists():
        pytest.skip(f"npm could not install the ollama package: {p.stderr[-500:]}")
    return entry


def test_javascript_client_streams_a_chat(daemon, ollama_js):
    env = {**os.environ, "OLLAMA_JS": str(ollama_js), "OLLAMA_HOST": daemon.url, "OLLAMA_MODEL": MODEL}
    p = subprocess.run([shutil.which("node") or "node", str(JS / "ollama_chat.mjs")], capture_output=True,
                       text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    assert f"{MODEL}:latest" in out["models"]
    assert out["pieces"] > 1 and out["text"].strip() and out["done"] is True
    assert out["eval_count"] > 0 and out["eval_duration"] > 0
