"""Deployments: a model loaded into an engine, with its scheduler thread and queue.

A deployment runs up to ``parallel`` generations at once through the
continuous-batching scheduler (``core/engine/scheduler.py``). Requests beyond
the free slots wait in a bounded FIFO queue; past the bound they are refused
with 503 and ``Retry-After`` instead of waiting without limit. Each
deployment owns one worker thread, so llama.cpp never runs on the event loop;
token events are handed to the request's asyncio queue with
``call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

from llmd.core.engine.base import Engine, LoadedModel, LoadSettings
from llmd.core.engine.scheduler import BatchScheduler
from llmd.core.registry import Model
from llmd.core.types import (
    DeploymentState, FinishReason, GenerationResult, SamplingParams, Timings, TokenEvent, Usage,
)
from llmd.errors import EngineError, ModelNotLoadedError, ServerBusyError, ShuttingDownError

log = logging.getLogger(__name__)

_LOG_LINES = 1000  # per-deployment log lines kept in memory


@dataclass(eq=False)  # identity semantics: jobs live in sets
class Job:
    """One generation as the worker thread sees it."""

    prompt: list[int]
    params: SamplingParams  # concrete: defaults already applied
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue
    model_name: str
    submitted: float = field(default_factory=time.monotonic)
    cancel_event: threading.Event = field(default_factory=threading.Event)
    cancel_reason: FinishReason = FinishReason.CANCELLED
    finished: bool = False
    meta: dict[str, Any] = field(default_factory=dict)  # dialect, endpoint: for the request log

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Ask the worker to stop this job at its next token."""
        self.cancel_reason = reason
        self.cancel_event.set()


FinishHook = Callable[[Job, GenerationResult], None]


