"""llama.cpp's server tokenizer routes on the real daemon and model, as a llama-server client calls them."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.e2e


def test_tokenize_detokenize_round_trip_and_the_template(daemon):
    with httpx.Client(base_url=daemon.url, timeout=60) as c:
        text = "Héllo, wörld! <|im_end|>"
        tokens = c.post("/tokenize", json={"content": text}).json()["tokens"]
        assert all(isinstance(t, int) for t in tokens) and len(tokens) < len(text)
        # parse_special: the special token is one id, else its characters are several
        plain = c.post("/tokenize", json={"content": text, "parse_special": False}).json()["tokens"]
        assert len(plain) > len(tokens)
        assert c.post("/detokenize", json={"tokens": tokens}).json()["content"] == "Héllo, wörld! "
        pieces = c.post("/tokenize", json={"content": "Héllo", "with_pieces": True}).json()["tokens"]
        joined = b"".join(p["piece"].encode() if isinstance(p["piece"], str) else bytes(p["piece"]) for p in pieces)
        assert joined.decode() == "Héllo"
        r = c.post("/apply-template", json={"messages": [{"role": "system", "content": "Be brief."},
                                                         {"role": "user", "content": "Hi"}]})
        assert r.json()["prompt"] == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                      "<|im_start|>assistant\n")
        r = c.post("/detokenize", json={"tokens": [10 ** 9]})
        assert r.status_code == 400 and "tokens[0]" in r.json()["error"]["message"]
