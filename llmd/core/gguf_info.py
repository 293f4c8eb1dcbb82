"""Read the metadata header of a GGUF file without loading its tensors.

Only the key/value section is parsed; large arrays (the tokenizer's vocabulary)
are skipped, so reading a multi-gigabyte file costs a few milliseconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from llmd.errors import InvalidModelFileError

GGUF_MAGIC = b"GGUF"

# general.file_type values (llama_ftype) and their usual names.
FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1",
    10: "Q2_K", 11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S",
    15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 19: "IQ2_XXS",
    20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S",
    25: "IQ4_NL", 26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M",
    30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0", 37: "TQ2_0", 38: "MXFP4_MOE",
}

_SCALARS = {
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
    10: "<Q", 11: "<q", 12: "<d",
}
_STRING, _ARRAY = 8, 9
# Arrays longer than this are skipped rather than kept in memory.
_MAX_KEPT_ARRAY = 64


@dataclass(frozen=True)
class GGUFInfo:
    """What llmd needs to know about a GGUF model file."""

    path: str
    size_bytes: int
    version: int
    architecture: str | None
    name: str | None
    context_length: int | None
    quantization: str | None
    chat_template: str | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The header fields stored in the registry."""
        return {
            "architecture": self.architecture,
            "name": self.name,
            "context_length": self.context_length,
            "quantization": self.quantization,
            "gguf_version": self.version,
            "has_chat_template": bool(self.chat_template),
        }


class _Reader:
    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh

    def take(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise EOFError("truncated GGUF header")
        return data

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.unpack("<Q")
        if n > 1 << 30:
            raise ValueError("implausible string length in GGUF header")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, vtype: int) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string()
        if vtype == _ARRAY:
            itype = self.unpack("<I")
            count = self.unpack("<Q")
            if count <= _MAX_KEPT_ARRAY:
                return [self.value(itype) for _ in range(count)]
            self.skip_array(itype, count)
            return f"<array of {count}>"
        raise ValueError(f"unknown GGUF value type {vtype}")

    def skip_array(self, itype: int, count: int) -> None:
        if itype in _SCALARS:
            self.fh.seek(struct.calcsize(_SCALARS[itype]) * count, 1)
        elif itype == _STRING:
            for _ in range(count):
                self.fh.seek(self.unpack("<Q"), 1)
        else:
            for _ in range(count):
                self.value(itype)


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Parse the header of the GGUF file at ``path``.

    Raises :class:`InvalidModelFileError` when the file is missing, unreadable
    or not GGUF.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                raise InvalidModelFileError(
                    f"{p} is not a GGUF file (bad magic bytes)", field="path"
                )
            r = _Reader(fh)
            version = r.unpack("<I")
            if version == 1:
                raise InvalidModelFileError(f"{p}: GGUF version 1 is not supported", field="path")
            r.unpack("<Q")  # tensor count
            kv_count = r.unpack("<Q")
            meta: dict[str, Any] = {}
            for _ in range(kv_count):
                key = r.string()
                meta[key] = r.value(r.unpack("<I"))
    except InvalidModelFileError:
        raise
    except FileNotFoundError:
        raise InvalidModelFileError(f"no such file: {p}", field="path") from None
    except IsADirectoryError:
        raise InvalidModelFileError(f"{p} is a directory, not a GGUF file", field="path") from None
    except PermissionError:
        raise InvalidModelFileError(f"cannot read {p}: permission denied", field="path") from None
    except (EOFError, ValueError, struct.error, OSError) as exc:
        raise InvalidModelFileError(f"{p} is not a valid GGUF file: {exc}", field="path") from None

    arch = meta.get("general.architecture")
    ctx = meta.get(f"{arch}.context_length") if arch else None
    ftype = meta.get("general.file_type")
    quant = FILE_TYPES.get(ftype) if isinstance(ftype, int) else None
    if quant is None:
        quant = _quant_from_name(p.name)
    template = meta.get("tokenizer.chat_template")
    return GGUFInfo(
        path=str(p),
        size_bytes=size,
        version=version,
        architecture=arch if isinstance(arch, str) else None,
        name=meta.get("general.name") if isinstance(meta.get("general.name"), str) else None,
        context_length=int(ctx) if isinstance(ctx, int) else None,
        quantization=quant,
        chat_template=template if isinstance(template, str) else None,
        metadata={k: v for k, v in meta.items() if k != "tokenizer.chat_template"},
    )


def _quant_from_name(filename: str) -> str | None:
    """Guess the quantization from a file name such as ``x.Q4_K_M.gguf``."""
    upper = filename.upper()
    for name in sorted(FILE_TYPES.values(), key=len, reverse=True):
        if name in upper:
            return name
    return None