class Generation:
    """The async handle of one queued or running generation.

    Iterate it for :class:`TokenEvent` pieces; afterwards ``result`` holds the
    :class:`GenerationResult`. Leaving the iteration early (a client that
    disconnects cancels the handler task) cancels the job.
    """

    def __init__(self, job: Job, deployment: "Deployment") -> None:
        self.job = job
        self.deployment = deployment
        self.result: GenerationResult | None = None
        self.prompt_tokens = len(job.prompt)

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        try:
            while True:
                event = await self.job.events.get()
                if isinstance(event, TokenEvent):
                    yield event
                else:
                    self.result = event
                    return
        finally:
            if self.result is None:
                self.cancel()

    def __del__(self) -> None:
        # A response that was dropped before its body was ever iterated (the
        # client left between headers and body) must not keep the engine busy.
        if self.result is None and not self.job.finished:
            self.deployment.cancel(self.job)

    async def collect(self) -> GenerationResult:
        """Wait for the end and return the result (the text is in it)."""
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    async def collect_or_raise(self) -> GenerationResult:
        """Like :meth:`collect`, but raise the error of a failed generation."""
        result = await self.collect()
        if result.error is not None:
            raise result.error
        return result

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Stop the generation: drop it from the queue, or stop it at the next token."""
        self.deployment.cancel(self.job, reason)


class Deployment:
    """One loaded model, its worker thread and its admission queue."""

    def __init__(self, model: Model, settings: LoadSettings, engine: Engine, *,
                 queue_size: int, on_finish: FinishHook, prefill_chunk: int = 256,
                 on_state: Callable[["Deployment"], None] | None = None,
                 log_sink: Callable[[str, str], None] | None = None) -> None:
        self.model = model
        self.settings = settings
        self.engine = engine
        self.queue_size = queue_size
        self.state = DeploymentState.PENDING
        self.error: str | None = None
        self.loaded: LoadedModel | None = None
        self.logs: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=_LOG_LINES)
        self.started_at: float | None = None
        self.load_seconds: float | None = None
        self.completed = 0
        # Set by Core (the same attributes exist on ExternalDeployment):
        self.id = ""  # "deploy_<n>": the store row, stable per model
        self.port: int | None = None  # a port-bound OpenAI listener for just this model
        self.pinned = False  # exempt from eviction and idle unload
        self.last_used = time.time()  # the last request (wall clock), for LRU eviction and keep-alive
        self.created_at = time.time()
        self.memory_bytes = 0  # placement estimate: weights + KV cache
        self.model_source: str | None = None
        self.gpu_memory_utilization: float | None = None
        self.stop_reason: str | None = None  # stopped | evicted | idle | shutdown | restart
        self.note: str | None = None  # e.g. why it was evicted
        self.stopped_at: float | None = None
        self._log_sink = log_sink
        self._stopped = asyncio.Event()
        self._on_finish = on_finish
        self._on_state = on_state
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._closing = False
        self.prefill_chunk = prefill_chunk
        self.scheduler: BatchScheduler | None = None
        self._thread: threading.Thread | None = None
        self._loaded_event = asyncio.Event()
        self._stop_message = "llmd is shutting down"
        # Tokenizing, template rendering and embeddings: off the loop, and
        # off the generation thread so they never wait behind a long answer.
        self.aux = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"llmd-aux-{model.name}")

    # -- lifecycle ------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        """Append a line to this deployment's log (thread-safe); it also goes to the model's log file."""
        ts = time.time()
        self.logs.append((ts, level, message.rstrip()))
        if self._log_sink is not None:
            try:
                self._log_sink(level, message)
            except Exception:  # noqa: BLE001 - logging must never break a load or a generation
                log.warning("the log sink of %s failed", self.model.name, exc_info=True)

    def _set_state(self, state: DeploymentState, error: str | None = None) -> None:
        self.state = state
        self.error = error
        self.log("error" if error else "info", f"state {state.value}" + (f": {error}" if error else ""))
        if self._on_state:
            self._on_state(self)

    async def start(self) -> None:
        """Load the model (in a thread) and start the worker. Never raises."""
        self._set_state(DeploymentState.STARTING)
        t0 = time.monotonic()
        try:
            self.loaded = await asyncio.to_thread(
                self.engine.load, self.model.path, self.settings, self.model.chat_template, self.log
            )
        except Exception as exc:  # noqa: BLE001 - a failed load is a state, not a crash
            log.exception("loading %s failed", self.model.name)
            self._set_state(DeploymentState.ERROR, f"load failed: {exc}")
            self._loaded_event.set()
            return
        if self._closing:  # stopped while loading: free the model instead of serving it
            loaded, self.loaded = self.loaded, None
            await asyncio.to_thread(loaded.close)
            self._set_state(DeploymentState.STOPPED)
            self._loaded_event.set()
            return
        self.load_seconds = time.monotonic() - t0
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=f"llmd-gen-{self.model.name}", daemon=True)
        self._thread.start()
        self._set_state(DeploymentState.RUNNING)
        self._loaded_event.set()

    async def wait_loaded(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the load to finish (either way)."""
        if timeout > 0 and not self._loaded_event.is_set():
            try:
                await asyncio.wait_for(self._loaded_event.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    async def stop(self, reason: FinishReason = FinishReason.SHUTDOWN,
                   message: str = "llmd is shutting down", *, graceful: bool = False) -> None:
        """Refuse new work, end queued and running jobs (their error says ``message``), free the model.

        With ``graceful``, queued and running generations may finish first;
        a later call without it (a forced stop) ends them at once.
        """
        if self.state is DeploymentState.STOPPING and not graceful:
            self._abort(reason)  # a forced stop overtaking a graceful one
            return
        if self.state in (DeploymentState.STOPPED, DeploymentState.STOPPING):
            return
        self._stop_message = message
        self._set_state(DeploymentState.STOPPING)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if not graceful:
            self._abort(reason)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self.loaded is not None:
            await asyncio.get_running_loop().run_in_executor(self.aux, self.loaded.close)
            self.loaded = None
        self.aux.shutdown(wait=False)
        self.stopped_at = time.time()
        self._set_state(DeploymentState.STOPPED)
        self._stopped.set()

    def _abort(self, reason: FinishReason) -> None:
        """End every queued and running job now."""
        with self._cond:
            queued = list(self._queue)
            self._queue.clear()
            for job in self._running:
                job.cancel(reason)
            self._cond.notify_all()
        for job in queued:
            self._finish_unstarted(job, reason)

    async def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the deployment has stopped; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._stopped.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def is_idle(self) -> bool:
        """Running with nothing queued or generating: may be evicted or unloaded."""
        with self._cond:
            return self.state is DeploymentState.RUNNING and not self._queue and not self._running

    # -- admission ------------------------------------------------------
    def require_running(self) -> LoadedModel:
        """The loaded model, or the dialect's "model not loaded" error."""
        if self.state is DeploymentState.RUNNING and self.loaded is not None and not self._closing:
            return self.loaded
        if self.state in (DeploymentState.STOPPING, DeploymentState.STOPPED) and self._closing:
            raise ShuttingDownError(f"model '{self.model.name}' is stopping")
        detail = f" ({self.error})" if self.error else ""
        raise ModelNotLoadedError(
            f"model '{self.model.name}' is not loaded: it is {self.state.value}{detail}",
            details={"model": self.model.name, "state": self.state.value},
        )

    def submit(self, prompt: list[int], params: SamplingParams, meta: dict[str, Any] | None = None) -> Generation:
        """Queue a generation; raises :class:`ServerBusyError` when the queue is full."""
        self.require_running()
        loop = asyncio.get_running_loop()
        job = Job(prompt=prompt, params=params, loop=loop, events=asyncio.Queue(), model_name=self.model.name,
                  meta=meta or {})
        with self._cond:
            if self._closing:
                raise ShuttingDownError()
            busy = len(self._running) + len(self._queue) >= self.settings.n_slots
            if busy and len(self._queue) >= self.queue_size:
                raise ServerBusyError(
                    f"model '{self.model.name}' is busy: {len(self._queue)} requests are waiting",
                    retry_after=max(1, len(self._queue)),
                    details={"queued": len(self._queue), "queue_size": self.queue_size},
                )
            self._queue.append(job)
            self._cond.notify()
        self.last_used = time.time()
        return Generation(job, self)

    def cancel(self, job: Job, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Remove a queued job without running it, or stop a running one."""
        with self._cond:
            if job.finished:
                return
            try:
                self._queue.remove(job)
            except ValueError:
                job.cancel(reason)  # running: the worker sees it at the next token
                return
        self._finish_unstarted(job, reason)

    def stats(self) -> dict[str, Any]:
        """Queue and activity figures for health and status."""
        now = time.time()
        with self._cond:
            idle = self.state is DeploymentState.RUNNING and not self._queue and not self._running
            return {
                "model": self.model.name,
                "deployment_id": self.id,
                "state": self.state.value,
                "error": self.error,
                "port": self.port,
                "pinned": self.pinned,
                "memory_bytes": self.memory_bytes,
                "last_used": self.last_used,
                "idle_s": round(now - self.last_used, 3) if idle else 0.0,
                "started_at": self.started_at,
                "stop_reason": self.stop_reason,
                "note": self.note,
                "gpu_memory_utilization": self.gpu_memory_utilization,
                "queued": len(self._queue),
                "active": len(self._running),
                "queue_size": self.queue_size,
                **(self.scheduler.stats() if self.scheduler else {"slots": self.settings.n_slots}),
                "completed": self.completed,
                "device": self.loaded.device if self.loaded else None,
                "load_seconds": self.load_seconds,
                "settings": self.settings.to_dict(),
            }

    # -- worker thread --------------------------------------------------
    def _run(self) -> None:
        try:
            self._schedule()
        except BaseException:  # the worker must never vanish silently with requests waiting on it
            log.exception("the scheduler of %s died", self.model.name)
            self.log("error", "the scheduler thread died; see the daemon's log")
            with self._cond:
                self._closing = True
                stranded = list(self._running) + list(self._queue)
                self._queue.clear()
            for job in stranded:
                if not job.finished:
                    self._finish_running(job, GenerationResult(
                        text="", finish_reason=FinishReason.ERROR, usage=Usage(len(job.prompt), 0),
                        timings=Timings(), model=self.model.name,
                        error=EngineError("the engine stopped unexpectedly")))
            raise

    def _schedule(self) -> None:
        assert self.loaded is not None
        sched = self.scheduler = BatchScheduler(
            self.loaded, n_batch=self.settings.n_batch, prefill_chunk=self.prefill_chunk,
            post=self._post, finish=self._finish_running, model_name=self.model.name,
            stop_message=lambda: self._stop_message, log_line=self.log)
        while True:
            admitted = []
            with self._cond:
                while not self._queue and not sched.busy() and not self._closing:
                    self._cond.wait()
                if self._closing and not self._queue and not sched.busy():
                    return
                free = sched.free_slots()
                while self._queue and free > 0:
                    job = self._queue.popleft()
                    self._running.add(job)
                    admitted.append(job)
                    free -= 1
            for job in admitted:
                sched.admit(job)
            try:
                sched.step()
            except Exception:  # noqa: BLE001 - never let the worker die with jobs in flight
                log.exception("scheduler step failed on %s", self.model.name)
                sched.end_all(FinishReason.ERROR)

    def _finish_running(self, job: Job, result: GenerationResult) -> None:
        with self._cond:
            self._running.discard(job)
        self._finish(job, result)

    def _post(self, job: Job, event: Any) -> None:
        try:
            job.loop.call_soon_threadsafe(job.events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _finish(self, job: Job, result: GenerationResult) -> None:
        job.finished = True
        self.last_used = time.time()
        self._post(job, result)
        self.completed += 1
        try:
            job.loop.call_soon_threadsafe(self._on_finish, job, result)
        except RuntimeError:
            pass

    def _finish_unstarted(self, job: Job, reason: FinishReason) -> None:
        """End a job that never reached the engine (cancelled while queued, or shutdown)."""
        err = ShuttingDownError(self._stop_message) if reason is FinishReason.SHUTDOWN else None
        now = time.monotonic() - job.submitted
        self._finish(job, GenerationResult(
            text="", finish_reason=reason, usage=Usage(len(job.prompt), 0),
            timings=Timings(queued_s=now, duration_s=now), model=self.model.name, error=err,
        ))
