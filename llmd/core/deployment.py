"""The one contract every deployment keeps, whatever runs its engine.

A deployment is a model loaded into an engine: in this process
(:class:`llmd.core.local.LocalDeployment`, llama.cpp with continuous
batching) or in a supervised server process
(:class:`llmd.core.external.ExternalDeployment`, vLLM). The fleet, the
inference path and every dialect see only :class:`Deployment`: its state and
bookkeeping live here once, and each kind implements the abstract methods.

:class:`Generation` is the matching contract of one running generation:
iterate it for :class:`TokenEvent` pieces, then ``result`` holds the
:class:`GenerationResult`.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import logging
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Sequence

from llmd.core import memory
from llmd.core.engine.base import LoadSettings
from llmd.core.registry import Model
from llmd.core.types import (
    ChatMessage,
    DeploymentState,
    EmbeddingResult,
    FinishReason,
    GenerateRequest,
    GenerationResult,
    TokenEvent,
)
from llmd.errors import EngineError, LlmdError, ModelNotLoadedError, ShuttingDownError, ValidationError

log = logging.getLogger(__name__)

LOG_LINES = 1000  # per-deployment log lines kept in memory
# Called with a finished generation's request-log fields (dialect, endpoint) and its result.
FinishHook = Callable[[dict[str, Any], GenerationResult], None]
StateHook = Callable[["Deployment"], None]
LogSink = Callable[[str, str], Any]  # (level, message)


@dataclass(frozen=True)
class DeploymentInfo:
    """What a deployment is doing, as the APIs show it: live figures, or the stored record of a stopped one."""

    deployment_id: str
    model: str
    state: DeploymentState
    kind: str = "llama.cpp"  # llama.cpp (in process) | vllm (an external server)
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    port: int | None = None
    pinned: bool = False
    memory_bytes: int = 0  # what the budget counts: the larger of estimate and measurement
    memory_estimate: dict[str, int] | None = None  # core/memory.py's parts and totals, bytes
    memory_measured: dict[str, Any] | None = None
    model_source: str | None = None
    gpu_memory_utilization: float | None = None
    created_at: float | None = None
    started_at: float | None = None
    stopped_at: float | None = None
    updated_at: float | None = None
    last_used: float | None = None
    stop_reason: str | None = None  # stopped | evicted | idle | shutdown | restart
    note: str | None = None
    live: bool = False  # the deployment in memory now (not only a stored record)
    queued: int = 0
    active: int = 0
    queue_size: int = 0
    slots: int = 0
    completed: int = 0
    idle_s: float = 0.0
    device: str | None = None  # cpu | cuda | external
    load_seconds: float | None = None
    scheduler: dict[str, int] = field(default_factory=dict)  # steps, batch and prompt-cache figures
    engine: dict[str, Any] = field(default_factory=dict)  # an external engine: pid, url, served model, command

    @property
    def running(self) -> bool:
        """True while it serves requests."""
        return self.state is DeploymentState.RUNNING

    @property
    def queue_full(self) -> bool:
        """True when a new request would be refused as busy."""
        return self.running and self.queued >= self.queue_size > 0


class Generation(abc.ABC):
    """One queued or running generation, whichever engine runs it."""

    model: str  # the model's registry name
    prompt_tokens: int
    result: GenerationResult | None
    # A request for n > 1 choices: its events carry their choice's ``index``; ``result`` sums the usage
    # (the prompt once) and ``results`` holds each choice's result, in index order, once all have ended.
    n: int = 1
    results: list[GenerationResult] | None = None
    # Seconds the request waited for its model to load before it was queued (a load on demand), which
    # Ollama's ``load_duration`` reports; set by the inference path.
    load_s: float = 0.0

    @abc.abstractmethod
    def __aiter__(self) -> AsyncIterator[TokenEvent]:
        """The generated pieces; leaving early cancels the generation."""

    @abc.abstractmethod
    def cancel(self, reason: FinishReason = FinishReason.CANCELLED) -> None:
        """Stop the generation (a no-op once it has ended)."""

    async def batches(self) -> AsyncIterator[list[TokenEvent]]:
        """The token events in lists of those that arrived together (here, one each).

        A stream renders each list as one write: an in-process engine hands
        over a whole decode step at once.
        """
        async for event in self:
            yield [event]

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


class Deployment(abc.ABC):
    """A model loaded into an engine: its state, bookkeeping and log, and what every kind must do."""

    kind = "llama.cpp"

    def __init__(self, model: Model, settings: LoadSettings, *, queue_size: int,
                 on_state: StateHook | None = None, on_finish: FinishHook | None = None,
                 log_sink: LogSink | None = None) -> None:
        self.model = model
        self.settings = settings
        self.queue_size = queue_size
        self.state = DeploymentState.PENDING
        self.error: str | None = None
        self.failure: LlmdError | None = None  # the typed error behind ``error``
        self.logs: collections.deque[tuple[float, str, str]] = collections.deque(maxlen=LOG_LINES)
        self.started_at: float | None = None
        self.stopped_at: float | None = None
        self.load_seconds: float | None = None
        self.completed = 0
        # Set by the fleet:
        self.id = ""  # "deploy_<n>": the store row, stable per model
        self.port: int | None = None  # a port-bound OpenAI listener for just this model
        self.pinned = False  # exempt from eviction and idle unload
        # Its own keep-alive, from a request's keep_alive (Fleet.keep_alive): None follows
        # deployments.keep_alive_s, 0 unloads it once idle, a negative value never.
        self.keep_alive_s: float | None = None
        self.last_used = time.time()  # the last request (wall clock), for LRU eviction and keep-alive
        self.created_at = time.time()
        self.memory_bytes = 0  # the estimate's total (also in the store)
        self.memory_estimate: memory.MemoryEstimate | None = None
        self._memory_warned = 0  # the measurement last warned about, so a warning is not repeated
        self.model_source: str | None = None
        self.gpu_memory_utilization: float | None = None
        self.stop_reason: str | None = None
        self.note: str | None = None  # e.g. why it was evicted
        self._on_state = on_state
        self._on_finish = on_finish
        self._log_sink = log_sink
        self._loaded_event = asyncio.Event()
        self._stopped_event = asyncio.Event()
        self._closing = False

    # -- log and state ------------------------------------------------------
    def log(self, level: str, message: str) -> None:
        """Append a line to this deployment's log (thread-safe); it also goes to the model's log file."""
        message = message.rstrip()
        self.logs.append((time.time(), level, message))
        if self._log_sink is not None:
            try:
                self._log_sink(level, message)
            except Exception:  # noqa: BLE001 - logging must never break a load or a generation
                log.warning("the log sink of %s failed", self.model.name, exc_info=True)

    def _set_state(self, state: DeploymentState, error: LlmdError | str | None = None) -> None:
        if isinstance(error, LlmdError):
            self.failure, error = error, error.message
        elif error is None:
            self.failure = None
        self.state = state
        self.error = error
        self.log("error" if error else "info", f"state {state.value}" + (f": {error}" if error else ""))
        if state is DeploymentState.STOPPED:
            self._stopped_event.set()
        if self._on_state is not None:
            self._on_state(self)

    def stalled_s(self) -> float:
        """How long the engine has been inside one step of work (0: not stuck, or nothing to tell)."""
        return 0.0

    async def probe(self) -> str | None:
        """A health check of a running deployment: ``None`` when it serves, else what is wrong.
        (``deployments.health_check_interval_s``; three failures in a row put it in ``error``.)"""
        return None

    def fail(self, message: str) -> None:
        """Put a running deployment in ``error`` after failed health checks (the change is published)."""
        if self.state is DeploymentState.RUNNING:
            self._set_state(DeploymentState.ERROR, EngineError(message))

    def _finished(self, meta: dict[str, Any], result: GenerationResult) -> None:
        """Count a finished generation and hand it to the request log (on the event loop)."""
        self.completed += 1
        self.last_used = time.time()
        if self._on_finish is not None:
            self._on_finish(meta, result)

    # -- lifecycle ----------------------------------------------------------
    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model (or start the server). Never raises: the outcome is the state."""

    @abc.abstractmethod
    async def stop(self, reason: FinishReason = FinishReason.SHUTDOWN, message: str = "llmd is shutting down",
                   *, graceful: bool = False) -> None:
        """Refuse new work, end what runs (``graceful``: let it finish first), free the engine."""

    async def wait_loaded(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the start to finish (either way)."""
        if timeout > 0 and not self._loaded_event.is_set():
            try:
                await asyncio.wait_for(self._loaded_event.wait(), timeout)
            except TimeoutError:
                pass

    async def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait until the deployment has stopped; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._stopped_event.wait(), timeout)
            return True
        except TimeoutError:
            return False

    @abc.abstractmethod
    def is_idle(self) -> bool:
        """Running with nothing queued or generating: it may be evicted or unloaded."""

    def check_running(self) -> None:
        """Nothing, or the dialect's "model not loaded" (or "stopping") error."""
        if self.state is DeploymentState.RUNNING and not self._closing:
            return
        if self.state in (DeploymentState.STOPPING, DeploymentState.STOPPED) and self._closing:
            raise ShuttingDownError(f"model '{self.model.name}' is stopping")
        detail = f" ({self.error})" if self.error else ""
        raise ModelNotLoadedError(
            f"model '{self.model.name}' is not loaded: it is {self.state.value}{detail}",
            details={"model": self.model.name, "state": self.state.value},
        )

    # -- work ---------------------------------------------------------------
    @abc.abstractmethod
    async def generate(self, req: GenerateRequest) -> Generation:
        """Queue ``req`` (its sampling fields filled in); bad input and a full queue raise here."""

    @abc.abstractmethod
    async def embed(self, inputs: Sequence[str]) -> EmbeddingResult:
        """Embeddings of ``inputs``, in order."""

    async def count_tokens(self, req: GenerateRequest) -> int:
        """The tokens ``req``'s prompt takes; this default cannot tell (an external engine tokenizes)."""
        raise ValidationError(f"model '{self.model.name}' runs in an external engine, which llmd cannot ask to "
                              "count tokens", field="model")

    async def tokenize(self, text: str, *, add_special: bool, parse_special: bool) -> list[tuple[int, bytes]]:
        """``text``'s tokens and their bytes; this default cannot tell (an external engine tokenizes)."""
        raise ValidationError(f"model '{self.model.name}' runs in an external engine, whose tokenizer llmd "
                              "does not hold", field="model")

    async def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens``; this default cannot tell (an external engine tokenizes)."""
        raise ValidationError(f"model '{self.model.name}' runs in an external engine, whose tokenizer llmd "
                              "does not hold", field="model")

    async def render_prompt(self, req: GenerateRequest) -> str:
        """``req``'s prompt text through the model's chat template; this default cannot tell."""
        raise ValidationError(f"model '{self.model.name}' runs in an external engine, whose chat template llmd "
                              "does not render", field="model")

    async def fit_chat(self, system: str | None, history: Sequence[ChatMessage], new: ChatMessage,
                       max_tokens: int | None) -> tuple[list[ChatMessage], int]:
        """The messages of a chat turn that fit the context, and how many history messages were left out.

        This default has no tokenizer, so it keeps every message; the engine
        refuses a prompt that does not fit.
        """
        head = [ChatMessage("system", system)] if system else []
        return head + list(history) + [new], 0

    # -- figures ------------------------------------------------------------
    @property
    def device(self) -> str | None:
        """Where the model runs: cpu, cuda or external (None before it is loaded)."""
        return None

    @property
    def pid(self) -> int | None:
        """The process that serves it: this one for an in-process engine."""
        return None

    @property
    def n_ctx(self) -> int:
        """Tokens of context per request."""
        return self.settings.n_ctx

    @property
    def n_gpu_layers(self) -> int:
        """Layers offloaded to a GPU (-1: all)."""
        return self.settings.n_gpu_layers

    def memory_measured(self) -> memory.MemoryMeasure | None:
        """What the deployment was measured to hold (None before it is loaded, or when it cannot be told)."""
        return None

    def refresh_memory(self) -> None:  # noqa: B027 - a no-op unless the kind must read its measurement
        """Measure again where a measurement must be read (an external process); blocking, in a thread."""

    def placed_bytes(self) -> int:
        """What the budget counts for this deployment: the larger of its estimate and its measurement."""
        measured = self.memory_measured()
        return max(self.memory_bytes, measured.total if measured is not None else 0)

    def placed_gpu_bytes(self) -> int:
        """The part of :meth:`placed_bytes` on GPUs: the larger of estimate and NVML's measurement."""
        measured = self.memory_measured()
        est = self.memory_estimate.gpu if self.memory_estimate is not None else 0
        return max(est, measured.gpu if measured is not None else 0)

    def check_memory(self) -> None:
        """Warn (once per 10% more) when the measurement exceeds the estimate by more than the tolerance."""
        measured = self.memory_measured()
        if measured is None or not self.memory_bytes:
            return
        limit = max(self.memory_bytes, self._memory_warned) * (1 + memory.TOLERANCE)
        if measured.total > limit:
            self._memory_warned = measured.total
            message = (f"memory above its estimate by more than {memory.TOLERANCE:.0%}: "
                       f"{memory.describe(self.memory_estimate, measured)}; the budget counts the measurement")
            log.warning("deployment %s (%s): %s", self.id, self.model.name, message)
            self.log("warning", message)

    def _activity(self) -> dict[str, Any]:
        """Queue and slot figures of this kind (queued, active, slots, scheduler, engine)."""
        return {}

    def info(self) -> DeploymentInfo:
        """The deployment's figures now."""
        activity = self._activity()
        idle = self.is_idle()
        measured = self.memory_measured()
        return DeploymentInfo(
            deployment_id=self.id, model=self.model.name, state=self.state, kind=self.kind, error=self.error,
            settings=self.settings.to_dict(), port=self.port, pinned=self.pinned, memory_bytes=self.placed_bytes(),
            memory_estimate=self.memory_estimate.to_dict() if self.memory_estimate is not None else None,
            memory_measured=measured.to_dict() if measured is not None else None,
            model_source=self.model_source, gpu_memory_utilization=self.gpu_memory_utilization,
            created_at=self.created_at, started_at=self.started_at, stopped_at=self.stopped_at,
            last_used=self.last_used, stop_reason=self.stop_reason, note=self.note, live=True,
            queue_size=self.queue_size, completed=self.completed,
            idle_s=round(time.time() - self.last_used, 3) if idle else 0.0, device=self.device,
            load_seconds=self.load_seconds, **activity)
