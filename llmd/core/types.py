"""Dialect-neutral data types shared by the core, the engines and the dialects."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def _empty_object_schema() -> dict[str, Any]:
    return {"type": "object", "properties": {}}


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call; ``parameters`` is the JSON schema of its arguments (an object)."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] = field(default_factory=_empty_object_schema)

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI shape, which chat templates expect in their ``tools`` variable."""
        fn: dict[str, Any] = {"name": self.name}
        if self.description:
            fn["description"] = self.description
        fn["parameters"] = self.parameters
        return {"type": "function", "function": fn}


@dataclass(frozen=True)
class ToolCall:
    """One call the model made: ``arguments`` is compact JSON text of an object."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat: ``role`` is system, user, assistant or tool.

    An assistant message may carry the ``tool_calls`` it made (its ``content``
    may then be empty); a ``tool`` message answers the call ``tool_call_id``
    (``name``: the function's name, where the client gave it).
    """

    role: str
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class SamplingParams:
    """Sampling and stop conditions of one generation.

    ``None`` means "the model's default"; the core fills defaults in before a
    request reaches the engine, so engines only see concrete values.
    """

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    repeat_penalty: float | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False
    grammar: str | None = None  # GBNF; JSON schemas are converted before they get here
    logprobs: int | None = None  # None: none; k >= 0: the chosen token's log-probability and the k most likely
    logit_bias: tuple[tuple[int, float], ...] = ()  # (token id, bias added to its logit)


@dataclass(frozen=True)
class GenerateRequest:
    """A prompt or a chat, with sampling parameters, addressed to a model.

    ``model`` may be ``None`` (the default model), a registered name or an
    alias. ``dialect`` and ``endpoint`` only feed the request log.
    """

    prompt: str | None = None
    messages: tuple[ChatMessage, ...] | None = None
    model: str | None = None
    params: SamplingParams = field(default_factory=SamplingParams)
    dialect: str = "core"
    endpoint: str = ""
    n: int = 1  # choices generated from the one prompt (its KV cache evaluated once)
    tools: tuple[ToolSpec, ...] = ()
    # "auto" (the model decides), "none" (tools are described but never called), "required" (at least one
    # call, forced by a grammar), "function" (a call of ``tool_name``, forced by a grammar)
    tool_choice: str = "auto"
    tool_name: str | None = None
    parallel_tool_calls: bool = True
    # How long the model stays loaded once this request is done (Fleet.keep_alive): None leaves the
    # deployment's keep-alive as it is, 0 unloads it once idle, a negative value keeps it loaded.
    keep_alive_s: float | None = None


class FinishReason(str, enum.Enum):
    """Why a generation ended."""

    STOP = "stop"  # end-of-generation token or a stop string
    LENGTH = "length"  # max_tokens reached
    TOOL_CALLS = "tool_calls"  # the answer is one or more tool calls
    CANCELLED = "cancelled"  # the client went away or asked to stop
    ERROR = "error"  # the engine failed
    SHUTDOWN = "shutdown"  # the daemon is stopping

    @property
    def status(self) -> str:
        """The outcome as the request log, metrics and session history record it."""
        return {"stop": "ok", "tool_calls": "ok", "length": "length"}.get(self.value, self.value)


@dataclass(frozen=True)
class Usage:
    """Token counts of one generation."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV cache was reused, not evaluated

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, int]:
        """The OpenAI-shaped usage object, which most dialects share."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Timings:
    """Wall-clock figures of one generation, in seconds."""

    queued_s: float = 0.0  # time spent waiting for the engine
    ttft_s: float = 0.0  # from submission to the first token
    duration_s: float = 0.0  # from submission to the end
    decode_tps: float = 0.0  # completion tokens / decode time

    @property
    def prompt_eval_s(self) -> float:
        """The prompt's evaluation: from the job's admission into a slot to its first token."""
        return max(0.0, self.ttft_s - self.queued_s)

    @property
    def eval_s(self) -> float:
        """The answer's generation: from the first token to the end."""
        return max(0.0, self.duration_s - self.ttft_s)


@dataclass(frozen=True)
class TokenLogprob:
    """A generated token's log-probability under the model, and the most likely tokens at that position."""

    token: str  # its text (a part of a UTF-8 character shows as the replacement character)
    token_bytes: bytes
    logprob: float
    top: tuple[tuple[str, bytes, float], ...] = ()  # (text, bytes, logprob), most likely first


@dataclass(frozen=True)
class TokenEvent:
    """A piece of generated text: always whole UTF-8 characters.

    ``index`` is the choice it belongs to (``n`` > 1); ``logprobs`` the tokens
    whose text it carries, when the request asked for them.
    """

    text: str
    logprobs: tuple[TokenLogprob, ...] = ()
    index: int = 0


@dataclass(frozen=True)
class ToolCallDelta:
    """A tool call as it streams: the first delta of call ``call`` carries ``id`` and ``name``, the next ones
    fragments of its ``arguments`` (JSON text; their concatenation is the whole). ``index``: the choice."""

    call: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    index: int = 0
    text: str = ""  # no text: a renderer that only knows text events writes nothing for it


@dataclass(frozen=True)
class GenerationResult:
    """The end of a generation: the whole text, why it ended, usage, timings."""

    text: str
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    model: str
    created: float = field(default_factory=time.time)
    error: Any = None  # an LlmdError when finish_reason is ERROR or SHUTDOWN
    tool_calls: tuple[ToolCall, ...] = ()  # the calls parsed from the answer (``text`` is what is left)
    logprobs: tuple[TokenLogprob, ...] = ()  # per generated token, when asked for
    index: int = 0  # the choice (``n`` > 1)
    stop_sequence: str | None = None  # the stop string that ended it (finish_reason STOP), if one did


@dataclass(frozen=True)
class EmbeddingResult:
    """Embeddings of a list of inputs, in input order."""

    vectors: list[list[float]]
    prompt_tokens: int
    model: str


class DeploymentState(str, enum.Enum):
    """The lifecycle states of a deployment (docs/deployments.md)."""

    PENDING = "pending"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a longer list: the items, how many there are in all, the page number (from 1) and size."""

    items: list[T]
    total: int
    page: int
    size: int

    @property
    def pages(self) -> int:
        """How many pages there are."""
        return math.ceil(self.total / self.size) if self.size else 0
