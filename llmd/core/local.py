"""In-process deployments: llama.cpp in this process, with its scheduler thread and bounded queue.

A local deployment runs up to ``parallel`` generations at once through the
continuous-batching scheduler (``core/engine/scheduler.py``). Requests beyond
the free slots wait in a bounded FIFO queue; past the bound they are refused
with 503 and ``Retry-After`` instead of waiting without limit. Each
deployment owns one worker thread, so llama.cpp never runs on the event loop.
The token events of one decode step, for every stream, are handed to the
event loop in one ``call_soon_threadsafe`` (one wake-up per step, not one per
token per stream), which puts each into its request's asyncio queue.
Tokenizing, chat templates and embeddings run on a second, auxiliary thread,
so they never wait behind a long answer.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

from llmd.config import SamplingConfig
from llmd.core import tooluse
from llmd.core.deployment import Deployment, FinishHook, Generation, LogSink, StateHook
from llmd.core.engine.base import Engine, LoadedModel, LoadSettings
from llmd.core.engine.scheduler import BatchScheduler
from llmd.core.generation import (
    answer_reserve,
    apply_defaults,
    build_prompt,
    fit_context,
    fit_history,
    model_defaults,
    render_prompt,
)
from llmd.core.memory import MemoryMeasure, describe
from llmd.core.registry import Model
from llmd.core.types import (
    ChatMessage,
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
from llmd.errors import EngineError, ServerBusyError, ShuttingDownError, ValidationError

log = logging.getLogger(__name__)


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
    index: int = 0  # the choice, when the request asked for n > 1
    # n > 1: the request's jobs, this one among them, the leader (which evaluates the prompt) first
    group: list[Job] | None = None
    group_results: list[GenerationResult] = field(default_factory=list)  # the leader's: choices ended so far

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Ask the worker to stop this job at its next token."""
        self.cancel_reason = reason
        self.cancel_event.set()


def combine_choices(results: Sequence[GenerationResult]) -> GenerationResult:
    """One result for the ``n`` choices of a request (in index order): choice 0's text, logprobs and finish
    reason (a failed choice's reason and error when one failed), the prompt counted once and the completion
    tokens of all."""
    first = results[0]
    failed = next((r for r in results if r.error is not None), None)
    return dataclasses.replace(
        first,
        finish_reason=(failed or first).finish_reason,
        error=failed.error if failed is not None else None,
        usage=Usage(first.usage.prompt_tokens, sum(r.usage.completion_tokens for r in results),
                    first.usage.cached_tokens),
        timings=Timings(queued_s=first.timings.queued_s, ttft_s=min(r.timings.ttft_s for r in results),
                        duration_s=max(r.timings.duration_s for r in results),
                        decode_tps=sum(r.timings.decode_tps for r in results)),
    )


def choice_params(params: SamplingParams, index: int) -> SamplingParams:
    """Choice ``index``'s sampling: its own seed (seed + index), so that choices differ under sampling and a
    request's seed still repeats every one of them."""
    if index == 0 or params.seed is None:
        return params
    return dataclasses.replace(params, seed=params.seed + index)


