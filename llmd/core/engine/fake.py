"""A deterministic fake engine for unit tests of scheduling and error paths.

Each request "generates" a scripted reply, one character (or one byte, with
``split_bytes``, to exercise UTF-8 handling) per token, then an end token.
It implements the same slot/batch protocol as the llama.cpp engine, so the
real scheduler runs on top of it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from llmd.core.engine.base import BatchEntry, LoadSettings, LogSink
from llmd.core.engine.chat_template import ChatTemplate
from llmd.core.memory import MemoryMeasure
from llmd.core.types import ChatMessage, SamplingParams, TokenLogprob
from llmd.errors import ValidationError

EOS = -1
N_VOCAB = 32000  # token ids the fake accepts (logit_bias is checked against it)


@dataclass
class FakeSampler:
    """Where one request is in the scripted reply."""

    params: SamplingParams
    index: int = 0


class FakeModel:
    """A loaded fake model; tokens are indexes into the reply's pieces."""

    device = "cpu"

    def __init__(self, path: str, settings: LoadSettings, reply: str, delay_s: float,
                 split_bytes: bool, fail_after: int | None, fail_decode: bool) -> None:
        self.path = path
        self.n_ctx = settings.n_ctx
        self.n_slots = max(1, settings.n_slots)
        self.n_vocab = N_VOCAB
        self.n_gpu_layers = 0
        self._reply = reply.encode("utf-8")
        self._delay = delay_s
        self._split = split_bytes
        self._fail_after = fail_after
        self.fail_decode = fail_decode
        self._template = ChatTemplate(None)
        self.closed = False
        self.generated = 0  # total tokens sampled, for tests
        self.decoded_tokens = 0  # tokens evaluated, prompts included
        self.batches: list[list[tuple[int, int]]] = []  # (seq, n_tokens) per decode, last 100
        self.freed_samplers = 0
        self.copies: list[tuple[int, int]] = []  # (src, dst) of each seq_cp
        self.measured = MemoryMeasure()

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """One token per 4 bytes of ``text``, at least one: good enough for usage maths."""
        data = text.encode("utf-8")
        return [sum(data[i * 4:(i + 1) * 4]) for i in range(max(1, len(data) // 4))]

    @property
    def chat_template(self) -> str:
        """The (test) template's source: ChatML, which has no tool support."""
        return self._template.source

    def render_chat(self, messages: Sequence[ChatMessage | dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None) -> str:
        """The messages through the model's (test) chat template."""
        return self._template.render(messages, tools=tools)

    def _pieces(self) -> list[bytes]:
        if self._split:
            return [bytes([b]) for b in self._reply]
        return [c.encode("utf-8") for c in self._reply.decode("utf-8")]

    def token_bytes(self, token: int) -> bytes:
        """The bytes of one token of the scripted reply."""
        if token == EOS:
            return b""
        pieces = self._pieces()
        # A token of tokenize() (a sum of bytes) is no index into the reply: its number stands for its text.
        return pieces[token] if 0 <= token < len(pieces) else f"<{token}>".encode()

    def is_eog(self, token: int) -> bool:
        """True for the end-of-generation token."""
        return token == EOS

    def check_grammar(self, grammar: str) -> None:
        """Accept a grammar that names a ``root`` rule; a 400 otherwise."""
        if "root" not in grammar:
            raise ValidationError("the grammar does not parse", field="grammar")

    def new_sampler(self, params: SamplingParams) -> FakeSampler:
        """A sampler that walks the scripted reply."""
        return FakeSampler(params)

    def free_sampler(self, sampler: FakeSampler) -> None:
        """Count the freed sampler (tests check that none leaks)."""
        self.freed_samplers += 1

    def decode(self, entries: Sequence[BatchEntry]) -> list[int]:
        """Pretend to evaluate a batch (``delay_s`` per step, or a scripted failure); the rows to sample from."""
        gate = getattr(self, "decode_gate", None)
        if gate is not None:
            gate.wait()
        if self._delay:
            time.sleep(self._delay)
        if self.fail_decode:
            raise RuntimeError("fake decode failure")
        rows, i = [], 0
        for e in entries:
            i += len(e.tokens)
            self.decoded_tokens += len(e.tokens)
            rows.append(i - len(e.tokens) if e.every_logit else i - 1 if e.logits else -1)
        self.batches = (self.batches + [[(e.seq, len(e.tokens)) for e in entries]])[-100:]
        return rows

    def sample(self, sampler: FakeSampler, row: int) -> int:
        """The next piece of the scripted reply, then EOS (the reply again with ``ignore_eos``)."""
        pieces = self._pieces()
        if self._fail_after is not None and sampler.index >= self._fail_after:
            raise RuntimeError("fake engine failure")
        self.generated += 1
        i = sampler.index
        # A bias of -100 bans a token in llama.cpp: the fake skips a banned piece of its reply.
        while i < len(pieces) and any(t == i and b <= -100 for t, b in sampler.params.logit_bias):
            i += 1
        sampler.index = i + 1
        if i >= len(pieces):
            if not sampler.params.ignore_eos:
                return EOS
            i = sampler.index = 0
            sampler.index = 1
        return i

    def seq_rm(self, seq: int, p0: int) -> bool:
        """Nothing is cached for real: always succeeds."""
        return True

    def seq_cp(self, src: int, dst: int) -> None:
        """Nothing is cached for real: count the copy (tests check that n > 1 shares one prompt)."""
        self.copies.append((src, dst))

    def logprobs(self, row: int, token: int, k: int) -> TokenLogprob:
        """Synthetic but well formed: the chosen token is the most likely (-0.1), then the reply's next pieces
        at -1, -2, ..."""
        n = len(self._pieces()) or 1
        others = [(token + 1 + i) % n for i in range(max(0, k - 1))]
        top = tuple((self.token_bytes(t).decode("utf-8", "replace"), self.token_bytes(t), lp)
                    for t, lp in [(token, -0.1)] + [(t, -1.0 - i) for i, t in enumerate(others)])
        data = self.token_bytes(token)
        return TokenLogprob(data.decode("utf-8", "replace"), data, -0.1, top[:k])

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Deterministic unit vectors derived from each text, and the tokens they used."""
        vecs = []
        for t in texts:
            v = [float(len(t) % 7 + 1), float(sum(t.encode()) % 13 + 1), 1.0]
            norm = sum(x * x for x in v) ** 0.5
            vecs.append([x / norm for x in v])
        return vecs, sum(len(self.tokenize(t)) for t in texts)

    def measured_memory(self) -> MemoryMeasure:
        """Nothing real is allocated; tests set ``measured`` to drive placement."""
        return self.measured

    def close(self) -> None:
        """Mark the model closed."""
        self.closed = True


class FakeEngine:
    """Loads :class:`FakeModel` objects; knobs let tests script failures and speed."""

    name = "fake"

    def __init__(self, reply: str = "Hello from the fake engine.", *, delay_s: float = 0.0,
                 load_delay_s: float = 0.0, split_bytes: bool = False,
                 fail_load: bool = False, fail_after: int | None = None, fail_decode: bool = False,
                 gpu: bool = False) -> None:
        self.reply = reply
        self.gpu = gpu  # what supports_gpu() answers: tests script a GPU build
        self.delay_s = delay_s
        self.load_delay_s = load_delay_s
        self.split_bytes = split_bytes
        self.fail_load = fail_load
        self.fail_after = fail_after
        self.fail_decode = fail_decode
        self.load_gate = threading.Event()
        self.load_gate.set()
        # Cleared by a test: every decode step waits on it (a stuck llama_decode).
        self.decode_gate = threading.Event()
        self.decode_gate.set()
        self.loaded: list[FakeModel] = []

    def supports_gpu(self) -> bool:
        """Whether this (pretend) build can offload layers to a GPU."""
        return self.gpu

    def load(self, path: str, settings: LoadSettings, chat_template: str | None, log: LogSink) -> FakeModel:
        """A :class:`FakeModel` (waits on ``load_gate``; fails when the test asks)."""
        log("info", f"fake load of {path}")
        self.load_gate.wait()
        if self.load_delay_s:
            time.sleep(self.load_delay_s)
        if self.fail_load:
            raise RuntimeError("fake load failure")
        model = FakeModel(path, settings, self.reply, self.delay_s, self.split_bytes, self.fail_after,
                          self.fail_decode)
        model.decode_gate = self.decode_gate
        self.loaded.append(model)
        return model
