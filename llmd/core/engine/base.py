"""What the core needs from an inference engine.

An :class:`Engine` loads a model file into a :class:`LoadedModel`: one
llama.cpp model and one context with ``n_slots`` sequence slots. The
deployment's scheduler thread drives it step by step: each step is one
:meth:`LoadedModel.decode` of a batch that mixes the next token of every
generating sequence with chunks of new prompts, followed by one
:meth:`LoadedModel.sample` per sequence that asked for logits.

All methods are blocking. ``decode``, ``sample``, ``logprobs``, ``new_sampler``,
``free_sampler``, ``seq_rm`` and ``seq_cp`` are only called from the scheduler thread;
``tokenize``, ``render_chat`` and ``embed`` from the deployment's auxiliary
executor (tokenizing only reads the vocabulary, so it may run beside a decode).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

from llmd.core.memory import MemoryMeasure
from llmd.core.types import ChatMessage, SamplingParams, TokenLogprob


@dataclass(frozen=True)
class LoadSettings:
    """Runtime settings of one deployment."""

    n_ctx: int  # tokens per sequence slot
    n_threads: int
    n_batch: int
    n_gpu_layers: int
    n_slots: int = 1
    kv_unified: bool = False
    kv_cache_type: str = "f16"  # one of llmd.config.KV_CACHE_TYPES

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, stored with the deployment."""
        return {"n_ctx": self.n_ctx, "n_threads": self.n_threads, "n_batch": self.n_batch,
                "n_gpu_layers": self.n_gpu_layers, "parallel": self.n_slots, "kv_unified": self.kv_unified,
                "kv_cache_type": self.kv_cache_type}


@dataclass(frozen=True)
class BatchEntry:
    """Tokens of one sequence in a decode batch, starting at position ``pos``."""

    seq: int
    tokens: Sequence[int]
    pos: int
    logits: bool  # compute logits for the last token (to sample from it)
    every_logit: bool = False  # logits for every token (a draft to verify): rows are consecutive


# Receives llama.cpp's (or the fake's) log lines during load and generation.
LogSink = Callable[[str, str], None]  # (level, message)


class LoadedModel(Protocol):
    """A model ready to generate. Not thread-safe: see the module docstring."""

    path: str
    n_ctx: int  # tokens per slot: the most one request can use
    n_slots: int
    n_vocab: int  # token ids are 0..n_vocab-1
    device: str  # "cpu" or "cuda"
    n_gpu_layers: int

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Tokens of ``text``, with BOS when the model wants one (``add_special``); special tokens parsed
        (``parse_special``)."""

    chat_template: str  # the template's source (ChatML when the model has none)

    def render_chat(self, messages: Sequence[ChatMessage | dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt for a chat, through the model's chat template (with ``tools`` when given)."""

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (may be part of a UTF-8 character)."""

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...)."""

    def check_grammar(self, grammar: str) -> None:
        """Raise ValidationError if ``grammar`` (GBNF) does not parse."""

    def new_sampler(self, params: SamplingParams) -> Any:
        """A sampler chain for one request."""

    def free_sampler(self, sampler: Any) -> None:
        """Free a sampler chain."""

    def decode(self, entries: Sequence[BatchEntry]) -> list[int]:
        """Evaluate one batch; returns, per entry, the row to sample from (-1 if none)."""

    def sample(self, sampler: Any, row: int) -> int:
        """Sample (and accept) the next token of a sequence from a logits row."""

    def seq_rm(self, seq: int, p0: int) -> bool:
        """Forget positions ``p0..`` of sequence ``seq`` in the KV cache."""

    def seq_cp(self, src: int, dst: int) -> None:
        """Make sequence ``dst``'s KV cache a copy of all of ``src``'s (``dst`` is emptied first)."""

    def logprobs(self, row: int, token: int, k: int) -> TokenLogprob:
        """``token``'s log-probability under logits row ``row`` and the ``k`` most likely tokens there.

        Read the row after sampling from it and before the next decode, which overwrites it.
        """

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Normalised embedding vectors of ``texts`` and the tokens they used."""

    def measured_memory(self) -> MemoryMeasure:
        """What loading and running this model was measured to add to the process (see core/memory.py)."""

    def close(self) -> None:
        """Free the model and its context."""


class Engine(Protocol):
    """Loads models."""

    name: str

    def supports_gpu(self) -> bool:
        """True when this build can offload layers to a GPU."""

    def load(self, path: str, settings: LoadSettings, chat_template: str | None, log: LogSink) -> LoadedModel:
        """Load the GGUF file at ``path`` (blocking)."""
