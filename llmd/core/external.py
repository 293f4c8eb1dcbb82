"""External engines: a deployment served by a supervised OpenAI-compatible server process (vLLM).

:class:`ExternalDeployment` keeps the contract of
:class:`llmd.core.deployment.Deployment`, so every dialect works on a ``vllm``
model: the inference path hands it ``GenerateRequest`` objects and it proxies them to the
server's ``/v1/chat/completions`` or ``/v1/completions`` (always streamed),
turning the chunks into :class:`TokenEvent` objects; embeddings go to
``/v1/embeddings``.

The server is started from ``deployments.vllm_command`` (or the model's
``config.command``) on a free port of 127.0.0.1. Its stdout and stderr become
the deployment's log lines. It counts as running once ``/health`` answers 200
(and, where the body says whether a model is loaded, says it is), or, without a
``/health``, once ``/v1/models`` answers. It runs in its own process group,
dies with the daemon (``PR_SET_PDEATHSIG``), and is stopped with SIGTERM, then
SIGKILL after a grace period. An exit that nobody asked for turns the
deployment into ``error`` with the server's last lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import sys
import time
from typing import Any, AsyncIterator, Sequence

import httpx
import psutil

from llmd.config import Config
from llmd.core.deployment import Deployment, FinishHook, Generation, LogSink, StateHook
from llmd.core.engine.base import LoadSettings
from llmd.core.generation import apply_defaults
from llmd.core.memory import MemoryMeasure
from llmd.core.registry import Model
from llmd.core.types import (
    DeploymentState,
    EmbeddingResult,
    FinishReason,
    GenerateRequest,
    GenerationResult,
    SamplingParams,
    Timings,
    TokenEvent,
    Usage,
)
from llmd.errors import (
    EngineError,
    EngineNotInstalledError,
    LlmdError,
    OperationTimeoutError,
    ServerBusyError,
    ShuttingDownError,
    ValidationError,
)

log = logging.getLogger(__name__)

_TAIL = 12  # server lines quoted in the error of an unexpected exit
_STOP_GRACE_S = 15.0  # SIGTERM to SIGKILL
_POLL_S = 0.5  # readiness polling interval
_LEVEL_RE = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL)\b")
_PR_SET_PDEATHSIG = 1
# Environment that belongs to this daemon and must not reach the child (systemd's notify and
# socket-activation variables, and llmd's own settings, which a stand-in llmd would read).
_PRIVATE_ENV = ("LLMD_", "NOTIFY_SOCKET", "WATCHDOG_", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGTERM the child when the daemon dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def build_command(template: str, values: dict[str, Any]) -> list[str]:
    """The argv of ``template`` with its ``{placeholders}`` filled in, word by word (no shell).

    Raises :class:`ValidationError` for a template that does not split or
    names a placeholder that does not exist.
    """
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ValidationError(f"the engine command does not parse: {exc}", field="config.command") from None
    if not words:
        raise ValidationError("the engine command is empty", field="config.command")
    try:
        return [w.format_map(values) for w in words]
    except (KeyError, IndexError, ValueError) as exc:
        raise ValidationError(
            f"the engine command has an unknown placeholder {exc}; use {{model}}, {{port}}, {{max_model_len}}"
            " or {gpu_memory_utilization}", field="config.command") from None


def line_level(line: str) -> str:
    """The level a server's log line states (vLLM writes ``INFO 01-01 ...``), else ``info``."""
    m = _LEVEL_RE.search(line[:64])
    if not m:
        return "info"
    word = m.group(1).lower()
    return {"warn": "warning", "critical": "error", "fatal": "error"}.get(word, word)


def _upstream_error(status: int, body: bytes) -> LlmdError:
    """A typed error for an error answer of the external server."""
    message, param = body.decode("utf-8", "replace")[:500] or f"HTTP {status}", None
    with contextlib.suppress(ValueError, AttributeError, TypeError, RecursionError):
        data = json.loads(body)
        err = data.get("error", data) if isinstance(data, dict) else data
        if isinstance(err, dict):
            message = str(err.get("message") or err.get("detail") or message)
            param = err.get("param")
        elif isinstance(err, str):
            message = err
        if isinstance(data, dict) and isinstance(data.get("detail"), str):
            message = data["detail"]
    text = f"the external engine answered {status}: {message}"
    if status in (400, 413, 422):
        return ValidationError(text, field=param if isinstance(param, str) else None)
    if status in (429, 503):
        return ServerBusyError(text)
    return EngineError(text, details={"upstream_status": status})


