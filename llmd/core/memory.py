"""A deployment's memory: estimated before load, measured after, and the budget it is counted in.

The estimate (:func:`estimate`) reads the GGUF header and adds up what
llama.cpp will make resident for a deployment's settings:

* ``weights``: the file, memory-mapped; every page is touched at load, so it
  counts as resident;
* ``tokenizer``: llama.cpp's vocabulary tables (about 300 bytes per token);
* ``kv_cache``: ``n_layer x n_head_kv x (key + value length) x bytes per
  element x context``, the context being all slots' tokens padded to 256 as
  llama.cpp pads it; llama.cpp clears the buffer at load, so it is resident
  at once;
* ``compute``: the activations of the largest batch (``n_batch`` tokens)
  and the logits of the most outputs one step asks for (one per slot, plus
  draft tokens with n-gram speculation). llama.cpp reserves a larger compute
  buffer (its worst case asks for logits of every token), but a chat step
  never touches the rest of it, and untouched pages cost no memory;
* ``output``: the logits buffer handed back to the sampler;
* ``embedding``: the embedding context, created on the first embeddings
  request: its own KV cache of one slot's context, and the activations and
  logits of one chunk of :data:`EMBED_CHUNK` tokens (llama.cpp computes the
  logits of every token it embeds, so an input is embedded in chunks).

Placement reserves the whole estimate, embedding context included, from the
start: any request may create it. With GPU offload the same figures are
split between host and GPU by the share of layers offloaded.

The measurement (:class:`MemoryMeasure`) is the growth of this process's
resident memory while llama.cpp allocated and first touched the
deployment's memory: around the load, around the embedding context's
creation and first chunks, and around each decode step that is larger than
any before it (the only steps that can touch new compute pages). With a GPU,
NVML's figure for the process is read the same way around the load.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import Any

import psutil

from llmd.core.gguf_info import read_gguf_info

MIB = 1 << 20
GIB = 1 << 30

# Bytes per K or V element: ggml's q8_0 stores 32 values in 34 bytes, q4_0 in 18.
KV_BYTES_PER_ELEMENT = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
# Tokens per decode of the embedding context: llama.cpp keeps logits for every token it embeds, so the chunk
# bounds that buffer (n_vocab x 4 bytes per token, twice: the graph's and the output's).
EMBED_CHUNK = 128
# llama.cpp's vocabulary tables (token texts, scores, merges, lookup maps), per token: measured 295 bytes
# for SmolLM2's 49152 tokens.
TOKENIZER_BYTES_PER_TOKEN = 300
# Graph metadata, thread scratch and the like that every context adds.
CONTEXT_OVERHEAD = 2 * MIB
# A measurement this much above the estimate is logged as a warning with both figures.
TOLERANCE = 0.10
# What the automatic budget leaves to the system: this share of RAM, at least MIN_HOST_RESERVE
# (and of each GPU's memory, at least MIN_GPU_RESERVE).
HOST_RESERVE = 0.20
MIN_HOST_RESERVE = GIB
GPU_RESERVE = 0.10
MIN_GPU_RESERVE = 512 * MIB


@dataclass(frozen=True)
class ModelShape:
    """The figures of a GGUF header that memory depends on."""

    n_vocab: int
    n_embd: int
    n_ff: int
    n_layer: int
    kv_elements_per_token: int  # K and V values per token of context, all layers
    causal: bool  # decoder (KV cache, chunked embeddings) or encoder (one batch per input)


@functools.lru_cache(maxsize=64)
def _shape(path: str, mtime_ns: int) -> ModelShape:
    meta = read_gguf_info(path).metadata
    arch = meta.get("general.architecture")

    def num(key: str, default: int = 0) -> int:
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer figures in some architectures
            value = max((v for v in value if isinstance(v, int)), default=None)
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default

    n_embd, n_head = num("embedding_length"), num("attention.head_count")
    n_head_kv = num("attention.head_count_kv", n_head)
    head_dim = n_embd // n_head if n_head else 0
    k_len, v_len = num("attention.key_length", head_dim), num("attention.value_length", head_dim)
    tokens = meta.get("tokenizer.ggml.tokens")
    n_vocab = num("vocab_size") or (len(tokens) if isinstance(tokens, list) else 0)
    causal = meta.get(f"{arch}.attention.causal")
    return ModelShape(n_vocab=n_vocab, n_embd=n_embd, n_ff=num("feed_forward_length"), n_layer=num("block_count"),
                      kv_elements_per_token=num("block_count") * n_head_kv * (k_len + v_len),
                      causal=causal is not False)


def model_shape(path: str) -> ModelShape | None:
    """The header's figures (cached per file version); None when the header cannot be read. Blocking."""
    try:
        return _shape(path, os.stat(path).st_mtime_ns)
    except Exception:  # noqa: BLE001 - an unreadable header gives a weights-only estimate
        return None


