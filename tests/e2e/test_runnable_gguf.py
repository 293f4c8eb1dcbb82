"""tests/runnable_gguf.py's random-weight llama GGUF on the real llama.cpp: it loads, has the asked shape, decodes."""

from __future__ import annotations

from pathlib import Path

import pytest
from runnable_gguf import write_random_llama_gguf

from llmd.core.registry import find_bundled_gguf

pytestmark = pytest.mark.e2e

# Not the defaults, so that each argument is seen to reach the file. A width of 200 is no multiple of
# Q8_0's block of 32, so that shape takes the f16 path for the embedding and output matrices.
SHAPES = [
    {"n_embd": 192, "n_layer": 3, "n_head": 6, "n_head_kv": 3, "n_ff": 384, "context_length": 1024},
    {"n_embd": 200, "n_layer": 2, "n_head": 4, "n_head_kv": 1, "n_ff": 300, "context_length": 4096},
]


def expected_n_params(n_vocab: int, n_embd: int, n_layer: int, n_head: int, n_head_kv: int, n_ff: int) -> int:
    """Weights of a llama model with separate token embedding and output matrices."""
    kv_dim = n_embd // n_head * n_head_kv
    per_block = 2 * n_embd + 2 * n_embd * n_embd + 2 * n_embd * kv_dim + 3 * n_embd * n_ff
    return 2 * n_vocab * n_embd + n_embd + n_layer * per_block


@pytest.mark.parametrize("shape", SHAPES, ids=["q8_0-embeddings", "f16-embeddings"])
def test_random_llama_loads_with_the_asked_shape_and_decodes(tmp_path: Path, shape: dict[str, int]):
    """llama.cpp reports the asked shape and parameter count and generates 8 tokens."""
    import llama_cpp

    path = write_random_llama_gguf(tmp_path / "random.gguf", seed=1, **shape)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=512, verbose=False)
    try:
        assert llm.n_vocab() == 49152
        assert llm.n_embd() == shape["n_embd"]
        assert llama_cpp.llama_model_n_layer(llm.model) == shape["n_layer"]
        assert llama_cpp.llama_model_n_head(llm.model) == shape["n_head"]
        assert llama_cpp.llama_model_n_head_kv(llm.model) == shape["n_head_kv"]
        assert llama_cpp.llama_model_n_ctx_train(llm.model) == shape["context_length"]
        dims = {k: v for k, v in shape.items() if k != "context_length"}
        assert llama_cpp.llama_model_n_params(llm.model) == expected_n_params(49152, **dims)
        out = llm.create_completion("The three primary colours are", max_tokens=8, temperature=0, seed=0)
        assert out["usage"]["completion_tokens"] > 0
    finally:
        llm.close()


def test_random_llama_tokenizes_like_the_bundled_model(tmp_path: Path):
    """The copied tokenizer and chat template behave as the bundled SmolLM2's do."""
    import llama_cpp

    path = write_random_llama_gguf(tmp_path / "random.gguf")
    text = b"Hello, world! <|im_start|>user\nSome text with numbers 12345 and \xc3\xa9t\xc3\xa9."
    ours = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    bundled = llama_cpp.Llama(model_path=str(find_bundled_gguf()[0]), vocab_only=True, verbose=False)
    try:
        assert ours.tokenize(text, special=True) == bundled.tokenize(text, special=True)
        assert ours.token_bos() == bundled.token_bos() and ours.token_eos() == bundled.token_eos()
        assert ours.metadata["tokenizer.chat_template"] == bundled.metadata["tokenizer.chat_template"]
        assert ours.metadata["general.architecture"] == "llama"
    finally:
        ours.close()
        bundled.close()


def test_random_llama_defaults_are_small_and_deterministic(tmp_path: Path):
    """The default file stays small; a seed always gives the same bytes, another seed other weights."""
    a = write_random_llama_gguf(tmp_path / "a.gguf")
    b = write_random_llama_gguf(tmp_path / "b.gguf")
    c = write_random_llama_gguf(tmp_path / "c.gguf", seed=1)
    assert a.stat().st_size < 40_000_000
    assert a.read_bytes() == b.read_bytes()
    assert a.stat().st_size == c.stat().st_size and a.read_bytes() != c.read_bytes()
