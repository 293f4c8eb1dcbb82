"""TextAssembler: whole characters only, stop strings across tokens, hold-back and release."""

from __future__ import annotations

import pytest

from llmd.core.engine.textstream import TextAssembler

CHINESE = "你好，世界！今天天气很好。我们一起学习机器学习吧。"
RUSSIAN = "Привет, мир! Расскажи о машинном обучении — коротко."
MIXED = "Ёжик 🦔 и 中文 mixed with ASCII."


def feed_bytes(asm: TextAssembler, text: str, step: int = 1) -> list[str]:
    data = text.encode("utf-8")
    out = []
    for i in range(0, len(data), step):
        piece = asm.feed(data[i:i + step])
        if piece:
            out.append(piece)
    return out


@pytest.mark.parametrize("text", [CHINESE, RUSSIAN, MIXED])
@pytest.mark.parametrize("step", [1, 2, 5])
def test_bytewise_feed_never_breaks_a_character(text, step):
    asm = TextAssembler()
    pieces = feed_bytes(asm, text, step)
    tail = asm.finish()
    if tail:
        pieces.append(tail)
    assert len(pieces) > 1
    for p in pieces:
        assert "\ufffd" not in p
        p.encode("utf-8")  # no lone surrogates: every piece is valid text
    assert "".join(pieces) == text
    assert asm.text == text
    assert not asm.stopped


def test_one_byte_of_a_character_is_held_back():
    asm = TextAssembler()
    data = "ж".encode()
    assert asm.feed(data[:1]) == ""
    assert asm.feed(data[1:]) == "ж"


def test_stop_string_spanning_several_feeds_is_cut():
    asm = TextAssembler(("<|end|>",))
    out = []
    for tok in ["Hello", " wor", "ld<|", "en", "d|>", "after"]:
        out.append(asm.feed(tok.encode()))
    assert "".join(out) == "Hello world"
    assert asm.stopped
    assert asm.text == "Hello world"
    # nothing after the stop is ever released
    assert asm.feed(b"more") == ""
    assert asm.finish() == ""


def test_stop_string_in_russian_fed_bytewise():
    asm = TextAssembler(("мир",))
    pieces = feed_bytes(asm, RUSSIAN)
    assert "".join(pieces) == "Привет, "
    assert asm.stopped
    assert all("\ufffd" not in p for p in pieces)


def test_earliest_of_several_stops_wins():
    asm = TextAssembler(("STOP", "END"))
    assert asm.feed(b"abc END def STOP") == "abc "
    assert asm.stopped
    assert asm.matched == "END"  # which one, for the Anthropic API's stop_sequence


def test_no_stop_string_matched_without_a_stop():
    asm = TextAssembler(("STOP",))
    assert asm.feed(b"abc ST") == "abc "
    assert asm.finish() == "ST"
    assert not asm.stopped and asm.matched is None


def test_prefix_of_stop_is_held_then_released_by_finish():
    asm = TextAssembler(("###",))
    assert asm.feed(b"answer #") == "answer "
    assert asm.feed(b"#") == ""  # "##" could still become "###"
    assert asm.finish() == "##"
    assert not asm.stopped
    assert asm.text == "answer ##"


def test_prefix_of_stop_is_released_when_it_cannot_complete():
    asm = TextAssembler(("</s>",))
    assert asm.feed(b"x </") == "x "
    assert asm.feed(b"b") == "</b"
    assert asm.finish() == ""
    assert asm.text == "x </b"


def test_empty_stop_strings_are_ignored():
    asm = TextAssembler(("",))
    assert asm.feed(b"abc") == "abc"
    assert not asm.stopped


def test_stop_at_the_very_start():
    asm = TextAssembler(("Q:",))
    assert asm.feed(b"Q") == ""
    assert asm.feed(b":") == ""
    assert asm.stopped
    assert asm.text == ""


def test_an_unfinished_character_at_the_end_is_dropped_not_replaced():
    asm = TextAssembler()
    data = "春天".encode()
    out = asm.feed(data[:3]) + asm.feed(data[3:5])  # the second character is cut after two of its bytes
    out += asm.finish()
    assert out == "春" == asm.text
    assert asm.dropped_bytes == 2
    assert "\ufffd" not in out
