"""Dialect-neutral data types shared by the core, the engines and the dialects."""

from __future__ import annotations

import enum
import math
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat: ``role`` is system, user, assistant or tool."""

    role: str
    content: str


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


class FinishReason(str, enum.Enum):
    """Why a generation ended."""

    STOP = "stop"  # end-of-generation token or a stop string
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"  # the client went away or asked to stop
    ERROR = "error"  # the engine failed
    SHUTDOWN = "shutdown"  # the daemon is stopping

    @property
    def status(self) -> str:
        """The outcome as the request log, metrics and session history record it."""
        return {"stop": "ok", "length": "length"}.get(self.value, self.value)


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


@dataclass(frozen=True)
class TokenEvent:
    """A piece of generated text: always whole UTF-8 characters."""

    text: str


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
