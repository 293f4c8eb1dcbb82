"""What the core needs from an inference engine.

An :class:`Engine` loads a model file into a :class:`LoadedModel`. All
methods of a loaded model are blocking and are only ever called from that
deployment's worker thread (or an executor), never from the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

from llmd.core.types import ChatMessage, SamplingParams


@dataclass(frozen=True)
class LoadSettings:
    """Runtime settings of one deployment."""

    n_ctx: int
    n_threads: int
    n_batch: int
    n_gpu_layers: int

    def to_dict(self) -> dict[str, int]:
        """JSON-friendly form, stored with the deployment."""
        return {"n_ctx": self.n_ctx, "n_threads": self.n_threads, "n_batch": self.n_batch,
                "n_gpu_layers": self.n_gpu_layers}


# Receives llama.cpp's (or the fake's) log lines during load and generation.
LogSink = Callable[[str, str], None]  # (level, message)


class LoadedModel(Protocol):
    """A model ready to generate. Not thread-safe: one worker thread owns it."""

    path: str
    n_ctx: int
    device: str  # "cpu" or "cuda"
    n_gpu_layers: int

    def tokenize(self, text: str) -> list[int]:
        """Tokens of ``text``, with BOS when the model wants one; special tokens parsed."""

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt for a chat, through the model's chat template."""

    def token_bytes(self, token: int) -> bytes:
        """The raw bytes of one token (may be part of a UTF-8 character)."""

    def is_eog(self, token: int) -> bool:
        """True for end-of-generation tokens (EOS, EOT, ...)."""

    def sample_tokens(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        """Evaluate ``prompt`` and yield sampled tokens until closed.

        The caller stops at max_tokens, EOG, stop strings or cancellation
        by closing the generator.
        """

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Normalised embedding vectors of ``texts`` and the tokens they used."""

    def close(self) -> None:
        """Free the model and its context."""


class Engine(Protocol):
    """Loads models."""

    name: str

    def load(self, path: str, settings: LoadSettings, chat_template: str | None, log: LogSink) -> LoadedModel:
        """Load the GGUF file at ``path`` (blocking)."""
