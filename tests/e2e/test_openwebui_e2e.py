"""Open WebUI with llmd as its Ollama backend: it lists llmd's models and streams an answer through its own API.

Open WebUI is big (PyTorch among its dependencies), so it is never installed
into the project's venv: it lives in its own venv under
``~/.cache/llmd-openwebui`` (``LLMD_OPENWEBUI_DIR``), made on first use with
``python3.11 -m venv`` and ``pip install open-webui``. The test is skipped,
saying why, when that install is not there and cannot be made.
``LLMD_OPENWEBUI_INSTALL=0`` skips instead of installing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest
from daemonproc import DaemonProcess, free_port

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m-instruct:latest"
CACHE = Path(os.environ.get("LLMD_OPENWEBUI_DIR", Path.home() / ".cache" / "llmd-openwebui"))


def _open_webui() -> Path:
    """The ``open-webui`` program of the cached venv, installed now if it is not there."""
    exe = CACHE / "venv" / "bin" / "open-webui"
    if exe.exists():
        return exe
    if os.environ.get("LLMD_OPENWEBUI_INSTALL", "1") == "0":
        pytest.skip(f"Open WebUI is not installed in {CACHE} (LLMD_OPENWEBUI_INSTALL=0)")
    python = shutil.which("python3.11") or shutil.which("python3.12") or sys.executable
    CACHE.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run([python, "-m", "venv", str(CACHE / "venv")], check=True, capture_output=True, timeout=120)
        p = subprocess.run([str(CACHE / "venv" / "bin" / "pip"), "install", "-q", "open-webui"],
                           capture_output=True, text=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"Open WebUI could not be installed into {CACHE}: {exc}")
    if p.returncode != 0 or not exe.exists():
        pytest.skip(f"Open WebUI could not be installed into {CACHE}: {p.stderr[-500:]}")
    return exe


@pytest.fixture(scope="module")
def llmd() -> Iterator[DaemonProcess]:
    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    d = DaemonProcess(root).start()
    try:
        d.wait_loaded()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def webui(llmd: DaemonProcess) -> Iterator[str]:
    exe = _open_webui()
    data = Path(tempfile.mkdtemp(prefix="llmd-owui-"))
    port = free_port()
    env = {**os.environ, "DATA_DIR": str(data), "OLLAMA_BASE_URL": llmd.url, "WEBUI_AUTH": "False",
           "ENABLE_OPENAI_API": "False", "OFFLINE_MODE": "true", "HF_HUB_OFFLINE": "1",
           "BYPASS_EMBEDDING_AND_RETRIEVAL": "true", "ENABLE_VERSION_UPDATE_CHECK": "false",
           "WEBUI_SECRET_KEY": "llmd-e2e", "ANONYMIZED_TELEMETRY": "false", "DO_NOT_TRACK": "true",
           "SCARF_NO_ANALYTICS": "true", "RAG_EMBEDDING_MODEL_AUTO_UPDATE": "false"}
    log = (data / "open-webui.log").open("wb")
    proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(port)], stdout=log,
                            stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # the first start migrates its database and imports a lot
        while True:
            assert proc.poll() is None, (data / "open-webui.log").read_text(errors="replace")[-3000:]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "Open WebUI did not come up in 300 s"
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(data, ignore_errors=True)


def test_open_webui_lists_llmd_models_and_streams_an_answer(webui):
    # WEBUI_AUTH=False: one admin user, whose token the sign-in hands out
    token = httpx.post(f"{webui}/api/v1/auths/signin", json={"email": "", "password": ""}, timeout=30).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    models = httpx.get(f"{webui}/api/models", headers=headers, timeout=60).json()["data"]
    ours = [m for m in models if m["id"] == MODEL]
    assert ours and ours[0]["owned_by"] == "ollama", models
    body = {"model": MODEL, "stream": True, "max_tokens": 24,
            "messages": [{"role": "user", "content": "Count from one to five."}]}
    pieces = []
    with httpx.stream("POST", f"{webui}/api/chat/completions", headers=headers, json=body, timeout=120) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or ():
                if (choice.get("delta") or {}).get("content"):
                    pieces.append(choice["delta"]["content"])
    assert len(pieces) > 1 and "".join(pieces).strip()