class ExternalGeneration(Generation):
    """One proxied generation: iterate it for :class:`TokenEvent`; then ``result`` holds the outcome.

    ``meta`` (dialect, endpoint) is what the request log records; leaving the
    iteration early closes the upstream response, which ends the server's
    generation too.
    """

    def __init__(self, deployment: ExternalDeployment, response: httpx.Response, *, chat: bool,
                 meta: dict[str, Any], submitted: float) -> None:
        self.deployment = deployment
        self.model = deployment.model.name
        self.meta = meta
        self.result: GenerationResult | None = None
        self.prompt_tokens = 0  # known once the server reports usage
        self._resp = response
        self._chat = chat
        self._submitted = submitted
        self._cancel: tuple[FinishReason, LlmdError | None] | None = None
        self._iterating = False

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        if self.result is not None:
            return
        self._iterating = True
        parts: list[str] = []
        finish, usage, error, first = FinishReason.STOP, None, None, None
        chunks = 0
        try:
            async for line in self._resp.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    obj = json.loads(data)
                except (ValueError, RecursionError):  # not an event we can read: skip it
                    continue
                if not isinstance(obj, dict):
                    continue
                if obj.get("error") is not None:
                    err = obj["error"]
                    msg = err.get("message") if isinstance(err, dict) else str(err)
                    error, finish = EngineError(f"the external engine failed: {msg}"), FinishReason.ERROR
                    break
                if isinstance(obj.get("usage"), dict):
                    usage = obj["usage"]
                for choice in obj.get("choices") or ():
                    if not isinstance(choice, dict):
                        continue
                    piece = (choice.get("delta") or {}).get("content") if self._chat else choice.get("text")
                    if choice.get("finish_reason") == "length":
                        finish = FinishReason.LENGTH
                    if piece:
                        first = first or time.monotonic()
                        chunks += 1
                        parts.append(piece)
                        yield TokenEvent(piece)
        except (asyncio.CancelledError, GeneratorExit):
            # The consumer left (a client that disconnected cancels the handler task).
            if self._cancel is None:
                self._cancel = (FinishReason.CANCELLED, None)
            raise
        except Exception as exc:  # noqa: BLE001 - a broken or closed stream ends the generation
            if self._cancel is None:
                log.warning("the stream of the external engine of %s broke", self.model, exc_info=True)
                self.deployment.log("error", f"the engine's stream broke: {type(exc).__name__}: {exc}")
                error = EngineError(f"the external engine's stream broke ({type(exc).__name__}); see the model's log")
                finish = FinishReason.ERROR
        finally:
            if self._cancel is not None:
                finish, error = self._cancel
            with contextlib.suppress(Exception):
                await self._resp.aclose()
            if self.result is None:
                self._finish("".join(parts), finish, usage, chunks, first, error)

    def _finish(self, text: str, finish: FinishReason, usage: dict[str, Any] | None, chunks: int,
                first: float | None, error: LlmdError | None) -> None:
        now = time.monotonic()
        prompt = int((usage or {}).get("prompt_tokens") or 0)
        completion = int((usage or {}).get("completion_tokens") or chunks)
        decode_s = now - first if first else 0.0
        self.prompt_tokens = prompt
        self.result = GenerationResult(
            text=text, finish_reason=finish, usage=Usage(prompt, completion),
            timings=Timings(ttft_s=(first - self._submitted) if first else 0.0, duration_s=now - self._submitted,
                            decode_tps=(completion / decode_s) if decode_s > 0 else 0.0),
            model=self.deployment.model.name, error=error)
        self.deployment._generation_done(self, self.result)

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED, error: LlmdError | None = None) -> None:
        """Stop the generation: close the upstream response (the server stops generating too)."""
        if self.result is not None or self._cancel is not None:
            return
        self._cancel = (reason, error)
        asyncio.ensure_future(self._resp.aclose())  # a reader sees the stream end
        if not self._iterating:  # nobody is reading it: end it now
            self._finish("", reason, None, 0, None, error)


