"""read_gguf_info: the header fields of a GGUF file, and clear errors for anything else."""

from __future__ import annotations

import struct

import pytest
from helpers import write_tiny_gguf

from llmd.core.gguf_info import read_gguf_info
from llmd.errors import InvalidModelFileError


def test_tiny_gguf_header(tiny_gguf):
    info = read_gguf_info(tiny_gguf)
    assert info.architecture == "llama"
    assert info.context_length == 256
    assert info.quantization == "Q4_1"  # general.file_type 3
    assert info.name == "tiny"
    assert info.size_bytes == tiny_gguf.stat().st_size > 0
    assert info.path == str(tiny_gguf)
    assert info.version == 3
    assert info.chat_template is not None and "messages" in info.chat_template
    # the template is kept out of the stored metadata; other keys are there
    assert "tokenizer.chat_template" not in info.metadata
    assert info.metadata["general.architecture"] == "llama"
    summary = info.summary()
    assert summary["has_chat_template"] is True
    assert summary["quantization"] == "Q4_1"
    assert summary["context_length"] == 256


def test_other_architecture_and_file_type(tmp_path):
    p = write_tiny_gguf(tmp_path / "m.gguf", arch="qwen2", context_length=32768, file_type=15)
    info = read_gguf_info(str(p))  # a str path works too
    assert info.architecture == "qwen2"
    assert info.context_length == 32768
    assert info.quantization == "Q4_K_M"


def test_quantization_from_file_name_when_file_type_unknown(tmp_path):
    p = write_tiny_gguf(tmp_path / "model.Q5_K_S.gguf", file_type=999)
    assert read_gguf_info(p).quantization == "Q5_K_S"


def _assert_invalid(path, *needles):
    with pytest.raises(InvalidModelFileError) as info:
        read_gguf_info(path)
    err = info.value
    assert err.status == 400
    assert err.code == "invalid_model_file"
    assert err.field == "path"
    assert str(path) in err.message
    for n in needles:
        assert n in err.message
    assert "\n" not in err.message
    return err


def test_not_a_gguf_file(tmp_path):
    p = tmp_path / "notes.gguf"
    p.write_text("hello, I am plain text and not a model\n")
    _assert_invalid(p, "not a GGUF file")


def test_empty_file(tmp_path):
    p = tmp_path / "empty.gguf"
    p.write_bytes(b"")
    _assert_invalid(p, "not a GGUF file")


@pytest.mark.parametrize("keep", [4, 10, 24, 60, 200])
def test_truncated_file(tmp_path, tiny_gguf, keep):
    data = tiny_gguf.read_bytes()
    p = tmp_path / f"cut{keep}.gguf"
    p.write_bytes(data[:keep])
    _assert_invalid(p, "not a valid GGUF file")


def test_implausible_header(tmp_path):
    # GGUF magic, version 3, no tensors, one key whose name claims to be 2**40 bytes long
    p = tmp_path / "bad.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 1 << 40))
    _assert_invalid(p, "not a valid GGUF file")


def test_unknown_value_type(tmp_path):
    key = b"general.x"
    p = tmp_path / "badtype.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
                  + struct.pack("<I", 77))
    _assert_invalid(p, "unknown GGUF value type")


def test_gguf_version_1_refused(tmp_path):
    p = tmp_path / "v1.gguf"
    p.write_bytes(b"GGUF" + struct.pack("<IQQ", 1, 0, 0))
    _assert_invalid(p, "version 1")


def test_missing_path(tmp_path):
    _assert_invalid(tmp_path / "missing.gguf", "no such file")


def test_directory(tmp_path):
    d = tmp_path / "dir.gguf"
    d.mkdir()
    _assert_invalid(d, "directory")
