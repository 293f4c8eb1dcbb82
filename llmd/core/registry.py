"""The model registry: names and aliases, sources, files and their headers."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmd.core.gguf_info import FILE_TYPES, GGUFInfo, read_gguf_info
from llmd.errors import ModelExistsError, ModelNotFoundError, ValidationError
from llmd.store import Store

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "default"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


@dataclass(frozen=True)
class Model:
    """A registered model."""

    name: str
    source: str
    path: str
    format: str
    architecture: str | None
    context_length: int | None
    quantization: str | None
    size_bytes: int
    chat_template: str | None
    aliases: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Model":
        """Build from a store row."""
        return cls(
            name=row["name"], source=row["source"], path=row["path"], format=row["format"],
            architecture=row["architecture"], context_length=row["context_length"],
            quantization=row["quantization"], size_bytes=row["size_bytes"] or 0,
            chat_template=row["chat_template"], aliases=tuple(row.get("aliases") or ()),
            metadata=row.get("metadata") or {}, created_at=row.get("created_at") or 0.0,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (no chat template body)."""
        return {
            "name": self.name, "aliases": list(self.aliases), "source": self.source,
            "path": self.path, "format": self.format, "architecture": self.architecture,
            "context_length": self.context_length, "quantization": self.quantization,
            "size_bytes": self.size_bytes, "created_at": self.created_at,
        }


# A trailing quantization tag: "-q8_0", ".Q4_K_M", ":q4_0". Longest names first,
# so that Q4_K_M is stripped whole rather than as Q4_K.
_QUANT_SUFFIX = re.compile(
    r"[._:-](" + "|".join(re.escape(q) for q in sorted(FILE_TYPES.values(), key=len, reverse=True)) + r")$",
    re.IGNORECASE)


def model_family(name: str) -> str:
    """A model name without a trailing quantization tag: ``qwen-7b-chat-q8_0`` -> ``qwen-7b-chat``."""
    return _QUANT_SUFFIX.sub("", name).lower()


def model_name_from_file(filename: str) -> str:
    """Derive a registry name from a GGUF file name.

    ``SmolLM2-135M-Instruct.Q4_1.gguf`` becomes ``smollm2-135m-instruct``: the
    quantization suffix goes, since the quantization is a property of the
    model entry rather than part of its name.
    """
    stem = filename[:-5] if filename.lower().endswith(".gguf") else filename
    stem = _QUANT_SUFFIX.sub("", stem)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.").lower()
    return name or "model"


def find_bundled_gguf() -> list[Path]:
    """GGUF files shipped inside installed Python distributions.

    Reads the distributions' file lists (RECORD) only; nothing is imported,
    so a pack whose declared dependencies are missing is still found.
    """
    found: dict[str, Path] = {}
    for dist in importlib.metadata.distributions():
        for f in dist.files or ():
            if str(f).lower().endswith(".gguf"):
                path = Path(dist.locate_file(f)).resolve()
                if path.is_file():
                    found[str(path)] = path
    return sorted(found.values())


class Registry:
    """Models known to llmd, persisted in the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def list(self) -> list[Model]:
        """All models, by name."""
        return [Model.from_row(r) for r in await self.store.models.list()]

    async def find(self, name_or_alias: str) -> Model | None:
        """A model by name or alias, or ``None``."""
        row = await self.store.models.get(name_or_alias)
        return Model.from_row(row) if row else None

    async def get(self, name_or_alias: str) -> Model:
        """A model by name or alias; raises :class:`ModelNotFoundError`."""
        model = await self.find(name_or_alias)
        if model is None:
            known = [m.name for m in await self.list()]
            raise ModelNotFoundError(
                f"model '{name_or_alias}' is not registered; available: {', '.join(known) or 'none'}"
                " (or 'default')",
                field="model",
                details={"available": known},
            )
        return model

    async def with_quantization(self, name_or_alias: str, quantization: str | None) -> Model:
        """The model to load for ``name_or_alias`` in a given quantization.

        Without one it is the named model. With one, the candidates are the
        named model, then the models of its family (names equal once a
        trailing quantization tag is removed); the first whose quantization
        matches, case-insensitively, wins. None matching is a
        :class:`ModelNotFoundError` listing the quantizations there are.
        """
        target = await self.get(name_or_alias)
        if quantization is None:
            return target
        family = model_family(target.name)
        candidates = [m for m in await self.list() if model_family(m.name) == family]
        for m in [target] + candidates:
            if (m.quantization or "").lower() == quantization.lower():
                return m
        raise ModelNotFoundError(
            f"model '{target.name}' is not available with quantization '{quantization}'",
            field="quantization",
            details={"model": target.name, "quantization": quantization,
                     "available_quantizations": sorted({m.quantization for m in candidates if m.quantization}),
                     "candidates": [{"name": m.name, "quantization": m.quantization} for m in candidates]})

    async def add_file(
        self, path: str | Path, name: str | None = None, *, source: str = "local",
        aliases: list[str] | None = None,
    ) -> Model:
        """Register a local GGUF file; its header gives architecture, context and quantization."""
        p = Path(path).expanduser()
        if not p.is_absolute():
            raise ValidationError("path must be absolute", field="path")
        info = await asyncio.to_thread(read_gguf_info, p)
        name = name or model_name_from_file(p.name)
        if not _NAME_RE.match(name):
            raise ValidationError(
                "name must start with a letter or digit and use only letters, digits and . _ : / -",
                field="name",
            )
        if await self.store.models.get(name) is not None:
            raise ModelExistsError(f"a model named '{name}' already exists", field="name")
        row = await self.store.models.insert(_fields(info, name, source), aliases or [])
        log.info("registered model %s from %s", name, p)
        return Model.from_row(row)

    async def sync_bundled(self, files: list[Path] | None = None) -> list[Model]:
        """Register (or refresh the path of) every GGUF shipped in an installed package.

        A reinstall can move a bundled file (a new venv), so an existing entry
        with source ``bundled`` gets its path and header refreshed.
        """
        out = []
        for path in find_bundled_gguf() if files is None else files:
            try:
                info = await asyncio.to_thread(read_gguf_info, path)
            except ValidationError as exc:
                log.warning("skipping bundled file %s: %s", path, exc.message)
                continue
            name = model_name_from_file(path.name)
            existing = await self.store.models.get(name)
            if existing is None:
                row = await self.store.models.insert(_fields(info, name, "bundled"))
                log.info("registered bundled model %s (%s)", name, path)
            elif existing["source"] == "bundled":
                if existing["path"] != str(path) or existing["size_bytes"] != info.size_bytes:
                    await self.store.models.update(name, _fields(info, name, "bundled"))
                row = await self.store.models.get(name)
            else:
                continue
            out.append(Model.from_row(row))  # type: ignore[arg-type]
        return out

    async def ensure_default_alias(self, name: str) -> None:
        """Point the ``default`` alias at ``name`` if that model exists."""
        if await self.store.models.get(name) is not None:
            await self.store.models.set_alias(DEFAULT_ALIAS, name)


def _fields(info: GGUFInfo, name: str, source: str) -> dict[str, Any]:
    return {
        "name": name, "source": source, "path": info.path, "format": "gguf",
        "architecture": info.architecture, "context_length": info.context_length,
        "quantization": info.quantization, "size_bytes": info.size_bytes,
        "chat_template": info.chat_template, "metadata": info.summary(),
    }
