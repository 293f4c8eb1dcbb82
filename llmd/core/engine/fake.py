"""A deterministic fake engine for unit tests of scheduling and error paths.

It "generates" by cycling through a scripted reply, one character (or a
configurable byte split, to exercise UTF-8 handling) per token.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator, Sequence

from llmd.core.engine.base import LoadSettings, LogSink
from llmd.core.engine.chat_template import ChatTemplate
from llmd.core.types import ChatMessage, SamplingParams

EOS = -1


class FakeModel:
    """A loaded fake model; tokens are indexes into a byte table."""

    device = "cpu"

    def __init__(self, path: str, settings: LoadSettings, reply: str, delay_s: float,
                 split_bytes: bool, fail_after: int | None) -> None:
        self.path = path
        self.n_ctx = settings.n_ctx
        self.n_gpu_layers = 0
        self._reply = reply.encode("utf-8")
        self._delay = delay_s
        self._split = split_bytes
        self._fail_after = fail_after
        self._template = ChatTemplate(None)
        self.closed = False
        self.generated = 0  # total tokens sampled, for tests

    def tokenize(self, text: str) -> list[int]:
        # One token per 4 bytes, at least one: good enough for usage maths.
        return list(range(max(1, len(text.encode("utf-8")) // 4)))

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return self._template.render(messages)

    def token_bytes(self, token: int) -> bytes:
        return b"" if token == EOS else self._pieces()[token]

    def _pieces(self) -> list[bytes]:
        if self._split:
            return [bytes([b]) for b in self._reply]
        text = self._reply.decode("utf-8")
        return [c.encode("utf-8") for c in text]

    def is_eog(self, token: int) -> bool:
        return token == EOS

    def sample_tokens(self, prompt: list[int], params: SamplingParams) -> Iterator[int]:
        pieces = self._pieces()
        i = 0
        while True:
            if self._fail_after is not None and i >= self._fail_after:
                raise RuntimeError("fake engine failure")
            if self._delay:
                time.sleep(self._delay)
            self.generated += 1
            if i >= len(pieces):
                if params.ignore_eos:
                    i = 0
                else:
                    yield EOS
                    return
            yield i
            i += 1

    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        vecs = []
        for t in texts:
            v = [float(len(t) % 7 + 1), float(sum(t.encode()) % 13 + 1), 1.0]
            norm = sum(x * x for x in v) ** 0.5
            vecs.append([x / norm for x in v])
        return vecs, sum(len(self.tokenize(t)) for t in texts)

    def close(self) -> None:
        self.closed = True


class FakeEngine:
    """Loads :class:`FakeModel` objects; knobs let tests script failures and speed."""

    name = "fake"

    def __init__(self, reply: str = "Hello from the fake engine.", *, delay_s: float = 0.0,
                 load_delay_s: float = 0.0, split_bytes: bool = False,
                 fail_load: bool = False, fail_after: int | None = None) -> None:
        self.reply = reply
        self.delay_s = delay_s
        self.load_delay_s = load_delay_s
        self.split_bytes = split_bytes
        self.fail_load = fail_load
        self.fail_after = fail_after
        self.load_gate = threading.Event()
        self.load_gate.set()
        self.loaded: list[FakeModel] = []

    def load(self, path: str, settings: LoadSettings, chat_template: str | None, log: LogSink) -> FakeModel:
        log("info", f"fake load of {path}")
        self.load_gate.wait()
        if self.load_delay_s:
            time.sleep(self.load_delay_s)
        if self.fail_load:
            raise RuntimeError("fake load failure")
        model = FakeModel(path, settings, self.reply, self.delay_s, self.split_bytes, self.fail_after)
        self.loaded.append(model)
        return model
