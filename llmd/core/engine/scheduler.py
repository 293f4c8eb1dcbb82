"""Continuous batching over the sequence slots of one loaded model.

Runs on the deployment's worker thread. Each :meth:`BatchScheduler.step`:

1. ends the jobs whose client left (or that were cancelled);
2. builds one batch from the next token of every generating sequence plus
   prompt chunks of newly admitted ones (a long prompt is split, so it never
   stalls the other streams for more than one chunk);
3. hands the text of the previous step to the requests (``before_decode``),
   so that the event loop turns it into writes while ``llama_decode`` runs
   without the GIL, rather than competing with this thread's Python work;
4. decodes it once and samples each sequence that asked for logits with its
   own C sampler chain, handing text to each request through ``post``.

A slot keeps its tokens (and their KV cache) after its job ends. A new job
goes to the free slot whose tokens share the longest prefix with its prompt,
and only the rest of the prompt is evaluated.

The ``n`` choices of one request (a job with a ``group``) are admitted
together. Only the first (the leader) evaluates the prompt; the others wait in
their slots until its last prompt chunk is decoded, then get a copy of its KV
cache (``seq_cp``) and sample their first token from the leader's logits row
with their own samplers, and go on as independent sequences.

When a request asks for log-probabilities, each token's are read from its
logits row right after it is sampled (before the next decode overwrites the
row) and travel with the event that releases the token's text.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from llmd.core.engine.base import BatchEntry, LoadedModel
from llmd.core.engine.textstream import TextAssembler
from llmd.core.types import FinishReason, GenerationResult, Timings, TokenEvent, TokenLogprob, Usage
from llmd.errors import EngineError, LlmdError, ShuttingDownError

log = logging.getLogger(__name__)


@dataclass
class Slot:
    """One sequence of the context and the job using it, if any."""

    seq: int
    tokens: list[int] = field(default_factory=list)  # what the KV cache holds for this sequence
    job: Any = None
    pending: list[int] = field(default_factory=list)  # prompt tokens still to evaluate
    next_token: int | None = None  # sampled, to be decoded next step
    sampler: Any = None
    assembler: TextAssembler | None = None
    count: int = 0
    cached: int = 0
    started: float = 0.0
    first: float | None = None
    last_used: float = 0.0
    # n > 1: the leader's slots of the other choices, until its prompt is evaluated; theirs point back
    siblings: list[Slot] = field(default_factory=list)
    leader: Slot | None = None
    # Log-probabilities (None unless asked for): tokens whose text is held back, those sent, the last sampled
    lp_pending: list[TokenLogprob] | None = None
    lp_sent: list[TokenLogprob] | None = None
    lp_last: TokenLogprob | None = None


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class BatchScheduler:
    """The slots of one model and the step loop over them (single-threaded)."""

    def __init__(self, model: LoadedModel, *, n_batch: int, prefill_chunk: int,
                 post: Callable[[Any, Any], None], finish: Callable[[Any, GenerationResult], None],
                 model_name: str, stop_message: Callable[[], str],
                 log_line: Callable[[str, str], None] = lambda level, msg: None,
                 before_decode: Callable[[], None] = lambda: None, draft_tokens: int = 0) -> None:
        self.model = model
        # n-gram (prompt-lookup) speculation for a lone stream: up to this many draft tokens per step.
        self.draft_tokens = max(0, draft_tokens)
        self.n_batch = max(1, n_batch)
        self.prefill_chunk = max(1, min(prefill_chunk, self.n_batch))
        self.slots = [Slot(seq=i) for i in range(model.n_slots)]
        self._post = post
        self._finish = finish
        self._name = model_name
        self._stop_message = stop_message
        self._log = log_line
        self._before_decode = before_decode
        # Figures for /health and /metrics.
        self.steps = 0
        self.last_batch_tokens = 0
        self.prompt_tokens_evaluated = 0
        self.prompt_tokens_cached = 0
        self.draft_tokens_sent = 0
        self.draft_tokens_accepted = 0

    # -- admission ------------------------------------------------------
    def free_slots(self) -> int:
        """How many slots have no job."""
        return sum(1 for s in self.slots if s.job is None)

    def busy(self) -> bool:
        """True while any slot has a job."""
        return any(s.job is not None for s in self.slots)

    def admit(self, job: Any) -> None:
        """Give ``job`` the free slot with the longest cached prefix of its prompt.

        The other choices of its ``group`` (``n`` > 1; the caller made sure there are free slots for all)
        take the least recently used free slots and wait there for its prompt.
        """
        free = [s for s in self.slots if s.job is None]
        slot = max(free, key=lambda s: (common_prefix(s.tokens, job.prompt), -s.last_used))
        keep = common_prefix(slot.tokens, job.prompt)
        # At least one prompt token must be decoded to get logits to sample from.
        keep = min(keep, len(job.prompt) - 1)
        if keep < len(slot.tokens) and not self.model.seq_rm(slot.seq, keep):
            self.model.seq_rm(slot.seq, 0)
            keep = 0
        del slot.tokens[keep:]
        slot.pending = list(job.prompt[keep:])
        slot.cached = keep
        self._occupy(slot, job)
        group = job.group  # the n jobs of a request (n > 1), this one first; None for one
        if group:
            free.remove(slot)
            free.sort(key=lambda s: s.last_used)
            for other, sib in zip(group[1:], free, strict=False):
                # Its cached tokens stay until the copy replaces them: a choice cancelled before that
                # leaves its old prompt cache usable.
                self._occupy(sib, other)
                sib.pending = []
                sib.leader = slot
                slot.siblings.append(sib)
        for s in (slot, *slot.siblings):
            try:
                s.sampler = self.model.new_sampler(s.job.params)
            except Exception as exc:  # noqa: BLE001 - a bad grammar fails this job only
                self._end(s, FinishReason.ERROR, exc if isinstance(exc, LlmdError) else
                          EngineError(f"cannot set up sampling: {type(exc).__name__}"))
                if s is slot:
                    return
        self.prompt_tokens_cached += keep

    def _occupy(self, slot: Slot, job: Any) -> None:
        """Start ``job``'s bookkeeping in ``slot`` (its prompt is set up by the caller)."""
        slot.job = job
        slot.count = 0
        slot.first = None
        slot.next_token = None
        slot.started = time.monotonic()
        slot.assembler = TextAssembler(job.params.stop)
        if job.params.logprobs is not None:
            slot.lp_pending, slot.lp_sent = [], []
        else:
            slot.lp_pending = slot.lp_sent = None

    # -- the step -------------------------------------------------------
    def step(self) -> None:
        """One decode of every active sequence (or nothing if all are idle)."""
        for slot in self.slots:
            if slot.job is not None and slot.job.cancel_event.is_set():
                self._end(slot, slot.job.cancel_reason)
        entries: list[tuple[Slot, BatchEntry, bool]] = []
        budget = self.n_batch
        decoding = [s for s in self.slots if s.job is not None and s.next_token is not None]
        draft = self._draft(decoding[0]) if len(decoding) == 1 and self.draft_tokens else ()
        for slot in decoding:
            tokens = (slot.next_token, *draft)
            entries.append((slot, BatchEntry(slot.seq, tokens, len(slot.tokens), True, bool(draft)), False))
            budget -= len(tokens)
        for slot in sorted((s for s in self.slots if s.job is not None and s.pending), key=lambda s: s.started):
            if budget <= 0:
                break
            n = min(len(slot.pending), self.prefill_chunk, budget)
            chunk = slot.pending[:n]
            entries.append((slot, BatchEntry(slot.seq, tuple(chunk), len(slot.tokens), n == len(slot.pending)), True))
            budget -= n
        self._before_decode()
        if not entries:
            return
        try:
            rows = self.model.decode([e for _, e, _ in entries])
        except Exception as exc:  # noqa: BLE001 - every job in the batch fails, the daemon does not
            log.exception("decode failed on %s", self._name)
            self._log("error", f"decode failed: {exc}")
            for slot, _, _ in entries:
                self._end(slot, FinishReason.ERROR, EngineError(f"generation failed: {type(exc).__name__}"))
                # The KV cache of these sequences is suspect now.
                self.model.seq_rm(slot.seq, 0)
                slot.tokens.clear()
            return
        self.steps += 1
        self.last_batch_tokens = sum(len(e.tokens) for _, e, _ in entries)
        for (slot, entry, prefill), row in zip(entries, rows, strict=True):
            slot.tokens.extend(entry.tokens)
            if prefill:
                del slot.pending[:len(entry.tokens)]
                self.prompt_tokens_evaluated += len(entry.tokens)
            if row < 0 or slot.job is None:
                continue
            if entry.every_logit:
                self._verify(slot, entry, row)
                continue
            if slot.siblings:
                self._fork(slot, row)
            token = self._sample(slot, row)
            if token is not None:
                self._accept(slot, token)

    def _fork(self, leader: Slot, row: int) -> None:
        """The leader's prompt is evaluated: each waiting choice gets a copy of its KV cache and samples its
        first token from the same logits row, with its own sampler."""
        siblings, leader.siblings = leader.siblings, []
        for sib in siblings:
            if sib.job is None or sib.leader is not leader:  # ended meanwhile
                continue
            sib.leader = None
            self.model.seq_cp(leader.seq, sib.seq)
            sib.tokens[:] = leader.tokens
            sib.cached = leader.cached
            token = self._sample(sib, row)
            if token is not None:
                self._accept(sib, token)

    def _sample(self, slot: Slot, row: int) -> int | None:
        """The slot's next token from logits row ``row``; ``None`` when sampling failed (the job has ended)."""
        try:
            token = self.model.sample(slot.sampler, row)
            if slot.lp_pending is not None:
                slot.lp_last = self.model.logprobs(row, token, slot.job.params.logprobs)
            return token
        except Exception as exc:  # noqa: BLE001 - this job fails, the others go on
            log.exception("sampling failed on %s", self._name)
            self._log("error", f"generation failed: {exc}")
            self._end(slot, FinishReason.ERROR, EngineError(f"generation failed: {type(exc).__name__}"))
            return None

    # -- n-gram speculation -------------------------------------------------
    def _draft(self, slot: Slot) -> tuple[int, ...]:
        """Tokens that followed the latest earlier occurrence of the last few tokens (prompt lookup).

        Only for a lone stream with no prompt being evaluated: verifying a draft costs one wider decode,
        which several streams already fill.
        """
        if any(s.pending for s in self.slots if s.job is not None):
            return ()
        job = slot.job
        history = slot.tokens + [slot.next_token]
        # Not near the end of the context, where a draft's extra cells would end the answer sooner.
        if len(history) + 2 * self.draft_tokens + 2 >= self.model.n_ctx:
            return ()
        room = self.draft_tokens
        if job.params.max_tokens is not None:
            room = min(room, job.params.max_tokens - slot.count - 1)
        k = min(room, self.n_batch - 1)
        if k <= 0:
            return ()
        for n in (3, 2):
            if len(history) <= n:
                continue
            tail = history[-n:]
            # the latest earlier occurrence, scanning back from the end
            for i in range(len(history) - n - 1, -1, -1):
                if history[i:i + n] == tail:
                    found = tuple(history[i + n:i + n + k])
                    if found:
                        return found
                    break
        return ()

    def _verify(self, slot: Slot, entry: BatchEntry, row: int) -> None:
        """Sample along a decoded draft: each token is sampled from the logits that follow the tokens
        accepted so far, exactly as one step at a time would; the first that differs from the draft
        ends the step and the KV of the rest of the draft is dropped."""
        drafts = entry.tokens[1:]
        self.draft_tokens_sent += len(drafts)
        kept = 1  # entries' tokens whose KV stands: the one sampled last step, then each matched draft
        for j in range(len(entry.tokens)):
            token = self._sample(slot, row + j)
            if token is None:
                break
            self._accept(slot, token)
            if slot.job is None or j >= len(drafts) or token != drafts[j]:
                break
            kept += 1
            self.draft_tokens_accepted += 1
            slot.next_token = None  # already decoded: its logits are the next row
        if kept < len(entry.tokens):
            self.model.seq_rm(slot.seq, entry.pos + kept)
            del slot.tokens[entry.pos + kept:]

    def _accept(self, slot: Slot, token: int) -> None:
        job = slot.job
        params = job.params
        if slot.first is None:
            slot.first = time.monotonic()
        slot.next_token = None
        if self.model.is_eog(token) and not params.ignore_eos:
            self._end(slot, FinishReason.STOP)
            return
        slot.count += 1
        text = slot.assembler.feed(self.model.token_bytes(token))
        pending = slot.lp_pending
        if pending is not None:
            # A token's log-probability goes with the event that releases its text (text may be held back).
            pending.append(slot.lp_last)
            if text:
                self._post(job, TokenEvent(text, tuple(pending), job.index))
                slot.lp_sent.extend(pending)
                pending.clear()
        elif text:
            self._post(job, TokenEvent(text, (), job.index))
        if slot.assembler.stopped:
            self._end(slot, FinishReason.STOP)
        elif params.max_tokens is not None and slot.count >= params.max_tokens:
            self._end(slot, FinishReason.LENGTH)
        elif len(slot.tokens) + 1 >= self.model.n_ctx:
            self._end(slot, FinishReason.LENGTH)
        else:
            slot.next_token = token

    def _end(self, slot: Slot, reason: FinishReason, error: LlmdError | None = None) -> None:
        """Finish the slot's job and free the slot; its tokens stay cached."""
        job = slot.job
        if job is None:
            return
        if slot.siblings:  # choices still waiting for this prompt end with it
            siblings, slot.siblings = slot.siblings, []
            for sib in siblings:
                if sib.leader is slot:
                    self._end(sib, reason, error)
        slot.leader = None
        lp = slot.lp_pending
        if reason in (FinishReason.STOP, FinishReason.LENGTH) and slot.assembler is not None:
            tail = slot.assembler.finish()
            if tail:
                self._post(job, TokenEvent(tail, tuple(lp or ()), job.index))
                if lp:
                    slot.lp_sent.extend(lp)
        # (tokens whose text a stop string cut, or an unfinished character dropped, lose their logprobs)
        if reason is FinishReason.ERROR and error is None:
            error = EngineError("generation failed; see the daemon's log")
        if reason is FinishReason.SHUTDOWN and error is None:
            error = ShuttingDownError(f"the answer was cut short: {self._stop_message()}")
        now = time.monotonic()
        decode_s = now - slot.first if slot.first is not None else 0.0
        result = GenerationResult(
            text=slot.assembler.text if slot.assembler else "",
            finish_reason=reason,
            usage=Usage(len(job.prompt), slot.count, slot.cached),
            timings=Timings(
                queued_s=slot.started - job.submitted,
                ttft_s=(slot.first if slot.first is not None else now) - job.submitted,
                duration_s=now - job.submitted,
                decode_tps=(slot.count - 1) / decode_s if slot.count > 1 and decode_s > 0 else 0.0,
            ),
            model=self._name,
            error=error,
            logprobs=tuple(slot.lp_sent) if slot.lp_sent else (),
            index=job.index,
            stop_sequence=slot.assembler.matched if slot.assembler else None,
        )
        slot.lp_pending = slot.lp_sent = slot.lp_last = None
        if slot.sampler is not None:
            self.model.free_sampler(slot.sampler)
            slot.sampler = None
        slot.job = None
        slot.pending = []
        slot.next_token = None
        slot.last_used = now
        self._finish(job, result)

    def end_all(self, reason: FinishReason) -> None:
        """Finish every running job (the worker is exiting)."""
        for slot in self.slots:
            self._end(slot, reason)

    def stats(self) -> dict[str, Any]:
        """Scheduler figures (read without a lock: they are plain ints)."""
        return {
            "slots": len(self.slots),
            "active_slots": sum(1 for s in self.slots if s.job is not None),
            "steps": self.steps,
            "last_batch_tokens": self.last_batch_tokens,
            "prompt_tokens_evaluated": self.prompt_tokens_evaluated,
            "prompt_tokens_cached": self.prompt_tokens_cached,
            "draft_tokens_sent": self.draft_tokens_sent,
            "draft_tokens_accepted": self.draft_tokens_accepted,
            # KV-cache cells held (running sequences and the prompt cache of idle ones) and the cells there are
            "kv_cache_tokens": sum(len(s.tokens) for s in self.slots),
            "kv_cache_capacity": len(self.slots) * int(getattr(self.model, "n_ctx", 0) or 0),
        }
