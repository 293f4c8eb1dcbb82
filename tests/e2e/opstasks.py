"""Waiting for seed 002's lifecycle tasks over HTTP (shared by the ops and vLLM end-to-end tests)."""

from __future__ import annotations

import time

import httpx


def wait_task(http: httpx.Client, task_id: str, timeout: float = 180) -> dict:
    """Poll ``GET /api/tasks/{task_id}`` until the task has completed or failed; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = http.get(f"/api/tasks/{task_id}").json()
        if task["status"] in ("completed", "failed"):
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} did not finish in {timeout}s")
