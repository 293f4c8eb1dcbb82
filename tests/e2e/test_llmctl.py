"""llmctl over the Unix socket against the real daemon."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from daemonproc import llmd_bin
from helpers import write_tiny_gguf

pytestmark = pytest.mark.e2e


def llmctl(daemon_or_socket, *args, input=None, timeout=120):
    sock = getattr(daemon_or_socket, "socket_path", daemon_or_socket)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    return subprocess.run([llmd_bin("llmctl"), "--socket", str(sock), *args], capture_output=True, text=True,
                          input=input, timeout=timeout, env=env)


def test_status(daemon):
    p = llmctl(daemon, "status")
    assert p.returncode == 0, p.stderr
    assert "smollm2-135m-instruct" in p.stdout and "running" in p.stdout
    data = json.loads(llmctl(daemon, "status", "--json").stdout)
    assert data["health"]["model_loaded"] is True
    assert json.loads(llmctl(daemon, "--json", "status").stdout)["version"] == data["version"]


def test_models_list_and_add(daemon, short_tmp):
    p = llmctl(daemon, "models")
    assert p.returncode == 0 and "smollm2-135m-instruct" in p.stdout and "default" in p.stdout
    f = write_tiny_gguf(short_tmp / "tiny.Q4_1.gguf")
    p = llmctl(daemon, "models", "add", str(f), "--name", "tiny-cli")
    assert p.returncode == 0, p.stderr
    assert "tiny-cli" in p.stdout and "Q4_1" in p.stdout
    names = [m["name"] for m in json.loads(llmctl(daemon, "models", "--json").stdout)["models"]]
    assert "tiny-cli" in names
    again = llmctl(daemon, "models", "add", str(f), "--name", "tiny-cli")
    assert again.returncode == 1 and "already exists" in again.stderr
    bad = short_tmp / "notes.txt"
    bad.write_text("not a model")
    p = llmctl(daemon, "models", "add", str(bad))
    assert p.returncode == 1 and "not a GGUF file" in p.stderr
    assert "Traceback" not in p.stderr


def test_generate_streams(daemon):
    p = llmctl(daemon, "generate", "Say hello in French.", "--max-tokens", "12", "--temperature", "0")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip()
    data = json.loads(llmctl(daemon, "generate", "Hi", "--max-tokens", "5", "--json").stdout)
    assert data["text"] and data["usage"]["completion_tokens"] <= 5


def test_chat_keeps_history(daemon):
    p = llmctl(daemon, "chat", "--json", "--max-tokens", "12", "--temperature", "0",
               input="My name is Alice.\nWhat is my name?\n")
    assert p.returncode == 0, p.stderr
    turns = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    assert len(turns) == 2
    # The second turn's prompt carries the first exchange: more prompt tokens.
    assert turns[1]["usage"]["prompt_tokens"] > turns[0]["usage"]["prompt_tokens"] + 5


def test_daemon_not_running_is_one_line(short_tmp):
    p = llmctl(short_tmp / "nothing.sock", "status")
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1
    assert "not running" in p.stderr and "start" in p.stderr


def test_an_unknown_llmd_variable_is_named_and_the_daemon_still_found(daemon):
    # No --socket: llmctl finds the socket from llmd's config, as an admin's shell would; an unrelated
    # LLMD_ variable used to make it drop that config and look in the wrong place.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    env.update({"LLMD_SERVER_UNIX_SOCKET": str(daemon.socket_path), "LLMD_FOO": "1"})
    p = subprocess.run([llmd_bin("llmctl"), "status", "--json"], capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["health"]["model_loaded"] is True
    assert "ignoring LLMD_FOO" in p.stderr and "Traceback" not in p.stderr


def test_whoami_over_the_socket(daemon):
    p = llmctl(daemon, "whoami")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("auth off:") and "you:" in p.stdout
    data = json.loads(llmctl(daemon, "whoami", "--json").stdout)
    assert data["auth"]["enabled"] is False and data["principal"]["scope"] == "admin"
