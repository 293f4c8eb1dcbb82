"""Helpers shared by the test suites (not fixtures: plain functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llmd.config import load_config


def write_tiny_gguf(path: Path, *, arch: str = "llama", context_length: int = 256,
                    file_type: int = 3, name: str = "tiny") -> Path:
    """A small but valid GGUF file (header and one tensor), written with the gguf package."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(context_length)
    w.add_file_type(file_type)
    w.add_chat_template("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}assistant:")
    w.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def parse_sse(body: str) -> list[str]:
    """The ``data`` of each event of an SSE body, as the SSE specification assembles it.

    Events end at a blank line; several ``data:`` lines of one event are
    joined with ``\\n``; one space after the colon is dropped.
    """
    events: list[str] = []
    data: list[str] | None = None
    for line in body.replace("\r\n", "\n").split("\n"):
        if line == "":
            if data is not None:
                events.append("\n".join(data))
            data = None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            data = (data or []) + [value]
    if data is not None:
        events.append("\n".join(data))
    return events


async def settle(core, rounds: int = 50) -> None:
    """Let the core's background writes (request log, deployment state) finish."""
    import asyncio

    for _ in range(rounds):
        await asyncio.sleep(0)
        pending = core.background.pending()
        if not pending:
            await asyncio.sleep(0)
            if not core.background.pending():
                return
        else:
            await asyncio.wait(pending, timeout=2)


async def wait_requests(core, n: int, timeout: float = 5.0) -> list[dict]:
    """Poll the request log until it holds at least ``n`` rows (newest first), then return them.

    A row is written from the worker thread's finish hook through the event
    loop, so it lands shortly after the generation's result is seen.
    """
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        await settle(core)
        rows = await core.store.requests.recent()
        if len(rows) >= n or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.01)


def make_config(tmp_path: Path, **flags: object):
    """A config isolated in ``tmp_path``: no /etc file, no environment."""
    base = {"paths.state_dir": str(tmp_path / "state"), "paths.runtime_dir": str(tmp_path / "run"),
            "models.discover_bundled": False, "models.default": "tiny",
            # No test may reach a real hub: an unset endpoint would mean huggingface.co.
            "downloads.hf_endpoint": "http://127.0.0.1:9", "downloads.ollama_registry": "http://127.0.0.1:9",
            # No metrics history unless a test asks for it (it samples the machine).
            "monitor.interval_s": 0}
    base.update(flags)
    tmp_path.mkdir(parents=True, exist_ok=True)
    empty = tmp_path / "llmd.toml"
    if not empty.exists():
        empty.write_text("")
    return load_config(config_file=empty, env={}, flags=base)
