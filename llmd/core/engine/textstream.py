"""Turning a stream of token bytes into safe text pieces.

Two concerns every engine shares:

* a token can end in the middle of a UTF-8 character (common for Chinese and
  Russian text), so bytes are decoded incrementally and an incomplete
  sequence is held back until the next token completes it;
* stop strings can span several tokens, so any tail of the pending text that
  could still grow into a stop string is held back until it cannot.
"""

from __future__ import annotations

import codecs


class TextAssembler:
    """Accumulates token bytes and releases text that is safe to send."""

    def __init__(self, stop: tuple[str, ...] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = tuple(s for s in stop if s)
        self._pending = ""
        self.text = ""  # everything released so far
        self.stopped = False  # a stop string was found
        self.matched: str | None = None  # which one (the Anthropic API names it in stop_sequence)
        self.dropped_bytes = 0  # bytes of an unfinished character dropped at the end

    def feed(self, data: bytes) -> str:
        """Add one token's bytes; return the text that may be sent now."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        return self._release()

    def finish(self) -> str:
        """End of generation: release everything still held back."""
        if self.stopped:
            return ""
        # An answer cut by max_tokens can end inside a character: drop the
        # incomplete bytes rather than send a replacement character.
        self.dropped_bytes = len(self._decoder.getstate()[0])
        self._decoder.reset()
        out = self._cut_at_stop()
        if not self.stopped:
            out, self._pending = self._pending, ""
        self.text += out
        return out

    def _cut_at_stop(self) -> str:
        """If a stop string is in the pending text, cut there and mark stopped."""
        first, matched = -1, None
        for s in self._stop:
            i = self._pending.find(s)
            if i != -1 and (first == -1 or i < first):
                first, matched = i, s
        if first == -1:
            return ""
        out = self._pending[:first]
        self._pending = ""
        self.stopped = True
        self.matched = matched
        return out

    def _release(self) -> str:
        out = self._cut_at_stop()
        if self.stopped:
            self.text += out
            return out
        keep = self._holdback()
        if keep:
            out, self._pending = self._pending[:-keep], self._pending[-keep:]
        else:
            out, self._pending = self._pending, ""
        self.text += out
        return out

    def _holdback(self) -> int:
        """Length of the longest pending suffix that is a proper prefix of a stop string."""
        best = 0
        for s in self._stop:
            for k in range(min(len(s) - 1, len(self._pending)), best, -1):
                if self._pending.endswith(s[:k]):
                    best = k
                    break
        return best