@dataclass(frozen=True)
class MemoryEstimate:
    """What a deployment will hold, in bytes, by part; ``gpu`` is the part of the total on GPUs."""

    weights: int = 0
    tokenizer: int = 0
    kv_cache: int = 0
    compute: int = 0
    output: int = 0
    embedding: int = 0
    gpu: int = 0

    @property
    def total(self) -> int:
        """Everything, host and GPU."""
        return self.weights + self.tokenizer + self.kv_cache + self.compute + self.output + self.embedding

    @property
    def host(self) -> int:
        """The part in the machine's memory."""
        return self.total - self.gpu

    def to_dict(self) -> dict[str, int]:
        """The parts and totals, in bytes."""
        return {"weights": self.weights, "tokenizer": self.tokenizer, "kv_cache": self.kv_cache,
                "compute": self.compute, "output": self.output, "embedding": self.embedding,
                "host": self.host, "gpu": self.gpu, "total": self.total}


def _pad(n: int, to: int = 256) -> int:
    return -(-n // to) * to


def estimate(path: str, *, n_ctx: int, n_slots: int = 1, n_batch: int = 512, kv_cache_type: str = "f16",
             n_gpu_layers: int = 0, draft_tokens: int = 0, size_bytes: int | None = None) -> MemoryEstimate:
    """The estimate of a llama.cpp deployment of ``path`` with these settings (see the module docstring).

    ``n_ctx`` is per slot. Blocking (stats the file and reads its header once per version): call it off
    the event loop.
    """
    try:
        weights = os.stat(path).st_size
    except OSError:
        return MemoryEstimate(weights=size_bytes or 0)
    shape = model_shape(path)
    if shape is None or not shape.n_layer:
        return MemoryEstimate(weights=weights)
    n_slots = max(1, n_slots)
    batch = max(n_batch, n_slots)
    per_token = shape.kv_elements_per_token * KV_BYTES_PER_ELEMENT.get(kv_cache_type, 2.0)
    kv = int(per_token * _pad(max(1, n_ctx) * n_slots))
    outputs = min(batch, n_slots * (1 + max(0, draft_tokens)))
    logits = shape.n_vocab * 4 * outputs
    activations = _activations(shape, batch)
    compute = activations + logits + CONTEXT_OVERHEAD
    # The embedding context: a KV cache of one slot's context (decoders), and per decode the logits
    # (graph and output buffer) and the embeddings of every token of the chunk.
    chunk = EMBED_CHUNK if shape.causal else max(1, n_ctx)
    embed_kv = int(shape.kv_elements_per_token * 2.0 * _pad(max(1, n_ctx))) if shape.causal else 0
    embedding = (embed_kv + chunk * 4 * (2 * shape.n_vocab + shape.n_embd) + _activations(shape, chunk)
                 + CONTEXT_OVERHEAD)
    est = MemoryEstimate(weights=weights, tokenizer=shape.n_vocab * TOKENIZER_BYTES_PER_TOKEN, kv_cache=kv,
                         compute=compute, output=logits, embedding=embedding)
    return _split_gpu(est, shape.n_layer, n_gpu_layers)


def _activations(shape: ModelShape, tokens: int) -> int:
    # The tensors of one layer alive at once (ggml reuses them across layers): the residual stream, norms,
    # Q/K/V and attention output (about six of n_embd) and the feed-forward's gate, up and product (three
    # of n_ff), in f32. Flash attention (llama.cpp's default where it can) keeps no n_kv x n_tokens scores.
    return tokens * 4 * (6 * shape.n_embd + 3 * shape.n_ff)


def _split_gpu(est: MemoryEstimate, n_layer: int, n_gpu_layers: int) -> MemoryEstimate:
    """The share of layers offloaded puts that share of the weights and caches, and the compute, on GPUs."""
    if n_gpu_layers == 0 or n_layer <= 0:
        return est
    share = 1.0 if n_gpu_layers < 0 or n_gpu_layers >= n_layer else n_gpu_layers / n_layer
    gpu = int((est.weights + est.kv_cache + est.embedding) * share) + est.compute
    return MemoryEstimate(est.weights, est.tokenizer, est.kv_cache, est.compute, est.output, est.embedding,
                          gpu=min(gpu, est.total))


@dataclass
class MemoryMeasure:
    """What a deployment was measured to hold: growth of the process's resident memory, by cause, and NVML's
    figure on the GPUs; ``process`` is set instead for an engine in a process of its own (its whole tree)."""

    load: int = 0  # while the model and its context were created
    runtime: int = 0  # first touches of compute pages by decode steps larger than any before
    embedding: int = 0  # the embedding context: its creation and first chunks
    gpu: int = 0
    process: int | None = None

    @property
    def total(self) -> int:
        """Everything measured, host and GPU."""
        if self.process is not None:
            return self.process + self.gpu
        return self.load + self.runtime + self.embedding + self.gpu

    def to_dict(self) -> dict[str, Any]:
        """The parts and the total, in bytes."""
        out: dict[str, Any] = {"load": self.load, "runtime": self.runtime, "embedding": self.embedding,
                               "gpu": self.gpu, "total": self.total}
        if self.process is not None:
            out["process"] = self.process
        return out


def rss_bytes() -> int:
    """This process's resident memory, from /proc (microseconds; psutil where /proc has no statm)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return int(psutil.Process().memory_info().rss)


@dataclass(frozen=True)
class Budget:
    """The memory deployments may hold together: host bytes, GPU bytes (0: no GPU), and where they came from."""

    host: int
    gpu: int = 0
    derived: bool = False
    reason: str = ""
    gpus: list[int] = field(default_factory=list)  # each GPU's share of ``gpu``


def budget(memory_budget_mb: int, *, total_ram: int | None = None, gpu_totals: list[int] | None = None) -> Budget:
    """``deployments.memory_budget_mb``, or for 0 the machine's RAM less what the system keeps
    (:data:`HOST_RESERVE`, at least :data:`MIN_HOST_RESERVE`); each GPU's memory less its reserve."""
    gpus = [max(0, t - max(MIN_GPU_RESERVE, int(t * GPU_RESERVE))) for t in gpu_totals or []]
    if memory_budget_mb > 0:
        return Budget(memory_budget_mb * MIB, sum(gpus), False,
                      f"{memory_budget_mb} MiB, set by deployments.memory_budget_mb", gpus)
    total = int(psutil.virtual_memory().total) if total_ram is None else total_ram
    reserve = max(MIN_HOST_RESERVE, int(total * HOST_RESERVE))
    host = max(0, total - reserve)
    why = (f"derived: {host / MIB:.0f} MiB = {total / MIB:.0f} MiB of RAM less {reserve / MIB:.0f} MiB "
           f"left to the system ({HOST_RESERVE:.0%}, at least {MIN_HOST_RESERVE // MIB} MiB)")
    if gpus:
        why += "; GPUs: " + ", ".join(f"{g / MIB:.0f} MiB" for g in gpus)
    return Budget(host, sum(gpus), True, why, gpus)


def describe(est: MemoryEstimate | None, measured: MemoryMeasure | None) -> str:
    """One line for a log: estimate and measurement side by side, in MiB."""
    e = f"{est.total / MIB:.1f}" if est is not None else "?"
    m = f"{measured.total / MIB:.1f}" if measured is not None else "?"
    return f"estimated {e} MiB, measured {m} MiB"
