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

log = logging.getLogger(__name__)

DEFAULT_ALIAS = "default"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}\Z")
FRAMEWORKS = ("llama.cpp", "vllm")
# The LLM Inference Service API's model ids: "model-<store row id>".
_ID_RE = re.compile(r"^model-([0-9]{1,18})\Z")
# The shards of a split GGUF: name-00001-of-00003.gguf.
_SPLIT_RE = re.compile(r"^(?P<stem>.+)-(?P<i>[0-9]{5})-of-(?P<n>[0-9]{5})\.gguf$", re.IGNORECASE)


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
    # The LLM Inference Service API's registry fields (migration 0008).
    id: int | None = None  # the store row id: the LLM Inference Service API calls the model "model-<id>"
    display_name: str | None = None
    description: str | None = None
    framework: str = "llama.cpp"  # llama.cpp (in process) | vllm (a supervised external server)
    priority: int = 5
    # Per-model defaults: model_path, n_ctx, n_threads, n_gpu_layers, sampling
    # (temperature, top_p, top_k, max_tokens, repeat_penalty) and, for vllm, command.
    config: dict[str, Any] = field(default_factory=dict)
    resource_requirements: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    updated_at: float = 0.0

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Model:
        """Build from a store row."""
        return cls(
            name=row["name"], source=row["source"], path=row["path"], format=row["format"],
            architecture=row["architecture"], context_length=row["context_length"],
            quantization=row["quantization"], size_bytes=row["size_bytes"] or 0,
            chat_template=row["chat_template"], aliases=tuple(row.get("aliases") or ()),
            metadata=row.get("metadata") or {}, created_at=row.get("created_at") or 0.0,
            id=row.get("id"), display_name=row.get("display_name"), description=row.get("description"),
            framework=row.get("framework") or "llama.cpp",
            priority=5 if row.get("priority") is None else row["priority"],
            config=row.get("config") or {}, resource_requirements=row.get("resource_requirements") or {},
            tags=tuple(row.get("tags") or ()), updated_at=row.get("updated_at") or 0.0,
        )

    @property
    def external_id(self) -> str | None:
        """The LLM Inference Service API's id: ``model-<n>`` (``None`` for a model not read from the store)."""
        return f"model-{self.id}" if self.id is not None else None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (no chat template body)."""
        return {
            "name": self.name, "aliases": list(self.aliases), "source": self.source,
            "path": self.path, "format": self.format, "architecture": self.architecture,
            "context_length": self.context_length, "quantization": self.quantization,
            "size_bytes": self.size_bytes, "created_at": self.created_at,
            "id": self.external_id, "display_name": self.display_name, "description": self.description,
            "framework": self.framework, "priority": self.priority, "config": dict(self.config),
            "resource_requirements": dict(self.resource_requirements), "tags": list(self.tags),
            "updated_at": self.updated_at,
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


def has_tag(name: str) -> bool:
    """Whether an Ollama-style name carries a tag: ``qwen:7b``, ``me/m:q4`` (a ``:`` in its last segment)."""
    return ":" in name.rsplit("/", 1)[-1]


def ollama_latest(name: str) -> str | None:
    """The other spelling of a name under Ollama's default tag: ``x:latest`` <-> ``x``; ``None`` otherwise."""
    if name.endswith(":latest") and len(name) > len(":latest"):
        return name[: -len(":latest")]
    return None if has_tag(name) else f"{name}:latest"


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
    """Models known to llmd, persisted in the store's model table."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo  # llmd.store.models.ModelRepo

    async def list(self) -> list[Model]:
        """All models, by name."""
        return [Model.from_row(r) for r in await self.repo.list()]

    async def find(self, ref: str) -> Model | None:
        """A model by name or alias, else by the ``model-<n>`` id; ``None`` if none matches.

        Names can never look like ids (see ``_check_name``), so the two ways
        of naming a model cannot clash. Ollama's ``name:tag`` names, where the
        tag ``latest`` is the default, match either way: ``qwen:latest``
        finds ``qwen`` and ``qwen`` finds ``qwen:latest``.
        """
        row = await self.repo.get(ref)
        if row is None:
            m = _ID_RE.match(ref)
            if m:
                row = await self.repo.get_by_id(int(m.group(1)))
        if row is None:
            other = ollama_latest(ref)
            if other is not None:
                row = await self.repo.get(other)
        return Model.from_row(row) if row else None

    async def get(self, ref: str, *, field: str = "model") -> Model:
        """Like :meth:`find`; raises :class:`ModelNotFoundError` naming ``field`` and the models there are."""
        model = await self.find(ref)
        if model is None:
            known = [m.name for m in await self.list()]
            raise ModelNotFoundError(
                f"model '{ref}' is not registered; available: {', '.join(known) or 'none'}"
                " (or 'default')",
                field=field,
                details={"available": known, "model": ref},
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
        aliases: list[str] | None = None, metadata: dict[str, Any] | None = None,
        config: dict[str, Any] | None = None,
    ) -> Model:
        """Register a local GGUF file; its header gives architecture, context and quantization.

        ``metadata`` (e.g. where a download came from) is stored in the model's
        metadata JSON next to the header summary; its keys win on a clash.
        ``config`` holds the model's own defaults (sampling, ``n_ctx``, a
        ``system`` prompt, ``stop`` strings), in the same insert.
        """
        p = _expand(path, "path")
        if not p.is_absolute():
            raise ValidationError("path must be absolute", field="path")
        info = await asyncio.to_thread(read_gguf_info, p)
        name = name or model_name_from_file(p.name)
        _check_name(name)
        if await self.repo.get(name) is not None:
            raise ModelExistsError(f"a model named '{name}' already exists", field="name")
        fields = _fields(info, name, source)
        if metadata:
            fields["metadata"] = {**fields["metadata"], **metadata}
        if config:
            fields["config"] = dict(config)
        row = await self.repo.insert(fields, aliases or [])
        log.info("registered model %s from %s", name, p)
        return Model.from_row(row)

    async def create(
        self, name: str, *, framework: str = "llama.cpp", config: dict[str, Any] | None = None,
        display_name: str | None = None, description: str | None = None, priority: int = 5,
        resource_requirements: dict[str, Any] | None = None, tags: list[str] | None = None,
        source: str = "local",
    ) -> Model:
        """Register a model with the LLM Inference Service API's fields, in one insert (never half-registered).

        ``llama.cpp`` models come from ``config.model_path``, a GGUF file on
        disk whose header fills in the file fields. ``vllm`` models name what
        the external server is told to serve (``config.model_path`` or
        ``config.model_name``: a directory or a hub repo); nothing is read here.
        """
        config = {k: v for k, v in (config or {}).items() if v is not None}
        _check_name(name)
        if framework not in FRAMEWORKS:
            raise ValidationError(f"framework must be one of {', '.join(FRAMEWORKS)}", field="framework")
        if await self.repo.get(name) is not None:
            raise ModelExistsError(f"a model named '{name}' already exists", field="name",
                                   details={"name": name})
        extra = {"display_name": display_name, "description": description, "framework": framework,
                 "priority": priority, "config": config, "resource_requirements": resource_requirements or {},
                 "tags": list(tags or [])}
        if framework == "llama.cpp":
            info = await _read_model_file(config.get("model_path"))
            fields = {**_fields(info, name, source), **extra}
        else:
            target = config.get("model_path") or config.get("model_name")
            if not isinstance(target, str) or not target.strip():
                raise ValidationError("config.model_path (or config.model_name): what the vllm server serves "
                                      "is required", field="config.model_path")
            fields = {"name": name, "source": "external", "path": target, "format": "external",
                      "architecture": None, "context_length": config.get("n_ctx"), "quantization": None,
                      "size_bytes": 0, "chat_template": None, "metadata": {}, **extra}
        row = await self.repo.insert(fields)
        log.info("registered %s model %s (%s)", framework, name, fields["path"])
        return Model.from_row(row)

    async def update(self, name: str, *, config: dict[str, Any] | None = None, **fields: Any) -> Model:
        """Change the LLM Inference Service API's fields of a model.

        ``config`` is merged into the stored one (a ``null`` value removes a
        key), as the document's PUT example sends only what changes. A new
        ``model_path`` of a llama.cpp model is read again, so the file fields
        always describe the file in use.
        """
        model = await self.get(name)
        allowed = {"display_name", "description", "priority", "resource_requirements", "tags"}
        changes = {k: v for k, v in fields.items() if k in allowed and v is not None}
        if "tags" in changes:
            changes["tags"] = list(changes["tags"])
        if config is not None:
            merged = {**model.config, **config}
            merged = {k: v for k, v in merged.items() if v is not None}
            changes["config"] = merged
            new_path = merged.get("model_path")
            if model.framework == "llama.cpp" and new_path and new_path != model.config.get("model_path") \
                    and new_path != model.path:
                info = await _read_model_file(new_path)
                file_fields = _fields(info, model.name, model.source)
                changes.update({k: v for k, v in file_fields.items() if k not in ("name", "source")})
            elif model.framework == "vllm":
                target = merged.get("model_path") or merged.get("model_name")
                if target:
                    changes["path"] = target
        if changes:
            await self.repo.update(model.name, changes)
        return await self.get(model.name)

    async def delete(self, name: str, owned_dir: Path | None = None) -> bool:
        """Remove a model from the registry; its file too when llmd owns it.

        Only a file under ``owned_dir`` (the models directory, where
        downloads land) is removed, with the other shards of a split GGUF;
        a bundled or user-supplied file is never touched, nor a file another
        model still uses. Returns whether a file was removed.
        """
        model = await self.get(name)
        await self.repo.delete(model.name)
        log.info("deleted model %s", model.name)
        if owned_dir is None or model.source == "bundled" or model.format != "gguf":
            return False
        if any(m.path == model.path for m in await self.list()):
            return False  # another model serves the same file (an Ollama create from it, or from the same blob)
        return await asyncio.to_thread(_remove_owned_file, Path(model.path), Path(owned_dir))

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
            existing = await self.repo.get(name)
            if existing is None:
                row = await self.repo.insert(_fields(info, name, "bundled"))
                log.info("registered bundled model %s (%s)", name, path)
            elif existing["source"] == "bundled":
                if existing["path"] != str(path) or existing["size_bytes"] != info.size_bytes:
                    await self.repo.update(name, _fields(info, name, "bundled"))
                row = await self.repo.get(name)
            else:
                continue
            out.append(Model.from_row(row))  # type: ignore[arg-type]
        return out

    async def add_alias(self, alias: str, name: str) -> None:
        """Make ``alias`` a second name of model ``name`` (an alias that named another model moves).

        An alias must be a valid name, and not the name of another model
        (the name would win, so the alias would never be reached): a 409.
        """
        _check_name(alias, "destination")
        if alias == DEFAULT_ALIAS:
            raise ValidationError(f"destination: '{DEFAULT_ALIAS}' always names the default model (models.default)",
                                  field="destination")
        if alias == name:
            return  # a model is already called by its own name
        owner = await self.repo.get(alias)
        if owner is not None and owner["name"] == alias and alias != name:
            raise ModelExistsError(f"a model named '{alias}' already exists", field="destination",
                                   details={"name": alias})
        await self.repo.set_alias(alias, name)

    async def remove_alias(self, alias: str) -> bool:
        """Remove an alias (never ``default``, which follows ``models.default``); True if it existed."""
        if alias == DEFAULT_ALIAS:
            return False
        return await self.repo.delete_alias(alias)

    async def ensure_default_alias(self, name: str) -> None:
        """Point the ``default`` alias at ``name`` if that model exists."""
        if await self.repo.get(name) is not None:
            await self.repo.set_alias(DEFAULT_ALIAS, name)


def _check_name(name: str, field: str = "name") -> None:
    if not _NAME_RE.match(name) or _ID_RE.match(name):
        raise ValidationError(
            f"{field} must start with a letter or digit and use only letters, digits and . _ : / -"
            " (and not look like a model id, model-<n>)",
            field=field,
        )


def _expand(path: str | Path, field: str) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; a user that does not exist is a 400 naming ``field``."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # "~nobody-such": no home directory to expand to
        raise ValidationError(f"{field}: {str(path).split('/')[0]!r} names no user with a home directory",
                              field=field) from None


async def _read_model_file(path: Any) -> GGUFInfo:
    """The header of the GGUF file a llama.cpp model's ``config.model_path`` names."""
    if not isinstance(path, str) or not path.strip():
        raise ValidationError("config.model_path: the GGUF file of a llama.cpp model is required",
                              field="config.model_path")
    p = _expand(path, "config.model_path")
    if not p.is_absolute():
        raise ValidationError("config.model_path must be an absolute path", field="config.model_path")
    try:
        return await asyncio.to_thread(read_gguf_info, p)
    except ValidationError as exc:
        exc.field = "config.model_path"
        raise


def _remove_owned_file(path: Path, owned_dir: Path) -> bool:
    """Delete ``path`` (and its sibling shards) if it lies under ``owned_dir``."""
    try:
        path, owned_dir = path.resolve(), owned_dir.resolve()
    except OSError:
        return False
    if not path.is_relative_to(owned_dir) or path == owned_dir:
        return False
    files = [path]
    m = _SPLIT_RE.match(path.name)
    if m:
        files = [path.with_name(f"{m['stem']}-{i:05d}-of-{m['n']}.gguf") for i in range(1, int(m["n"]) + 1)]
    removed = False
    for f in files:
        try:
            f.unlink()
            removed = True
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", f, exc)
    return removed


def _fields(info: GGUFInfo, name: str, source: str) -> dict[str, Any]:
    return {
        "name": name, "source": source, "path": info.path, "format": "gguf",
        "architecture": info.architecture, "context_length": info.context_length,
        "quantization": info.quantization, "size_bytes": info.size_bytes,
        "chat_template": info.chat_template, "metadata": info.summary(),
    }