class LocalGeneration(Generation):
    """The async handle of one queued or running in-process generation.

    Leaving the iteration early (a client that disconnects cancels the
    handler task) cancels the job.
    """

    def __init__(self, job: Job, deployment: LocalDeployment) -> None:
        self.job = job  # the first choice's (the only one's for n == 1)
        self.deployment = deployment
        self.model = deployment.model.name
        self.result: GenerationResult | None = None
        self.prompt_tokens = len(job.prompt)
        self.n = len(job.group) if job.group else 1
        self.results: list[GenerationResult] | None = None  # per choice, once ended (n > 1)

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[TokenEvent]]:
        """Every token event that has arrived, as one list per wait (all streams of a step arrive at once)."""
        if self.n > 1:
            async for batch in self._choice_batches():
                yield batch
            return
        queue = self.job.events
        try:
            while True:
                event = await queue.get()
                batch: list[TokenEvent] = []
                while True:
                    if not isinstance(event, TokenEvent):
                        if batch:
                            yield batch
                        self.result = event
                        return
                    batch.append(event)
                    if queue.empty():
                        break
                    event = queue.get_nowait()
                yield batch
        finally:
            if self.result is None:
                self.cancel()

    async def _choice_batches(self) -> AsyncIterator[list[TokenEvent]]:
        """:meth:`batches` of ``n`` > 1 choices, which share one queue: their events carry their ``index``;
        the generation ends when every choice has ended."""
        queue = self.job.events
        done: dict[int, GenerationResult] = {}
        try:
            while len(done) < self.n:
                event = await queue.get()
                batch: list[TokenEvent] = []
                while True:
                    if isinstance(event, TokenEvent):
                        batch.append(event)
                    else:
                        done[event.index] = event
                    if queue.empty() or len(done) == self.n:
                        break
                    event = queue.get_nowait()
                if batch:
                    yield batch
            self.results = [done[i] for i in range(self.n)]
            self.result = combine_choices(self.results)
        finally:
            if self.result is None:
                self.cancel()

    def __del__(self) -> None:
        # A response that was dropped before its body was ever iterated (the
        # client left between headers and body) must not keep the engine busy.
        if self.result is None and not all(j.finished for j in self.job.group or (self.job,)):
            self.deployment.cancel(self.job)

    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Stop the generation: drop it from the queue, or stop it at the next token."""
        self.deployment.cancel(self.job, reason)


class LocalDeployment(Deployment):
    """One model loaded into llama.cpp in this process, its worker thread and its admission queue."""

    kind = "llama.cpp"

    def __init__(self, model: Model, settings: LoadSettings, engine: Engine, *, queue_size: int,
                 sampling: SamplingConfig, max_tokens_limit: int | None, prefill_chunk: int = 256,
                 draft_tokens: int = 0, on_state: StateHook | None = None, on_finish: FinishHook | None = None,
                 log_sink: LogSink | None = None) -> None:
        super().__init__(model, settings, queue_size=queue_size, on_state=on_state, on_finish=on_finish,
                         log_sink=log_sink)
        self.engine = engine
        self.sampling = sampling
        self.max_tokens_limit = max_tokens_limit
        self.prefill_chunk = prefill_chunk
        self.draft_tokens = draft_tokens
        self.loaded: LoadedModel | None = None
        self.scheduler: BatchScheduler | None = None
        self._cond = threading.Condition()
        self._queue: collections.deque[Job] = collections.deque()
        self._running: set[Job] = set()
        self._thread: threading.Thread | None = None
        self._step_started: float | None = None  # monotonic start of the scheduler step in progress
        self._outbox: list[tuple[Job, Any]] = []  # the events of the step in progress (worker thread only)
        self._stop_message = "llmd is shutting down"
        # Tokenizing, template rendering and embeddings: off the loop, and
        # off the generation thread so they never wait behind a long answer.
        self.aux = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"llmd-aux-{model.name}")

    # -- lifecycle ------------------------------------------------------
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
        self.log("info", f"memory at load: {describe(self.memory_estimate, self.memory_measured())} "
                         "(the estimate includes the embedding context, created on first use)")
        self.check_memory()
        self._thread = threading.Thread(target=self._run, name=f"llmd-gen-{self.model.name}", daemon=True)
        self._thread.start()
        self._set_state(DeploymentState.RUNNING)
        self._loaded_event.set()

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

    def is_idle(self) -> bool:
        """Running with nothing queued or generating: may be evicted or unloaded."""
        with self._cond:
            return self.state is DeploymentState.RUNNING and not self._queue and not self._running

    def _model(self) -> LoadedModel:
        """The loaded model, or the "not loaded" error."""
        self.check_running()
        if self.loaded is None:
            self.check_running()  # raced with a stop: report it as the state now says
            raise ShuttingDownError(f"model '{self.model.name}' is stopping")
        return self.loaded

    # -- work -----------------------------------------------------------
    def stalled_s(self) -> float:
        """Seconds the step in progress has taken (0 between steps): a llama_decode that never returns."""
        started = self._step_started
        return time.monotonic() - started if started is not None else 0.0

    async def probe(self) -> str | None:
        """Serving needs the generation thread: one that died (a crash inside llama.cpp) is unhealthy."""
        if self._thread is not None and not self._thread.is_alive():
            return "the generation thread has stopped"
        return None

    async def generate(self, req: GenerateRequest) -> Generation:
        """Render, tokenize, check and queue ``req``; errors surface here, before any streaming."""
        loaded = self._model()
        self._check_choices(req, loaded)
        self.last_used = time.time()
        params = model_defaults(self.model.config, req.params)
        loop = asyncio.get_running_loop()
        tools = (await loop.run_in_executor(self.aux, tooluse.plan, req, loaded.chat_template)
                 if tooluse.involved(req) else None)
        if tools is not None and tools.grammar:
            params = dataclasses.replace(params, grammar=tools.grammar)
        prompt = await loop.run_in_executor(self.aux, build_prompt, loaded, dataclasses.replace(req, params=params),
                                            tools)
        if params.grammar:
            # A grammar that does not parse is a 400 now, not an error event mid-stream.
            await loop.run_in_executor(self.aux, loaded.check_grammar, params.grammar)
        params = apply_defaults(params, self.sampling)
        own_max = self.model.config.get("max_tokens")
        default_max = own_max if isinstance(own_max, int) and not isinstance(own_max, bool) and own_max > 0 \
            else self.sampling.max_tokens
        params = fit_context(len(prompt), params, loaded.n_ctx, default_max, self.max_tokens_limit)
        gen = self.submit(prompt, params, meta={"dialect": req.dialect, "endpoint": req.endpoint}, n=req.n)
        if tools is not None and tools.parse:
            return tooluse.ToolCallingGeneration(gen, tools.fmt, req.tools, req.parallel_tool_calls)
        return gen

    def _check_choices(self, req: GenerateRequest, loaded: LoadedModel) -> None:
        """``n`` fits the slots (the choices run at once) and every ``logit_bias`` id is in the vocabulary."""
        if req.n > loaded.n_slots:
            raise ValidationError(
                f"n is {req.n} but model '{self.model.name}' generates at most {loaded.n_slots} answers at once "
                f"(its deployment has {loaded.n_slots} parallel slots)", field="n",
                details={"n": req.n, "slots": loaded.n_slots})
        for token, _ in req.params.logit_bias:
            if not 0 <= token < loaded.n_vocab:
                raise ValidationError(f"logit_bias: token id {token} is not in the model's vocabulary "
                                      f"(0-{loaded.n_vocab - 1})", field="logit_bias")

    async def count_tokens(self, req: GenerateRequest) -> int:
        """The tokens ``req``'s prompt takes (its chat rendered with its tools), without generating."""
        loaded = self._model()
        loop = asyncio.get_running_loop()
        tools = (await loop.run_in_executor(self.aux, tooluse.plan, req, loaded.chat_template)
                 if tooluse.involved(req) else None)
        prompt = await loop.run_in_executor(self.aux, build_prompt, loaded, req, tools)
        return len(prompt)

    async def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[tuple[int, bytes]]:
        """``text``'s tokens and the bytes of each (a piece may be part of a UTF-8 character)."""
        loaded = self._model()

        def run() -> list[tuple[int, bytes]]:
            tokens = loaded.tokenize(text, add_special=add_special, parse_special=parse_special)
            return [(t, loaded.token_bytes(t)) for t in tokens]

        return await asyncio.get_running_loop().run_in_executor(self.aux, run)

    async def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` (ids outside the vocabulary are a 400 naming the first)."""
        loaded = self._model()
        n_vocab = getattr(loaded, "n_vocab", None)
        for i, t in enumerate(tokens):
            if t < 0 or (n_vocab is not None and t >= n_vocab):
                raise ValidationError(f"tokens[{i}] is {t}, not a token of this model (0-{(n_vocab or 1) - 1})",
                                      field=f"tokens[{i}]")

        def run() -> str:
            return b"".join(loaded.token_bytes(t) for t in tokens).decode("utf-8", "replace")

        return await asyncio.get_running_loop().run_in_executor(self.aux, run)

    async def render_prompt(self, req: GenerateRequest) -> str:
        """``req``'s prompt text: its chat through the model's template, with its tools."""
        loaded = self._model()
        loop = asyncio.get_running_loop()
        tools = (await loop.run_in_executor(self.aux, tooluse.plan, req, loaded.chat_template)
                 if tooluse.involved(req) else None)
        return await loop.run_in_executor(self.aux, render_prompt, loaded, req, tools)

    async def embed(self, inputs: Sequence[str]) -> EmbeddingResult:
        """Mean-pooled, normalised embeddings; an input longer than the context is a 400."""
        loaded = self._model()
        self.last_used = time.time()
        loop = asyncio.get_running_loop()
        for text in inputs:
            if len(await loop.run_in_executor(self.aux, loaded.tokenize, text)) > loaded.n_ctx:
                raise ValidationError(f"an input is longer than the context ({loaded.n_ctx} tokens)", field="input")
        vectors, n_tokens = await loop.run_in_executor(self.aux, loaded.embed, list(inputs))
        self.check_memory()
        return EmbeddingResult(vectors=vectors, prompt_tokens=n_tokens, model=self.model.name)

    async def fit_chat(self, system: str | None, history: Sequence[ChatMessage], new: ChatMessage,
                       max_tokens: int | None) -> tuple[list[ChatMessage], int]:
        """The newest turns of ``history`` that fit the context, less the room the answer needs."""
        loaded = self._model()
        budget = loaded.n_ctx - answer_reserve(loaded.n_ctx, max_tokens, self.sampling.max_tokens)
        return await asyncio.get_running_loop().run_in_executor(
            self.aux, fit_history, loaded, system, history, new, budget)

    @property
    def n_ctx(self) -> int:
        """Tokens per slot of the loaded model (the settings' until it is loaded)."""
        return self.loaded.n_ctx if self.loaded is not None else self.settings.n_ctx

    @property
    def n_gpu_layers(self) -> int:
        """Layers the loaded model offloads (0 on a build without GPU offload)."""
        return self.loaded.n_gpu_layers if self.loaded is not None else self.settings.n_gpu_layers

    def submit(self, prompt: list[int], params: SamplingParams, meta: dict[str, Any] | None = None,
               n: int = 1) -> LocalGeneration:
        """Queue a generation of ready tokens (``n`` choices of it, which take ``n`` slots at once and share
        one evaluation of the prompt); raises :class:`ServerBusyError` when the queue is full."""
        self._model()
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()
        jobs = [Job(prompt=prompt, params=choice_params(params, i), loop=loop, events=events,
                    model_name=self.model.name, meta=meta or {}, index=i) for i in range(n)]
        job = jobs[0]
        if n > 1:
            for j in jobs:
                j.group = jobs
        with self._cond:
            if self._closing:
                raise ShuttingDownError()
            # The requests that wait for a slot: those past the free slots. A job the worker has not yet
            # taken from the deque takes a free slot as soon as it wakes, so it does not count as waiting.
            waiting = max(0, len(self._running) + len(self._queue) - self.settings.n_slots)
            if len(self._running) + len(self._queue) + n > self.settings.n_slots and waiting >= self.queue_size:
                raise ServerBusyError(
                    f"model '{self.model.name}' is busy: {waiting} requests are waiting",
                    retry_after=max(1, waiting),
                    details={"queued": waiting, "queue_size": self.queue_size},
                )
            self._queue.extend(jobs)
            self._cond.notify()
        self.last_used = time.time()
        return LocalGeneration(job, self)

    def cancel(self, job: Job, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Remove a queued job without running it, or stop a running one (every choice of its request)."""
        unstarted = []
        with self._cond:
            for j in job.group or (job,):
                if j.finished:
                    continue
                try:
                    self._queue.remove(j)
                except ValueError:
                    j.cancel(reason)  # running: the worker sees it at the next token
                    continue
                unstarted.append(j)
        for j in unstarted:
            self._finish_unstarted(j, reason)

    # -- figures --------------------------------------------------------
    def memory_measured(self) -> MemoryMeasure | None:
        """The growth of this process that loading and running the model caused (engine/llama_cpp.py)."""
        loaded = self.loaded
        return loaded.measured_memory() if loaded is not None else None

    @property
    def device(self) -> str | None:
        """cpu or cuda, once loaded."""
        return self.loaded.device if self.loaded is not None else None

    @property
    def pid(self) -> int | None:
        """This process serves the model."""
        return os.getpid() if self.state is DeploymentState.RUNNING else None

    def _activity(self) -> dict[str, Any]:
        with self._cond:
            queued, active = len(self._queue), len(self._running)
        sched = self.scheduler.stats() if self.scheduler is not None else {}
        slots = sched.pop("slots", self.settings.n_slots)
        return {"queued": queued, "active": active, "slots": slots, "scheduler": sched}

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
                        error=EngineError("the engine stopped unexpectedly"), index=job.index))
            self._flush()
            raise

    def _schedule(self) -> None:
        assert self.loaded is not None
        sched = self.scheduler = BatchScheduler(
            self.loaded, n_batch=self.settings.n_batch, prefill_chunk=self.prefill_chunk,
            post=self._post, finish=self._finish_running, model_name=self.model.name,
            stop_message=lambda: self._stop_message, log_line=self.log, before_decode=self._flush,
            draft_tokens=self.draft_tokens)
        while True:
            admitted = []
            if not sched.busy():
                self._flush()  # nothing decodes next: what the last step produced goes now
            with self._cond:
                while not self._queue and not sched.busy() and not self._closing:
                    self._cond.wait()
                if self._closing and not self._queue and not sched.busy():
                    return
                free = sched.free_slots()
                while self._queue and free > 0:
                    job = self._queue.popleft()
                    if job.group:  # the n choices of a request start together (its leader is first)
                        if len(job.group) > free:
                            self._queue.appendleft(job)  # in order: it waits for enough slots
                            break
                        for other in job.group[1:]:
                            self._queue.remove(other)
                        self._running.update(job.group)
                        free -= len(job.group)
                    else:
                        self._running.add(job)
                        free -= 1
                    admitted.append(job)
            for job in admitted:
                sched.admit(job)
            self._step_started = time.monotonic()
            try:
                sched.step()  # it flushes the previous step's events right before its decode
            except Exception:  # noqa: BLE001 - never let the worker die with jobs in flight
                log.exception("scheduler step failed on %s", self.model.name)
                sched.end_all(FinishReason.ERROR)
            finally:
                self._step_started = None

    def _finish_running(self, job: Job, result: GenerationResult) -> None:
        with self._cond:
            self._running.discard(job)
        self._finish(job, result)

    def _post(self, job: Job, event: Any) -> None:
        """Hand ``event`` (a TokenEvent, or the final GenerationResult) to the job's request.

        On the worker thread it waits in the outbox for the end of the step;
        from the event loop (a queued job cancelled or aborted) it goes at once.
        """
        if threading.current_thread() is self._thread:
            self._outbox.append((job, event))
            return
        try:
            job.loop.call_soon_threadsafe(self._deliver, [(job, event)])
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _flush(self) -> None:
        """Send the events waiting in the outbox to the event loop in one call (worker thread).

        Called right before each decode, so the loop's work on them (queues,
        SSE rendering, socket writes) overlaps the decode, which runs without
        the GIL; and before the worker waits for work.
        """
        if not self._outbox:
            return
        batch, self._outbox = self._outbox, []
        loop = batch[0][0].loop
        if any(job.loop is not loop for job, _ in batch):  # several loops (tests): one call each
            for job, event in batch:
                self._send(job.loop, [(job, event)])
            return
        self._send(loop, batch)

    def _send(self, loop: asyncio.AbstractEventLoop, batch: list[tuple[Job, Any]]) -> None:
        try:
            loop.call_soon_threadsafe(self._deliver, batch)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _deliver(self, batch: list[tuple[Job, Any]]) -> None:
        """Put each event into its request's queue; a finished generation goes to the request log (loop)."""
        for job, event in batch:
            job.events.put_nowait(event)
            if isinstance(event, GenerationResult):
                if job.group is None:
                    self._finished(job.meta, event)
                    continue
                # The n choices of a request are one request in the log, recorded when the last one ends.
                done = job.group[0].group_results
                done.append(event)
                if len(done) == len(job.group):
                    self._finished(job.meta, combine_choices(sorted(done, key=lambda r: r.index)))

    def _finish(self, job: Job, result: GenerationResult) -> None:
        job.finished = True
        self._post(job, result)

    def _finish_unstarted(self, job: Job, reason: FinishReason) -> None:
        """End a job that never reached the engine (cancelled while queued, or shutdown)."""
        err = ShuttingDownError(self._stop_message) if reason is FinishReason.SHUTDOWN else None
        now = time.monotonic() - job.submitted
        self._finish(job, GenerationResult(
            text="", finish_reason=reason, usage=Usage(len(job.prompt), 0),
            timings=Timings(queued_s=now, duration_s=now), model=self.model.name, error=err, index=job.index,
        ))