class ExternalDeployment(Deployment):
    """A deployment whose engine is another process (an OpenAI-compatible server such as vLLM)."""

    kind = "vllm"

    def __init__(self, model: Model, settings: LoadSettings, config: Config, *,
                 on_state: StateHook | None = None, on_finish: FinishHook | None = None,
                 log_sink: LogSink | None = None) -> None:
        super().__init__(model, settings, queue_size=config.engine.queue_size, on_state=on_state,
                         on_finish=on_finish, log_sink=log_sink)
        self.config = config
        self._measured: MemoryMeasure | None = None
        # The server.
        self.command: list[str] = []
        self.engine_port: int | None = None
        self.served_model: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._client: httpx.AsyncClient | None = None
        self._reader: asyncio.Task | None = None
        self._watcher: asyncio.Task | None = None
        self._active: set[ExternalGeneration] = set()

    def _fail(self, error: LlmdError) -> None:
        self._set_state(DeploymentState.ERROR, error)
        self._loaded_event.set()

    # -- lifecycle --------------------------------------------------------
    def _values(self) -> dict[str, Any]:
        gmu = self.gpu_memory_utilization or 0.9
        target = self.model.config.get("model_path") or self.model.config.get("model_name") or self.model.path
        return {"model": target, "port": self.engine_port, "max_model_len": self.settings.n_ctx,
                "gpu_memory_utilization": gmu, "name": self.model.name}

    async def start(self) -> None:
        """Start the server and wait until it answers. Never raises: the outcome is the state."""
        self._set_state(DeploymentState.STARTING)
        t0 = time.monotonic()
        template = self.model.config.get("command") or self.config.deployments.vllm_command
        try:
            self.engine_port = free_port()
            self.command = build_command(template, self._values())
        except LlmdError as err:
            self._fail(err)
            return
        exe = self.command[0]
        if shutil.which(exe) is None:
            self._fail(EngineNotInstalledError(
                f"cannot start model '{self.model.name}': the command '{exe}' was not found, so vLLM is not "
                f"installed (pip install vllm) or the command is wrong; the command line is '{template}' "
                "(deployments.vllm_command, or the model's config.command)",
                details={"command": template, "executable": exe, "model": self.model.name}))
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_ENV)}
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True,
                preexec_fn=_die_with_parent, limit=1 << 20)
        except OSError as exc:
            self._fail(EngineError(f"cannot start the engine of '{self.model.name}' ({exe}): {exc}",
                                   details={"command": template}))
            return
        self.log("info", f"started {shlex.join(self.command)} (pid {self._proc.pid}) on 127.0.0.1:{self.engine_port}")
        self._reader = asyncio.ensure_future(self._read_output(self._proc))
        self._client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.engine_port}",
                                         timeout=httpx.Timeout(300.0, connect=10.0))
        failure = await self._wait_ready(self.config.deployments.external_start_timeout_s)
        if self._closing:  # stopped while starting: stop() ends the process and sets the state
            self._loaded_event.set()
            return
        if failure is not None:
            await self._terminate()
            self._fail(failure)
            return
        self.load_seconds = time.monotonic() - t0
        self.started_at = time.time()
        self._watcher = asyncio.ensure_future(self._watch(self._proc))
        self.log("info", f"the engine answers on 127.0.0.1:{self.engine_port}, serving '{self.served_model}'"
                         f" (ready after {self.load_seconds:.1f}s)")
        self._set_state(DeploymentState.RUNNING)
        self._loaded_event.set()

    async def _wait_ready(self, timeout: float) -> LlmdError | None:
        """Poll until the server answers; the error to fail with otherwise (``None``: ready)."""
        assert self._proc is not None and self._client is not None
        deadline = time.monotonic() + timeout
        while not self._closing:
            if self._proc.returncode is not None:
                await self._drain_output()
                return EngineError(self._exit_message(self._proc.returncode),
                                   details={"exit_code": self._proc.returncode, "command": self.command})
            if await self._ready():
                return None
            if time.monotonic() >= deadline:
                return OperationTimeoutError(
                    f"the engine of '{self.model.name}' did not answer within {timeout:g}s "
                    "(deployments.external_start_timeout_s)", details={"timeout_s": timeout})
            await asyncio.sleep(_POLL_S)
        return None

    async def probe(self) -> str | None:
        """The server answers ``/health`` (or ``/v1/models``) within 5 s."""
        if self._client is None:
            return None
        return None if await self._ready() else f"the engine of '{self.model.name}' did not answer /health"

    async def _ready(self) -> bool:
        assert self._client is not None
        try:
            r = await self._client.get("/health", timeout=5)
            if r.status_code == 200:
                with contextlib.suppress(ValueError):
                    body = r.json()
                    if isinstance(body, dict) and body.get("model_loaded") is False:
                        return False  # a server that says its model is still loading
                return await self._pick_served_model()
            if r.status_code == 404:  # no /health: the model list is the sign of life
                return await self._pick_served_model()
        except httpx.HTTPError:
            return False
        return False

    async def _pick_served_model(self) -> bool:
        """The name the server serves the model under (vLLM: the path or repo it was given)."""
        assert self._client is not None
        try:
            r = await self._client.get("/v1/models", timeout=5)
            data = r.json().get("data") if r.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        if not isinstance(data, list) or not data:
            return False
        ids = [m.get("id") for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
        if not ids:
            return False
        wanted = self._values()["model"]
        running = [m.get("id") for m in data if isinstance(m, dict) and m.get("state") == "running"]
        self.served_model = wanted if wanted in ids else (running[0] if running else ids[0])
        return True

    async def _read_output(self, proc: asyncio.subprocess.Process) -> None:
        """Every line the server writes becomes a log line of the deployment."""
        assert proc.stdout is not None
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line longer than the buffer: skip it
                continue
            except Exception:  # noqa: BLE001 - the pipe went away
                return
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.log(line_level(line), line)

    async def _drain_output(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._reader), 2)

    def _exit_message(self, code: int) -> str:
        tail = [m for _, _, m in list(self.logs)[-_TAIL - 2:] if not m.startswith("state ")][-_TAIL:]
        last = ("; last lines:\n" + "\n".join(tail)) if tail else ""
        return f"the engine of '{self.model.name}' exited with code {code}{last}"

    async def _watch(self, proc: asyncio.subprocess.Process) -> None:
        """Notice an exit that nobody asked for."""
        code = await proc.wait()
        if self._closing:
            return
        await self._drain_output()
        err = EngineError(self._exit_message(code), details={"exit_code": code})
        for gen in list(self._active):
            gen.cancel(FinishReason.ERROR, err)
        self._set_state(DeploymentState.ERROR, err)

    async def stop(self, reason: FinishReason = FinishReason.SHUTDOWN,
                   message: str = "llmd is shutting down", *, graceful: bool = False) -> None:
        """End running generations (their error says ``message``) and the server process.

        ``graceful`` is accepted for the contract's sake; the server's own
        SIGTERM handling decides how in-flight requests end.
        """
        if self.state in (DeploymentState.STOPPED, DeploymentState.STOPPING):
            return
        self._closing = True
        self._set_state(DeploymentState.STOPPING)
        err = ShuttingDownError(message) if reason is FinishReason.SHUTDOWN else None
        for gen in list(self._active):
            gen.cancel(reason, err)
        await self._terminate()
        self.stopped_at = time.time()
        self._set_state(DeploymentState.STOPPED)
        self._loaded_event.set()

    async def _terminate(self) -> None:
        """SIGTERM the server's process group, SIGKILL it after the grace period."""
        proc = self._proc
        if self._watcher is not None:
            self._watcher.cancel()
        if proc is not None and proc.returncode is None:
            self.log("info", f"stopping the engine (pid {proc.pid})")
            self._signal(proc, signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), _STOP_GRACE_S)
            except TimeoutError:
                self.log("warning", f"the engine did not stop within {_STOP_GRACE_S:g}s; killing it")
                self._signal(proc, signal.SIGKILL)
                await proc.wait()
            self.log("info", f"the engine exited with code {proc.returncode}")
        await self._drain_output()
        if self._reader is not None and not self._reader.done():
            self._reader.cancel()
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None

    @staticmethod
    def _signal(proc: asyncio.subprocess.Process, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)  # its own session: the group is its pid, children included
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def is_idle(self) -> bool:
        """Running with no request in flight."""
        return self.state is DeploymentState.RUNNING and not self._active

    # -- work -------------------------------------------------------------
    def _sampling(self, params: SamplingParams) -> dict[str, Any]:
        """OpenAI fields (plus vLLM's ``top_k``/``min_p``/``repetition_penalty``) for the request."""
        defaults = self.model.config
        merged = SamplingParams(**{
            f: getattr(params, f) if getattr(params, f) is not None or f not in defaults else defaults[f]
            for f in ("max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty",
                      "frequency_penalty", "presence_penalty", "seed")},
            stop=params.stop, ignore_eos=params.ignore_eos, grammar=params.grammar)
        p = apply_defaults(merged, self.config.sampling)
        body: dict[str, Any] = {
            "max_tokens": p.max_tokens or self.config.sampling.max_tokens, "temperature": p.temperature,
            "top_p": p.top_p, "top_k": p.top_k, "min_p": p.min_p, "repetition_penalty": p.repeat_penalty,
            "frequency_penalty": p.frequency_penalty, "presence_penalty": p.presence_penalty, "seed": p.seed,
        }
        if p.stop:
            body["stop"] = list(p.stop)
        if p.ignore_eos:
            body["ignore_eos"] = True
        if params.logit_bias:  # the server checks the ids against its own vocabulary
            body["logit_bias"] = {str(token): bias for token, bias in params.logit_bias}
        return body

    async def generate(self, req: GenerateRequest) -> ExternalGeneration:
        """Send ``req`` to the server (streamed); errors of the server surface here, before any token."""
        self.check_running()
        if req.params.grammar:
            raise ValidationError("grammar-constrained output is not supported on external (vllm) engines",
                                  field="grammar")
        if req.tools or any(m.tool_calls or m.role == "tool" for m in req.messages or ()):
            raise ValidationError("tool calling is not supported on external (vllm) engines", field="tools")
        if req.n != 1 or req.params.logprobs is not None:
            raise ValidationError("n and logprobs are not supported on external (vllm) engines",
                                  field="n" if req.n != 1 else "logprobs")
        assert self._client is not None
        body: dict[str, Any] = {"model": self.served_model, **self._sampling(req.params), "stream": True,
                                "stream_options": {"include_usage": True}}
        if req.messages is not None:
            if not req.messages:
                raise ValidationError("messages must not be empty", field="messages")
            path, chat = "/v1/chat/completions", True
            body["messages"] = [{"role": m.role, "content": m.content} for m in req.messages]
        elif req.prompt:
            path, chat = "/v1/completions", False
            body["prompt"] = req.prompt
        else:
            raise ValidationError("a prompt or messages is required", field="prompt")
        submitted = time.monotonic()
        self.last_used = time.time()
        resp = await self._send("POST", path, body, stream=True)
        gen = ExternalGeneration(self, resp, chat=chat, submitted=submitted,
                                 meta={"dialect": req.dialect, "endpoint": req.endpoint})
        self._active.add(gen)
        return gen

    async def _send(self, method: str, path: str, body: dict[str, Any], *, stream: bool) -> httpx.Response:
        assert self._client is not None
        try:
            resp = await self._client.send(self._client.build_request(method, path, json=body), stream=stream)
        except httpx.HTTPError as exc:
            self.log("error", f"the engine cannot be reached: {type(exc).__name__}: {exc}")
            raise EngineError(f"the external engine of '{self.model.name}' cannot be reached "
                              f"({type(exc).__name__}); see the model's log") from None
        if resp.status_code >= 400:
            raw = await resp.aread()
            await resp.aclose()
            raise _upstream_error(resp.status_code, raw)
        return resp

    def _generation_done(self, gen: ExternalGeneration, result: GenerationResult) -> None:
        self._active.discard(gen)
        if result.error is not None and result.finish_reason is FinishReason.ERROR:
            self.log("error", f"generation failed: {result.error.message}")
        self._finished(gen.meta, result)

    async def embed(self, inputs: Sequence[str]) -> EmbeddingResult:
        """Embeddings of ``inputs`` from the server's ``/v1/embeddings``."""
        self.check_running()
        if not inputs:
            raise ValidationError("input must not be empty", field="input")
        self.last_used = time.time()
        resp = await self._send("POST", "/v1/embeddings", {"model": self.served_model, "input": list(inputs)},
                                stream=False)
        try:
            data = resp.json()
            rows = sorted(data["data"], key=lambda d: d.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
            tokens = int((data.get("usage") or {}).get("prompt_tokens") or 0)
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            self.log("error", f"unreadable embeddings answer: {type(exc).__name__}: {exc}")
            raise EngineError("the external engine sent an unreadable embeddings answer; see the model's log") from None
        return EmbeddingResult(vectors=vectors, prompt_tokens=tokens, model=self.model.name)

    # -- figures ----------------------------------------------------------
    def memory_measured(self) -> MemoryMeasure | None:
        """The server's process tree, as :meth:`refresh_memory` last read it."""
        return self._measured

    def refresh_memory(self) -> None:
        """Read the resident memory of the server and its children (blocking: call it in a thread)."""
        pid = self.pid
        if pid is None:
            return
        try:
            proc = psutil.Process(pid)
            rss = sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])
        except psutil.Error:
            return
        self._measured = MemoryMeasure(process=rss)
        self.check_memory()

    @property
    def device(self) -> str | None:
        """Another process runs the model."""
        return "external"

    @property
    def pid(self) -> int | None:
        """The server's process, while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def _activity(self) -> dict[str, Any]:
        return {"active": len(self._active), "slots": self.settings.n_slots, "engine": {
            "framework": self.model.framework, "pid": self.pid,
            "engine_url": f"http://127.0.0.1:{self.engine_port}" if self.engine_port else None,
            "served_model": self.served_model, "command": shlex.join(self.command) if self.command else None}}
