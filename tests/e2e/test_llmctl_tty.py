"""llmctl chat on a real terminal: Ctrl-C stops the answer, not the REPL."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import time

import pytest
from daemonproc import interruptible, llmd_bin

pytestmark = pytest.mark.e2e


class Terminal:
    """The master side of a pty, with a buffer: each expect() consumes up to its match."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def expect(self, needle: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while needle not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"did not see {needle!r}; got {self.buf[-400:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    self.buf += os.read(self.fd, 4096)
                except OSError as exc:
                    raise AssertionError(
                        f"terminal closed ({exc}) before {needle!r}; got {self.buf[-400:]!r}") from None
        i = self.buf.index(needle) + len(needle)
        seen, self.buf = self.buf[:i], self.buf[i:]
        return seen


def test_ctrl_c_stops_the_answer_and_keeps_the_session(daemon):
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    proc = subprocess.Popen([llmd_bin("llmctl"), "--socket", str(daemon.socket_path), "chat", "--max-tokens", "300",
                             "--temperature", "0"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                            preexec_fn=interruptible)
    os.close(slave)
    try:
        term = Terminal(master)
        term.expect(b"> ", 30)
        os.write(master, b"Write a very long story about the sea.\n")
        term.expect(b"sea.", 10)  # the echo of the question
        term.expect(b" ", 60)  # the answer has started streaming
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        out = term.expect(b"[stopped]", 30)
        out += term.expect(b"> ", 10)
        assert b"Traceback" not in out
        os.write(master, b"Say OK.\n")
        term.expect(b"> ", 120)
        os.write(master, b"\x04")  # Ctrl-D quits
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
