"""A real llmd daemon as a subprocess, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaemonProcess:
    """One ``python -m llmd`` process with its own state dir and socket."""

    def __init__(self, root: Path, *, env: dict[str, str] | None = None, args: list[str] | None = None,
                 port: int | None = None) -> None:
        self.root = root
        self.state_dir = root / "state"
        self.socket_path = root / "llmd.sock"
        self.config_file = root / "llmd.toml"
        if not self.config_file.exists():
            self.config_file.write_text("")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "daemon.log"
        self.extra_env = env or {}
        self.args = args or []
        self.proc: subprocess.Popen | None = None

    def start(self) -> DaemonProcess:
        """Start the process (does not wait)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "NOTIFY_", "WATCHDOG_"))}
        # No test may reach a real hub: a closed port unless the test points it at its own stand-in
        # (in its config file, its HF_ENDPOINT or its --set flags).
        env.pop("HF_ENDPOINT", None)
        config = self.config_file.read_text()
        if "HF_ENDPOINT" not in self.extra_env and "hf_endpoint" not in config:
            env["LLMD_DOWNLOADS_HF_ENDPOINT"] = "http://127.0.0.1:9"
        if "ollama_registry" not in config:
            env["LLMD_DOWNLOADS_OLLAMA_REGISTRY"] = "http://127.0.0.1:9"
        env.update(self.extra_env)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [sys.executable, "-m", "llmd", "--config", str(self.config_file), "--host", "127.0.0.1",
               "--port", str(self.port), "--socket", str(self.socket_path), "--state-dir", str(self.state_dir),
               *self.args]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        return self

    def wait_loaded(self, timeout: float = 180) -> DaemonProcess:
        """Wait until ``/health`` says the default model is loaded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"llmd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                body = httpx.get(f"{self.url}/health", timeout=2).json()
                if body.get("model_loaded"):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"llmd did not load its model in {timeout}s:\n{self.log()}")

    def log(self) -> str:
        """The daemon's output so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def interruptible() -> None:
    """``preexec_fn`` for a child that a test interrupts with SIGINT: a shell without job control starts
    background commands (a suite run with ``make test &``) with SIGINT ignored, the child would inherit
    that, and Python would then never raise KeyboardInterrupt in it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def llmd_bin(name: str) -> str:
    """Path of an installed console script next to this interpreter."""
    return str(Path(sys.executable).with_name(name))


class NotifyListener:
    """A fake systemd: receives sd_notify datagrams and probes the TCP port on READY=1."""

    def __init__(self, path, port):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.port = port
        self.messages: list[str] = []
        self.tcp_accepting_at_ready: bool | None = None
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            for line in data.split("\n"):
                if line == "READY=1":
                    try:
                        socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                        self.tcp_accepting_at_ready = True
                    except OSError:
                        self.tcp_accepting_at_ready = False
                self.messages.append(line)

    def wait_for(self, message, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if message in self.messages:
                return
            time.sleep(0.05)
        raise AssertionError(f"no {message} within {timeout}s; got {self.messages}")

    def close(self):
        self.stop = True
        self.thread.join()
        self.sock.close()
