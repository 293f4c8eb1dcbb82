"""The llama.cpp engine, on llama-cpp-python's low-level API.

One model, one context with ``n_slots`` sequences. By default each sequence
has its own KV buffer (``kv_unified=False``, total context = per-slot
context x slots): measured here, that decodes many streams faster than one
shared buffer. Sampling runs in C through a ``llama_sampler`` chain per
request. Embeddings use a second context created on first use with
``embeddings=True`` over the same (memory-mapped) weights.

What each deployment makes resident is measured here, where it happens
(:class:`llmd.core.memory.MemoryMeasure`): the growth of the process around
the load, around each decode step larger than any before it, and around the
embedding context's creation and first chunks.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import threading
import weakref
from typing import Any, Sequence

import numpy as np

from llmd.core import memory
from llmd.core.engine.base import BatchEntry, LoadSettings, LogSink
from llmd.core.engine.chat_template import ChatTemplate
from llmd.core.types import ChatMessage, SamplingParams, TokenLogprob
from llmd.errors import ValidationError

log = logging.getLogger(__name__)

PENALTY_LAST_N = 64  # tokens the repeat/frequency/presence penalties look back on


class LlamaCppModel:
    """A model and a multi-sequence context."""

    def __init__(self, path: str, settings: LoadSettings, chat_template: str | None, sink: LogSink) -> None:
        import llama_cpp  # deferred: importing loads the shared library
        from llama_cpp._internals import LlamaModel

        self._lib = lib = llama_cpp
        self.path = path
        self.settings = settings
        self._sink = sink
        lib.llama_backend_init()
        mparams = lib.llama_model_default_params()
        mparams.n_gpu_layers = settings.n_gpu_layers
        # verbose=True: with False, llama-cpp-python points the whole process's stdout and stderr at
        # /dev/null while it loads, and every other thread's log lines are lost with them. llama.cpp's own
        # lines come through the engine's log callback either way.
        self._model = LlamaModel(path_model=path, params=mparams, verbose=True)
        self._vocab = self._model.vocab
        self.n_vocab = lib.llama_vocab_n_tokens(self._vocab)
        self.n_slots = max(1, settings.n_slots)
        # llama.cpp aborts the process (GGML_ASSERT) on a batch smaller than the number of sequences:
        # a batch holds at least one token per slot.
        n_batch = max(settings.n_batch, self.n_slots)
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = settings.n_ctx * self.n_slots
        cparams.n_batch = n_batch
        cparams.n_ubatch = n_batch
        cparams.n_seq_max = self.n_slots
        cparams.n_threads = settings.n_threads
        cparams.n_threads_batch = settings.n_threads
        cparams.kv_unified = settings.kv_unified
        kv_types = {"f16": lib.GGML_TYPE_F16, "q8_0": lib.GGML_TYPE_Q8_0, "q4_0": lib.GGML_TYPE_Q4_0}
        cparams.type_k = cparams.type_v = kv_types[settings.kv_cache_type]
        if settings.kv_cache_type != "f16":
            # llama.cpp stores a quantized V cache only with flash attention; "auto" may leave it off.
            cparams.flash_attn_type = lib.LLAMA_FLASH_ATTN_TYPE_ENABLED
        cparams.no_perf = True
        self._ctx = lib.llama_init_from_model(self._model.model, cparams)
        if self._ctx and lib.llama_n_batch(self._ctx) < min(n_batch, lib.llama_n_ctx(self._ctx)):
            # llama.cpp capped the batch at the context asked for, then padded the context: slots now
            # take prompts longer than a batch, whose decode would abort the process. Ask for the
            # padded context itself.
            cparams.n_ctx = lib.llama_n_ctx(self._ctx)
            lib.llama_free(self._ctx)
            self._ctx = lib.llama_init_from_model(self._model.model, cparams)
        if not self._ctx:
            self._model.close()
            raise RuntimeError(f"llama.cpp could not create a context of {cparams.n_ctx} tokens")
        self._mem = lib.llama_get_memory(self._ctx)
        self.n_ctx = lib.llama_n_ctx(self._ctx) // self.n_slots
        self._batch = lib.llama_batch_init(n_batch, 0, 1)
        offload = bool(lib.llama_supports_gpu_offload())
        self.n_gpu_layers = settings.n_gpu_layers if offload else 0
        self.device = "cuda" if offload and self.n_gpu_layers != 0 else "cpu"
        self._pieces: dict[int, bytes] = {}
        self._embedder: Any = None  # an encoder's embedding model (llama_cpp.Llama), or None
        self._embed_ctx: Any = None  # a decoder's embedding context (chunked), or None
        self._embed_batch: Any = None
        self._embed_lock = threading.Lock()
        self._embed_high = 0  # the most tokens one embedding decode has used
        self.measured = memory.MemoryMeasure()
        self._step_high = (0, 0)  # the most tokens and outputs one decode step has used
        bos, eos = self._model.token_bos(), self._model.token_eos()
        self._bos = bos
        self._template = ChatTemplate(
            chat_template,
            bos_token=self._piece(bos, special=True).decode("utf-8", "replace") if bos >= 0 else "",
            eos_token=self._piece(eos, special=True).decode("utf-8", "replace") if eos >= 0 else "")
        sink("info", f"loaded {path}: {self.n_slots} slots x {self.n_ctx} tokens, threads={settings.n_threads}, "
                     f"kv_unified={settings.kv_unified}, kv_cache_type={settings.kv_cache_type}, "
                     f"gpu_layers={self.n_gpu_layers}, device={self.device}")

    # -- text -----------------------------------------------------------
    def _piece(self, token: int, special: bool = False) -> bytes:
        buf = ctypes.create_string_buffer(64)
        n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        if n < 0:  # buffer too small: -n is the size needed
            buf = ctypes.create_string_buffer(-n)
            n = self._lib.llama_token_to_piece(self._vocab, token, buf, len(buf), 0, special)
        return buf.raw[:n]

    def tokenize(self, text: str, add_special: bool = True, parse_special: bool = True) -> list[int]:
        """Tokens with BOS (when the vocab wants it and ``add_special``) and special tokens parsed (when
        ``parse_special``: ``<|im_end|>`` is one token, else its characters)."""
        tokens = self._model.tokenize(text.encode("utf-8"), add_bos=add_special, special=parse_special)
        # A template that writes the BOS text itself would otherwise give two.
        if len(tokens) > 1 and tokens[0] == self._bos and tokens[1] == self._bos:
            tokens = tokens[1:]
        return tokens

    @property
    def chat_template(self) -> str:
        """The template's source: the GGUF's own, or ChatML when it has none."""
        return self._template.source

    def render_chat(self, messages: Sequence[ChatMessage | dict[str, Any]],
                    tools: list[dict[str, Any]] | None = None) -> str:
        """The prompt for ``messages`` through the GGUF's own chat template (``tools`` when given)."""
        return self._template.render(messages, tools=tools)

    def token_bytes(self, token: int) -> bytes:
        """Raw bytes of a token; cached, since the vocabulary is fixed."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._pieces[token] = self._piece(token)
        return piece

    def is_eog(self, token: int) -> bool:
        """End-of-generation per the vocabulary (EOS, EOT, <|im_end|>, ...)."""
        return bool(self._lib.llama_vocab_is_eog(self._vocab, token))

    # -- sampling -------------------------------------------------------
    def check_grammar(self, grammar: str) -> None:
        """Parse a GBNF grammar once, to refuse a bad one before streaming starts."""
        smpl = self._lib.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not smpl:
            raise ValidationError("the grammar does not parse (see the daemon log for where)", field="grammar")
        self._lib.llama_sampler_free(smpl)

    def new_sampler(self, p: SamplingParams) -> Any:
        """A C sampler chain: logit bias, grammar, penalties, then greedy or top-k/top-p/min-p/temperature/dist."""
        lib = self._lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lambda s: lib.llama_sampler_chain_add(chain, s)  # noqa: E731
        if p.logit_bias:
            # First, so that every later sampler (greedy included) sees the biased logits. llama.cpp copies
            # the array, so it need not outlive this call. Ids were checked against n_vocab by the core.
            biases = (lib.llama_logit_bias * len(p.logit_bias))(*(
                lib.llama_logit_bias(token, bias) for token, bias in p.logit_bias))
            add(lib.llama_sampler_init_logit_bias(self.n_vocab, len(p.logit_bias), biases))
        if p.grammar:
            g = lib.llama_sampler_init_grammar(self._vocab, p.grammar.encode("utf-8"), b"root")
            if not g:
                lib.llama_sampler_free(chain)
                raise ValidationError("the grammar does not parse", field="grammar")
            add(g)
        repeat = p.repeat_penalty if p.repeat_penalty is not None else 1.0
        freq, pres = p.frequency_penalty or 0.0, p.presence_penalty or 0.0
        if repeat != 1.0 or freq or pres:
            add(lib.llama_sampler_init_penalties(self.n_vocab, PENALTY_LAST_N, repeat, freq, pres))
        temp = p.temperature if p.temperature is not None else 0.8
        if temp <= 0:
            add(lib.llama_sampler_init_greedy())
            return chain
        if p.top_k:
            add(lib.llama_sampler_init_top_k(p.top_k))
        if p.top_p is not None and p.top_p < 1.0:
            add(lib.llama_sampler_init_top_p(p.top_p, 1))
        if p.min_p:
            add(lib.llama_sampler_init_min_p(p.min_p, 1))
        add(lib.llama_sampler_init_temp(temp))
        # llama.cpp's seed is 32 bits; the APIs take 64-bit seeds, folded here so equal seeds stay equal.
        add(lib.llama_sampler_init_dist((p.seed & 0xFFFFFFFF) if p.seed is not None else 0xFFFFFFFF))
        return chain

    def free_sampler(self, sampler: Any) -> None:
        """Free a chain (and the samplers it owns)."""
        self._lib.llama_sampler_free(sampler)

    def sample(self, sampler: Any, row: int) -> int:
        """Sample from the logits of batch row ``row``; the chain accepts the token."""
        return int(self._lib.llama_sampler_sample(sampler, self._ctx, row))

    # -- decoding -------------------------------------------------------
    def decode(self, entries: Sequence[BatchEntry]) -> list[int]:
        """One ``llama_decode`` over all entries; rows to sample from, per entry (for ``every_logit``, the
        first token's row; the others follow it)."""
        b = self._batch
        tok, pos, nseq, seqs, logits = b.token, b.pos, b.n_seq_id, b.seq_id, b.logits
        i = 0
        rows = []
        for e in entries:
            p = e.pos
            for t in e.tokens:
                tok[i] = t
                pos[i] = p
                nseq[i] = 1
                seqs[i][0] = e.seq
                logits[i] = 0
                i += 1
                p += 1
            if e.every_logit:
                for j in range(i - len(e.tokens), i):
                    logits[j] = 1
                rows.append(i - len(e.tokens))
            elif e.logits:
                logits[i - 1] = 1
                rows.append(i - 1)
            else:
                rows.append(-1)
        b.n_tokens = i
        outputs = sum(len(e.tokens) if e.every_logit else 1 for e in entries if e.logits or e.every_logit)
        high_tokens, high_outputs = self._step_high
        # Only a step larger than any before can touch compute pages that were never touched: measure those.
        before = memory.rss_bytes() if i > high_tokens or outputs > high_outputs else None
        rc = self._lib.llama_decode(self._ctx, b)
        if before is not None:
            self.measured.runtime += max(0, memory.rss_bytes() - before)
            self._step_high = (max(i, high_tokens), max(outputs, high_outputs))
        if rc != 0:
            raise RuntimeError(f"llama_decode failed with status {rc}")
        return rows

    def seq_rm(self, seq: int, p0: int) -> bool:
        """Drop positions ``p0..`` of one sequence from the KV cache."""
        return bool(self._lib.llama_memory_seq_rm(self._mem, seq, p0, -1))

    def seq_cp(self, src: int, dst: int) -> None:
        """Copy all of sequence ``src``'s KV cache to ``dst`` (emptied first).

        With per-sequence buffers (``kv_unified=False``) llama.cpp copies the whole buffer of ``src`` at the
        next decode, which it only allows for the whole range (-1, -1); with a unified buffer the cells are
        shared. Either way the copy's logits equal a fresh evaluation (checked with the bundled model).
        """
        lib = self._lib
        lib.llama_memory_seq_rm(self._mem, dst, 0, -1)
        lib.llama_memory_seq_cp(self._mem, src, dst, -1, -1)

    def logprobs(self, row: int, token: int, k: int) -> TokenLogprob:
        """``token``'s log-probability under the raw logits of batch row ``row`` (before bias, penalties and
        temperature, as llama-server reports them), and the ``k`` most likely tokens, most likely first."""
        ptr = self._lib.llama_get_logits_ith(self._ctx, row)
        # float64: a log-softmax over ~50k-150k logits loses digits in float32 (a greedy token's -0.0001).
        logits = np.ctypeslib.as_array(ptr, shape=(self.n_vocab,)).astype(np.float64)
        top = float(logits.max())
        norm = top + float(np.log(np.exp(logits - top).sum()))
        alternatives: tuple[tuple[str, bytes, float], ...] = ()
        if k > 0:
            k = min(k, self.n_vocab)
            best = np.sort(np.argpartition(-logits, k - 1)[:k])
            # Most likely first; ties by token id, as llama.cpp's greedy sampler breaks them.
            best = best[np.argsort(-logits[best], kind="stable")]
            alternatives = tuple(self._logprob_entry(int(t), float(logits[t]) - norm) for t in best)
        text, data, lp = self._logprob_entry(token, float(logits[token]) - norm)
        return TokenLogprob(text, data, lp, alternatives)

    def _logprob_entry(self, token: int, logprob: float) -> tuple[str, bytes, float]:
        data = self.token_bytes(token)
        return data.decode("utf-8", "replace"), data, min(0.0, logprob)

    # -- embeddings -----------------------------------------------------
    def embed(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        """Normalised, mean-pooled embeddings from a second, embedding-only context (created on first use)."""
        with self._embed_lock:
            if self._embed_ctx is None and self._embedder is None:
                before = memory.rss_bytes()
                shape = memory.model_shape(self.path)
                if shape is None or shape.causal:
                    self._new_embed_context()
                else:
                    self._new_encoder()
                self.measured.embedding += max(0, memory.rss_bytes() - before)
                self._sink("info", "embedding context created")
            if self._embedder is not None:
                return self._embed_encoder(texts)
            vectors, count = [], 0
            for i, text in enumerate(texts):
                tokens = self._model.tokenize(text.encode("utf-8"), add_bos=True, special=False)
                # A text of characters the tokenizer drops ("\x04") gives no tokens, and decoding nothing
                # fails inside llama.cpp: refuse it by name instead.
                if not tokens or (len(tokens) == 1 and tokens[0] == self._bos):
                    raise ValidationError(f"input[{i}] has no tokens: the model's tokenizer drops all of it",
                                          field="input")
                if len(tokens) > self._embed_n_ctx:
                    raise ValidationError(f"input[{i}] has {len(tokens)} tokens; this deployment embeds at "
                                          f"most {self._embed_n_ctx} (its context per slot)", field="input")
                vectors.append(self._embed_tokens(tokens))
                count += len(tokens)
        return vectors, count

    def _new_embed_context(self) -> None:
        """A decoder's embedding context: per-token embeddings (no pooling in llama.cpp), one slot's context,
        decoded in chunks of EMBED_CHUNK tokens and mean-pooled here.

        llama.cpp keeps the logits of every token it is asked to embed; a context that took a whole input per
        decode would hold n_vocab x 4 bytes per token twice over (1.6 GB for 4096 tokens of a 49k vocabulary).
        Chunks bound that, and mean pooling over the chunks' outputs is what llama.cpp's own MEAN pooling
        computes from the same per-token embeddings.
        """
        lib = self._lib
        cparams = lib.llama_context_default_params()
        cparams.n_ctx = self.n_ctx
        cparams.n_batch = cparams.n_ubatch = memory.EMBED_CHUNK
        cparams.n_seq_max = 1
        cparams.n_threads = cparams.n_threads_batch = self.settings.n_threads
        cparams.embeddings = True
        cparams.pooling_type = lib.LLAMA_POOLING_TYPE_NONE
        cparams.no_perf = True
        ctx = lib.llama_init_from_model(self._model.model, cparams)
        if not ctx:
            raise RuntimeError("llama.cpp could not create the embedding context")
        self._embed_ctx = ctx
        self._embed_batch = lib.llama_batch_init(memory.EMBED_CHUNK, 0, 1)
        self._embed_n_ctx = int(lib.llama_n_ctx(ctx))
        self._n_embd = int(lib.llama_model_n_embd(self._model.model))

    def _embed_tokens(self, tokens: list[int]) -> list[float]:
        """The normalised mean of the per-token embeddings of one input, decoded chunk by chunk."""
        lib, ctx, b, n_embd = self._lib, self._embed_ctx, self._embed_batch, self._n_embd
        lib.llama_memory_clear(lib.llama_get_memory(ctx), True)
        total = np.zeros(n_embd, dtype=np.float64)
        for start in range(0, len(tokens), memory.EMBED_CHUNK):
            chunk = tokens[start:start + memory.EMBED_CHUNK]
            for j, t in enumerate(chunk):
                b.token[j], b.pos[j], b.n_seq_id[j], b.logits[j] = t, start + j, 1, 1
                b.seq_id[j][0] = 0
            b.n_tokens = len(chunk)
            before = memory.rss_bytes() if len(chunk) > self._embed_high else None
            rc = lib.llama_decode(ctx, b)
            if before is not None:
                self.measured.embedding += max(0, memory.rss_bytes() - before)
                self._embed_high = len(chunk)
            if rc != 0:
                raise RuntimeError(f"llama_decode (embeddings) failed with status {rc}")
            out = np.ctypeslib.as_array(lib.llama_get_embeddings(ctx), shape=(len(chunk) * n_embd,))
            total += out.reshape(len(chunk), n_embd).sum(axis=0, dtype=np.float64)
        mean = total / len(tokens)
        norm = float(np.linalg.norm(mean))
        return (mean / norm if norm > 0 else mean).astype(float).tolist()

    def _new_encoder(self) -> None:
        """An encoder (non-causal attention) embeds a whole input in one batch: llama-cpp-python's pooled
        embedding model over the same file, one slot's context per batch."""
        # An embedding context keeps up to llama_max_parallel_sequences() inputs at once and llama.cpp
        # rounds n_ctx down to a multiple of that; a batch then larger than n_ctx aborts the process
        # (GGML_ASSERT in graph_reserve). Round up instead.
        n = self.n_ctx
        seqs = min(n, int(self._lib.llama_max_parallel_sequences()))
        n = -(-n // seqs) * seqs
        # verbose=True, as for the model: False silences the whole process (its file descriptors) while it
        # loads. What the Python wrapper then prints goes to the daemon's log at debug level instead.
        printed = io.StringIO()
        with contextlib.redirect_stderr(printed), contextlib.redirect_stdout(printed):
            self._embedder = self._lib.Llama(
                model_path=self.path, n_ctx=n, n_batch=n, n_ubatch=n,
                n_threads=self.settings.n_threads, n_gpu_layers=self.settings.n_gpu_layers,
                embedding=True, pooling_type=self._lib.LLAMA_POOLING_TYPE_MEAN, verbose=True,
            )
        log.debug("embedding context of %s: %s", self.path, printed.getvalue()[:4000])
        self._embed_n_ctx = n

    def _embed_encoder(self, texts: Sequence[str]) -> tuple[list[list[float]], int]:
        for i, text in enumerate(texts):
            n = len(self._embedder.tokenize(text.encode("utf-8")))
            if not n:
                raise ValidationError(f"input[{i}] has no tokens: the model's tokenizer drops all of it",
                                      field="input")
            if n > self._embed_n_ctx:
                raise ValidationError(f"input[{i}] has {n} tokens; this deployment embeds at most "
                                      f"{self._embed_n_ctx} (its context per slot)", field="input")
        vectors, count = self._embedder.embed(list(texts), normalize=True, return_count=True)
        return [list(map(float, v)) for v in vectors], int(count)

    def measured_memory(self) -> memory.MemoryMeasure:
        """What this model was measured to hold so far (see the module docstring)."""
        return self.measured

    def close(self) -> None:
        """Free the contexts, the batch and the model."""
        if self._embedder is not None:
            try:
                self._embedder.close()
            except Exception:  # noqa: BLE001 - freeing must not stop a shutdown
                log.warning("closing the embedding context failed", exc_info=True)
            self._embedder = None
        if self._embed_ctx is not None:
            self._lib.llama_batch_free(self._embed_batch)
            self._lib.llama_free(self._embed_ctx)
            self._embed_ctx = None
        if self._ctx:
            self._lib.llama_batch_free(self._batch)
            self._lib.llama_free(self._ctx)
            self._ctx = None
            self._model.close()


# ggml log levels (NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5) -> Python
# logging. llama.cpp's INFO is chatty (every tensor of a graph), so it goes to
# DEBUG; warnings and errors stay visible.
_GGML_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}


_SINK_LEVELS = {2: "info", 3: "warning", 4: "error"}


class LlamaCppEngine:
    """Loads GGUF files with llama.cpp.

    llama.cpp's log callback (``llama_log_set``) is process-wide, so its lines
    cannot say which model they belong to. Loads are serialised under a lock
    and, while one runs, the native lines (info and above) also go to the
    loading deployment's log sink; lines that arrive outside a load go to the
    daemon's log only (logger ``llama.cpp``). Loading one model at a time also
    keeps two large loads from competing for memory.
    """

    name = "llama.cpp"

    def __init__(self) -> None:
        import llama_cpp

        native = logging.getLogger("llama.cpp")
        last = [logging.DEBUG, 2]
        self._load_lock = threading.Lock()
        self._sink: LogSink | None = None
        self._partial: list[str] = []  # a line that llama.cpp sends in pieces

        def on_log(level: int, text: bytes, _user: Any) -> None:
            # Level 5 continues the previous message.
            py_level = last[0] if level == 5 else _GGML_LEVELS.get(level, logging.DEBUG)
            ggml_level = last[1] if level == 5 else level
            last[0], last[1] = py_level, ggml_level
            message = text.decode("utf-8", "replace")
            if native.isEnabledFor(py_level):
                native.log(py_level, "%s", message.rstrip())
            sink = self._sink
            if sink is not None and ggml_level in _SINK_LEVELS:
                self._partial.append(message)
                if message.endswith("\n"):
                    line, self._partial[:] = "".join(self._partial).rstrip(), []
                    if line:
                        sink(_SINK_LEVELS[ggml_level], "llama.cpp: " + line)

        # llama.cpp keeps only the raw pointer: the engine holds the Python
        # object for as long as llama.cpp may call it, and hands llama.cpp back
        # its own logger before the object goes (a later load in the same
        # process, by another engine or llama-cpp-python itself, would
        # otherwise call freed memory).
        self._log_callback = llama_cpp.llama_log_callback(on_log)
        llama_cpp.llama_log_set(self._log_callback, ctypes.c_void_p(0))
        from llama_cpp import _logger  # llama-cpp-python's own logger, alive for the whole process

        weakref.finalize(self, llama_cpp.llama_log_set, _logger.llama_log_callback, ctypes.c_void_p(0))
        self._gpu = bool(llama_cpp.llama_supports_gpu_offload())

    def supports_gpu(self) -> bool:
        """True when this llama.cpp build can offload layers to a GPU."""
        return self._gpu

    def load(self, path: str, settings: LoadSettings, chat_template: str | None, log: LogSink) -> LlamaCppModel:
        """Load ``path`` (blocking; seconds for large models); native log lines go to ``log`` meanwhile."""
        log("info", f"loading {path}")
        with self._load_lock:
            self._sink, self._partial[:] = log, []
            try:
                # Loads are serialised, so the growth of the process meanwhile is this model's (give or take
                # what other threads allocate at the same time).
                before = memory.rss_bytes()
                model = LlamaCppModel(path, settings, chat_template, log)
                model.measured.load = max(0, memory.rss_bytes() - before)
                return model
            finally:
                self._sink = None
