"""Engine v1 on llama-cpp-python: one ``Llama`` per deployment, driven by its worker thread.

``Llama.generate`` keeps the KV cache of the previous prompt and re-evaluates
only the part of a new prompt that differs, so a multi-turn chat is cheap.
Embeddings use a second context created on first use with ``embedding=True``
over the same (memory-mapped) weights.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any, Iterator, Sequence

from llmd.core.engine.base import LoadSettings, LogSink
from llmd.core.engine.chat_template import ChatTemplate
from llmd.core.types import ChatMessage, SamplingParams

log = logging.getLogger(__name__)


class LlamaCppModel:
    """A model loaded through llama-cpp-python."""

    def __init__(self, path: str, settings: LoadSettings, chat_template: str | None, sink: LogSink) -> None:
        import llama_cpp  # deferred: importing loads the shared library

        self._lib = llama_cpp
        self.path = path
        self.settings = settings
        self._sink = sink
        self.llm = llama_cpp.Llama(
            model_path=path, n_ctx=settings.n_ctx, n_batch=settings.n_batch,
            n_threads=settings.n_threads, n_threads_batch=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers, verbose=False,
        )
        self.n_ctx = self.llm.n_ctx()
        self.n_gpu_layers = settings.n_gpu_layers if llama_cpp.llama_supports_gpu_offload() else 0
        self.device = "cuda" if self.n_gpu_layers != 0 and llama_cpp.llama_supports_gpu_offload() else "cpu"
        self._vocab = self.llm._model.vocab
        self._pieces: dict[int, bytes] = {}
        self._embedder: Any = None
        self._embed_lock = threading.Lock()
        bos = self._piece(self.llm.token_bos(), special=True) if self.llm.token_bos() >= 0 else b""
        eos = self._piece(self.llm.token_eos(), special=True) if self.llm.token_eos() >= 0 else b""
        self._template = ChatTemplate(chat_template, bos_token=bos.decode("utf-8", "replace"),
                                      eos_token=eos.decode("utf-8", "replace"))
        sink("info", f"loaded {path}: n_ctx={self.n_ctx} threads={settings.n_threads} "
                     f"gpu_layers={self.n_gpu_layers} device={self.device}")

    def _piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:  # buffer too small: -n is the size needed
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def tokenize(self, text: str) -> list[int]:
        """Tokens with BOS (when the vocab wants it) and special tokens parsed."""
        tokens = self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        bos = self.llm.token_bos()
        # A template that writes the BOS text itself would otherwise give two.
        if len(tokens) > 1 and tokens[0] == bos and tokens[1] == bos:
            tokens = tokens[1:]
        return tokens

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The prompt for ``messages`` through the GGUF's own chat template."""
        return self._template.render(messages)

    def token_bytes(self, token: int) -> bytes:
        """Raw bytes of a token; cached, since the vocabulary is fixed."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token)
        return piece

    def is_eog(self, token: int) -> bool:
        """End-of-generation per the vocabulary (EOS, EOT, <|im_end|>, ...)."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    def sample_tokens(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        """Tokens from llama.cpp's sampler chain; the KV cache of a shared prefix is reused."""
        self.llm.set_seed(params.seed if params.seed is not None else 0xFFFFFFFF)
        return self.llm.generate(
            prompt,
            top_k=params.top_k or 0,
            top_p=params.top_p if params.top_p is not None else 1.0,
            min_p=params.min_p or 0.0,
            temp=params.temperature if params.temperature is not None else 0.8,
            repeat_penalty=params.repeat_penalty if params.repeat_penalty is not None else 1.0,
            frequency_penalty=params.frequency_penalty or 0.0,
            presence_penalty=params.presence_penalty or 0.0,
            reset=True,
        )

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Normalised, mean-pooled embeddings from a second, embedding-only context."""
        with self._embed_lock:
            if self._embedder is None:
                self._embedder = self._lib.Llama(
                    model_path=self.path, n_ctx=self.n_ctx, n_batch=max(self.settings.n_batch, self.n_ctx),
                    n_ubatch=max(self.settings.n_batch, self.n_ctx),
                    n_threads=self.settings.n_threads, n_gpu_layers=self.settings.n_gpu_layers,
                    embedding=True, pooling_type=self._lib.LLAMA_POOLING_TYPE_MEAN, verbose=False,
                )
                self._sink("info", "embedding context created")
            vectors, count = self._embedder.embed(list(texts), normalize=True, return_count=True)
        return [list(map(float, v)) for v in vectors], int(count)

    def close(self) -> None:
        """Free both contexts."""
        for llm in (self._embedder, self.llm):
            if llm is not None:
                try:
                    llm.close()
                except Exception:  # noqa: BLE001 - freeing must not stop a shutdown
                    log.warning("closing a llama context failed", exc_info=True)
        self._embedder = None


class LlamaCppEngine:
    """Loads GGUF files with llama-cpp-python."""

    name = "llama.cpp"

    def load(self, path: str, settings: LoadSettings, chat_template: str | None, log: LogSink) -> LlamaCppModel:
        """Load ``path`` (blocking; seconds for large models)."""
        log("info", f"loading {path}")
        return LlamaCppModel(path, settings, chat_template, log)
