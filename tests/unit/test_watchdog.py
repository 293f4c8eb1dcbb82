"""The watchdog follows the engine too: a decode step stuck past engine.stall_timeout_s stops the pings."""

from __future__ import annotations

import asyncio
import socket

from llmd.core.engine.fake import FakeEngine
from llmd.core.types import GenerateRequest, SamplingParams
from llmd.notify import Notifier


async def test_a_stuck_decode_step_is_reported_then_clears(core_factory):
    engine = FakeEngine()
    core = await core_factory(engine)
    assert core.fleet.stall(0.2) is None
    engine.decode_gate.clear()  # the next llama_decode never returns (until the test lets it)
    gen = await core.inference.generate(GenerateRequest(prompt="hi", params=SamplingParams(max_tokens=4)))
    await asyncio.sleep(0.5)
    problem = core.fleet.stall(0.2)
    assert problem is not None and "'tiny'" in problem and "engine.stall_timeout_s=0.2" in problem
    assert core.fleet.stall(0) is None  # 0: never
    engine.decode_gate.set()
    async for _ in gen:
        pass
    assert core.fleet.stall(0.2) is None


async def test_the_watchdog_stops_pinging_while_stalled(tmp_path, monkeypatch):
    path = tmp_path / "notify.sock"
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))  # sdnotify reads it from the environment
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"})  # a ping every 0.05 s
    stalled = False
    task = asyncio.ensure_future(n.watchdog(lambda: "stuck" if stalled else None))

    async def pings(seconds: float) -> list[str]:
        await asyncio.sleep(seconds)
        out = []
        while True:
            try:
                out.append(sock.recv(4096).decode())
            except BlockingIOError:
                return out

    try:
        assert "WATCHDOG=1" in await pings(0.3)
        stalled = True
        first = await pings(0.1)  # a ping already on its way, and the report (once)
        got = await pings(0.4)
        assert "WATCHDOG=1" not in got
        assert [m for m in first + got if m.startswith("STATUS=")] == ["STATUS=stalled: stuck"]
        stalled = False
        assert "WATCHDOG=1" in await pings(0.3)
    finally:
        task.cancel()
        sock.close()
