"""Model hubs: search, info, trending, categories and favourites, cached in SQLite.

Hugging Face is reached through ``huggingface_hub.HfApi`` (its calls block, so
they run in a thread); an Ollama registry through its OCI distribution API
(``/v2/<name>/manifests/<tag>``, ``/v2/<name>/blobs/<digest>``) with httpx.
Every answer is cached in the store, and search and info fall back to that
cache when the hub cannot be reached, saying so (``from_cache``, ``cache_age_s``).

The same clients resolve what a download needs: the files of a repository,
their sizes and sha256 (LFS metadata or the Ollama digest), and their URLs.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import re
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlsplit

import httpx

from llmd.config import Config
from llmd.core.gguf_info import FILE_TYPES
from llmd.core.registry import Registry
from llmd.core.types import Page
from llmd.errors import (
    HubUnavailableError,
    InvalidSourceError,
    LlmdError,
    ModelNotFoundError,
    ValidationError,
)

log = logging.getLogger(__name__)

SOURCES = ("huggingface", "ollama")
_SOURCE_ALIASES = {"huggingface": "huggingface", "hf": "huggingface", "hugging_face": "huggingface",
                   "ollama": "ollama"}
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
# Hub ids: "owner/repo" (Hugging Face), "name", "name:tag" or "namespace/name:tag" (Ollama).
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?(:[A-Za-z0-9._-]{1,64})?\Z")
OLLAMA_MODEL_MEDIA = "application/vnd.ollama.image.model"
MANIFEST_ACCEPT = ("application/vnd.docker.distribution.manifest.v2+json, "
                   "application/vnd.oci.image.manifest.v1+json")
# Known model types, for /api/models/categories even with an empty cache.
CATEGORIES = {
    "text-generation": "Text generation", "conversational": "Conversational",
    "text2text-generation": "Text-to-text", "feature-extraction": "Embeddings",
    "sentence-similarity": "Sentence similarity", "image-text-to-text": "Vision-language",
    "fill-mask": "Fill mask", "summarization": "Summarization", "translation": "Translation",
}
# Quantization names, longest first, so Q4_K_M is matched whole rather than as Q4_K.
_QUANTS = sorted({*FILE_TYPES.values(), "Q4_K", "Q5_K", "Q3_K", "IQ4_XS"}, key=len, reverse=True)
_QUANT_RE = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(re.escape(q) for q in _QUANTS) + r")(?![A-Za-z0-9])",
                       re.IGNORECASE)
SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)


def normalize_source(source: str | None, *, default: str = "huggingface", field_name: str = "source") -> str:
    """``huggingface`` or ``ollama`` (``hf`` is accepted); anything else is :class:`InvalidSourceError`."""
    if source is None or source == "":
        return default
    found = _SOURCE_ALIASES.get(source.strip().lower())
    if found is None:
        raise InvalidSourceError(f"source must be one of {', '.join(SOURCES)}, not '{source}'", field=field_name,
                                 details={"allowed": list(SOURCES)})
    return found


def check_hub_id(hub_id: str, field_name: str = "model_id") -> str:
    """``hub_id`` if it looks like a hub id, else a :class:`ValidationError` naming ``field_name``."""
    if not isinstance(hub_id, str) or not HUB_ID_RE.match(hub_id) or ".." in hub_id:
        raise ValidationError(f"{field_name} must look like 'owner/name' (Hugging Face) or 'name[:tag]' (Ollama)",
                              field=field_name)
    return hub_id


def quantization_of(filename: str) -> str | None:
    """The quantization named in a file name (``x.Q4_K_M.gguf`` -> ``Q4_K_M``), upper-cased."""
    found = _QUANT_RE.findall(filename)
    return found[-1].upper() if found else None


def epoch(ts: Any) -> float | None:
    """A hub's datetime as Unix seconds (UTC when it has no zone)."""
    if ts is None:
        return None
    if isinstance(ts, (int, float)):
        return float(ts)
    if isinstance(ts, datetime.datetime):
        if ts.tzinfo is None:
            ts = ts.replace(tzinfo=datetime.UTC)
        return ts.timestamp()
    return None


@dataclass(frozen=True)
class HubAnswer:
    """Hub records (dicts of the hub's fields; counts raw, times in Unix seconds) and where they came from.

    ``from_cache`` says the hub was not asked (the cache was fresh) or could not
    be reached (``hub_error`` says why); ``cache_age_s`` is how old the records are.
    """

    items: list[dict[str, Any]]
    from_cache: bool
    cache_age_s: float | None = None
    hub_error: str | None = None
    page: Page[dict[str, Any]] | None = None  # a search's page of the matches


def parse_ollama_ref(ref: str) -> tuple[str, str]:
    """``llama3`` -> (``library/llama3``, ``latest``); ``me/m:q4`` -> (``me/m``, ``q4``)."""
    name, _, tag = ref.partition(":")
    if "/" not in name:
        name = f"library/{name}"
    return name, tag or "latest"


def ollama_display_id(name: str, tag: str | None = None) -> str:
    """The short id users type: ``library/llama3`` + ``8b`` -> ``llama3:8b``."""
    short = name[len("library/"):] if name.startswith("library/") else name
    return f"{short}:{tag}" if tag else short


@dataclass
class RemoteFile:
    """One file a download fetches."""

    name: str  # the file name in the repository (or <tag>.gguf for Ollama)
    url: str
    size: int
    sha256: str | None
    path: str  # relative to the models directory

    def to_dict(self) -> dict[str, Any]:
        """For the task row."""
        return {"name": self.name, "url": self.url, "size": self.size, "sha256": self.sha256, "path": self.path}


@dataclass
class DownloadPlan:
    """Everything a download task needs from the hub, resolved before it starts."""

    model_id: str
    source: str
    revision: str | None
    files: list[RemoteFile]
    quantization: str | None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        """The size of all files together."""
        return sum(f.size for f in self.files)


def _in_daemon_thread(fn: Callable[[Any], Any], arg: Any) -> asyncio.Future[Any]:
    """Run a blocking ``fn(arg)`` on a fresh daemon thread; its result (or exception) as a future."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if fut.done():
            return
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)

    def run() -> None:
        try:
            result: tuple[bool, Any] = (True, fn(arg))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            result = (False, exc)
        if not loop.is_closed():
            try:
                loop.call_soon_threadsafe(settle, *result)
            except RuntimeError:
                pass  # the loop closed meanwhile: nobody waits any more

    threading.Thread(target=run, daemon=True, name="llmd-hub").start()
    return fut


def _probe(endpoint: str, timeout: float) -> None:
    """Open and close one TCP connection to the endpoint, raising ``OSError`` when it is down.

    huggingface_hub retries a refused connection with backoff for about 25 s;
    an offline box should fall back to the catalogue cache at once instead.
    Behind a configured proxy the probe is skipped.
    """
    parts = urlsplit(endpoint)
    host = parts.hostname or "localhost"
    if urllib.request.getproxies().get(parts.scheme) and not urllib.request.proxy_bypass(host):
        return  # reached through a proxy: a direct connection says nothing about it
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with socket.create_connection((host, port), timeout=timeout):
        pass


def _no_telemetry() -> None:
    """Keep huggingface_hub from phoning home.

    Building its user agent fetches ``<default endpoint>/api/agent-harnesses``
    unless telemetry is off; that would reach huggingface.co even when
    llmd is pointed at a mirror. ``HF_HUB_DISABLE_TELEMETRY=0`` in the
    daemon's environment keeps the library's default.
    """
    if os.environ.get("HF_HUB_DISABLE_TELEMETRY", "").strip().lower() in ("0", "false", "no", "off"):
        return
    from huggingface_hub import constants

    constants.HF_HUB_DISABLE_TELEMETRY = True


def _public(item: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in item.items() if not k.startswith("_")}


class Hub:
    """Search and info over Hugging Face and an Ollama registry, with the SQLite cache behind them."""

    def __init__(self, config: Config, repo: Any, *, downloads_repo: Any, registry: Registry) -> None:
        self.config = config
        self.repo = repo  # llmd.store.hub.HubRepo: the catalogue cache and favourites
        self.downloads_repo = downloads_repo  # for the download counts of stats()
        self.registry = registry

    # -- configuration ----------------------------------------------------
    @property
    def hf_endpoint(self) -> str:
        """downloads.hf_endpoint, else $HF_ENDPOINT, else huggingface.co."""
        return (self.config.downloads.hf_endpoint or os.environ.get("HF_ENDPOINT")
                or DEFAULT_HF_ENDPOINT).rstrip("/")

    @property
    def ollama_registry(self) -> str:
        """downloads.ollama_registry without a trailing slash."""
        return self.config.downloads.ollama_registry.rstrip("/")

    @property
    def timeout(self) -> float:
        """Seconds per hub request."""
        return float(self.config.hub.timeout_s)

    def hf_api(self) -> Any:
        """A ``huggingface_hub.HfApi`` on the configured endpoint."""
        from huggingface_hub import HfApi

        _no_telemetry()
        return HfApi(endpoint=self.hf_endpoint, library_name="llmd")

    def hf_headers(self) -> dict[str, str]:
        """Request headers as huggingface_hub builds them (user agent, token if one is configured)."""
        from huggingface_hub.utils import build_hf_headers

        _no_telemetry()
        return dict(build_hf_headers(library_name="llmd"))

    # -- calling the hubs -------------------------------------------------
    async def _hf(self, fn: Callable[[Any], Any], what: str) -> Any:
        """Run a blocking HfApi call in a thread, mapping its failures onto typed errors."""
        from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

        api = self.hf_api()
        endpoint, timeout = self.hf_endpoint, self.timeout

        def probed(api: Any) -> Any:
            _probe(endpoint, timeout)
            return fn(api)

        try:
            # huggingface_hub's list calls retry a refused connection with backoff for ~25 s and
            # have no timeout, so the wait is bounded here and the call runs on a daemon thread
            # that can never hold up the daemon's exit.
            return await asyncio.wait_for(_in_daemon_thread(probed, api), self.timeout + 1)
        except (RepositoryNotFoundError, RevisionNotFoundError):
            raise ModelNotFoundError(f"{what} was not found on {self.hf_endpoint}", field="model_id") from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else None
            if status == 404:
                raise ModelNotFoundError(f"{what} was not found on {self.hf_endpoint}", field="model_id") from None
            raise HubUnavailableError(f"the hub at {self.hf_endpoint} answered {status} for {what}",
                                      details={"endpoint": self.hf_endpoint, "status": status}) from None
        except LlmdError:
            raise
        except (TimeoutError, OSError, Exception) as exc:  # noqa: BLE001 - any transport failure
            raise HubUnavailableError(f"the hub at {self.hf_endpoint} cannot be reached: {type(exc).__name__}",
                                      details={"endpoint": self.hf_endpoint}) from None

    async def _ollama_get(self, path: str, *, accept: str = "application/json") -> httpx.Response:
        url = f"{self.ollama_registry}{path}"
        try:
            async with httpx.AsyncClient(timeout=self.timeout, follow_redirects=True) as client:
                resp = await client.get(url, headers={"Accept": accept})
        except httpx.HTTPError as exc:
            raise HubUnavailableError(f"the Ollama registry at {self.ollama_registry} cannot be reached: "
                                      f"{type(exc).__name__}", details={"registry": self.ollama_registry}) from None
        if resp.status_code == 404:
            raise ModelNotFoundError(f"{path} was not found on {self.ollama_registry}", field="model_id")
        if resp.status_code >= 400:
            raise HubUnavailableError(f"the Ollama registry answered {resp.status_code} for {path}",
                                      details={"registry": self.ollama_registry, "status": resp.status_code})
        return resp

    # -- converting answers -----------------------------------------------
    def _hf_item(self, info: Any, *, detailed: bool) -> dict[str, Any]:
        tags = list(info.tags or [])
        model_type = info.pipeline_tag or ("conversational" if "conversational" in tags else "other")
        files, size = [], 0
        for s in info.siblings or []:
            fsize = s.size if s.size is not None else (s.lfs.size if s.lfs else None)
            size += fsize or 0
            if s.rfilename.lower().endswith(".gguf"):
                files.append({"filename": s.rfilename, "size": fsize, "sha256": s.lfs.sha256 if s.lfs else None,
                              "quantization": quantization_of(s.rfilename)})
        params = None
        if isinstance(info.gguf, dict):
            params = info.gguf.get("total")
        elif info.safetensors is not None:
            params = info.safetensors.total
        card = info.card_data
        description = ""
        if card is not None and hasattr(card, "get"):
            description = str(card.get("description") or card.get("summary") or "")
        item = {
            "id": info.id, "name": info.id.split("/")[-1], "author": info.author or info.id.split("/")[0],
            "description": description or f"{model_type} model {info.id}",
            "model_type": model_type, "source": "huggingface", "parameters": params,
            "downloads": info.downloads or 0, "likes": info.likes or 0, "tags": tags,
            "trending_score": info.trending_score or 0,
            "created_at": epoch(info.created_at), "updated_at": epoch(info.last_modified),
        }
        if detailed:
            item.update({"size_gb": round(size / 1e9, 3), "size_bytes": size, "sha": info.sha,
                         "files": files, "gguf_files": len(files)})
        return item

    # -- search -----------------------------------------------------------
    async def search(self, query: str, source: str | None, model_type: str | None, page: int,
                     page_size: int) -> HubAnswer:
        """One page of models matching ``query``; from the cache when fresh or when the hub is down."""
        src = normalize_source(source)
        query = (query or "").strip()
        ttl = self.config.hub.cache_ttl_s
        cached = await self.repo.get_search(src, query, model_type)
        hub_error = None
        if cached is None or time.time() - cached[1] >= ttl:
            try:
                items = await (self._hf_search(query, model_type) if src == "huggingface"
                               else self._ollama_search(query))
                await self.repo.put_items(src, items)
                await self.repo.put_search(src, query, model_type, [i["id"] for i in items])
                return await self._search_answer(items, page, page_size, src, from_cache=False, age=None)
            except HubUnavailableError as exc:
                hub_error = exc.message
                log.warning("hub search failed, answering from the cache: %s", exc.message)
        if cached is not None:
            items = await self.repo.get_items(src, cached[0])
            age = time.time() - cached[1]
        else:
            items = await self.repo.search_items(src, query, model_type)
            counts = await self.repo.counts()
            if not items and src not in counts:
                raise HubUnavailableError(f"{hub_error}; nothing is cached for source '{src}' yet",
                                          details={"source": src})
            age = time.time() - min((i["_fetched_at"] for i in items), default=time.time())
        return await self._search_answer(items, page, page_size, src, from_cache=True, age=age, hub_error=hub_error)

    async def _search_answer(self, items: list[dict[str, Any]], page: int, page_size: int, source: str, *,
                             from_cache: bool, age: float | None, hub_error: str | None = None) -> HubAnswer:
        favs = {f["id"] for f in await self.repo.favorites(source)}
        start = (page - 1) * page_size
        chunk = [{**_public(i), "favorite": i["id"] in favs} for i in items[start:start + page_size]]
        return HubAnswer(chunk, from_cache, age, hub_error, Page(chunk, len(items), page, page_size))

    async def _hf_search(self, query: str, model_type: str | None) -> list[dict[str, Any]]:
        limit = self.config.hub.search_limit
        gguf = "gguf" if self.config.hub.gguf_only else None

        def call(api: Any) -> list[Any]:
            return list(api.list_models(search=query or None, pipeline_tag=model_type or None, filter=gguf,
                                        sort="downloads", limit=limit))

        infos = await self._hf(call, "search")
        return [self._hf_item(i, detailed=False) for i in infos]

    async def _ollama_search(self, query: str) -> list[dict[str, Any]]:
        resp = await self._ollama_get(f"/v2/_catalog?n={self.config.hub.search_limit}")
        try:
            repos = list(resp.json().get("repositories") or [])
        except (ValueError, AttributeError):
            raise HubUnavailableError("the Ollama registry's catalogue is not JSON") from None
        q = query.lower()
        return [self._ollama_item(r) for r in repos if not q or q in r.lower()]

    def _ollama_item(self, name: str, **extra: Any) -> dict[str, Any]:
        short = ollama_display_id(name)
        return {"id": short, "name": short.split("/")[-1], "author": name.split("/")[0],
                "description": f"Ollama model {short}", "model_type": "text-generation", "source": "ollama",
                "parameters": None, "downloads": 0, "likes": 0, "tags": ["gguf", "ollama"], "trending_score": 0,
                "created_at": None, "updated_at": None, **extra}

    # -- info -------------------------------------------------------------
    async def info(self, hub_id: str, source: str | None) -> HubAnswer:
        """Details of one model (files, sizes, sha256); from the cache when fresh or when the hub is down."""
        check_hub_id(hub_id, "hub_id")
        src = normalize_source(source)
        ttl = self.config.hub.cache_ttl_s
        cached = await self.repo.get_item(src, hub_id)
        hub_error = None
        if cached is None or not cached["_detailed"] or time.time() - cached["_fetched_at"] >= ttl:
            try:
                item = await (self._hf_info(hub_id) if src == "huggingface" else self._ollama_info(hub_id))
                await self.repo.put_items(src, [item], detailed=True)
                return HubAnswer([{**item, "favorite": await self.repo.is_favorite(src, hub_id)}], False)
            except HubUnavailableError as exc:
                if cached is None:
                    raise
                hub_error = exc.message
        assert cached is not None
        return HubAnswer([{**_public(cached), "favorite": await self.repo.is_favorite(src, hub_id)}], True,
                         time.time() - cached["_fetched_at"], hub_error)

    async def _hf_info(self, repo_id: str) -> dict[str, Any]:
        info = await self._hf(lambda api: api.model_info(repo_id, files_metadata=True, timeout=self.timeout),
                              f"model '{repo_id}'")
        return self._hf_item(info, detailed=True)

    async def _ollama_info(self, ref: str) -> dict[str, Any]:
        name, tag = parse_ollama_ref(ref)
        manifest = (await self._ollama_get(f"/v2/{name}/manifests/{tag}", accept=MANIFEST_ACCEPT)).json()
        layers = manifest.get("layers") or []
        model = next((lay for lay in layers if lay.get("mediaType") == OLLAMA_MODEL_MEDIA), None)
        tags: list[str] = []
        try:
            tags = list((await self._ollama_get(f"/v2/{name}/tags/list")).json().get("tags") or [])
        except LlmdError:
            pass  # the tag list is a nicety; the manifest is what matters
        size = sum(int(lay.get("size") or 0) for lay in layers)
        files = []
        if model is not None:
            files.append({"filename": f"{tag}.gguf", "size": model.get("size"),
                          "sha256": str(model.get("digest", "")).removeprefix("sha256:") or None,
                          "quantization": None})
        return self._ollama_item(name, id=ref, size_gb=round(size / 1e9, 3), size_bytes=size, files=files,
                                 gguf_files=len(files), available_tags=tags,
                                 sha=manifest.get("config", {}).get("digest"))

    # -- categories, trending, stats, favourites, sync ----------------------
    async def categories(self, source: str | None) -> dict[str, Any]:
        """Model types with how many cached models have each."""
        src = normalize_source(source) if source else None
        counts = await self.repo.type_counts(src)
        names = {**CATEGORIES, **{k: k.replace("-", " ").capitalize() for k in counts if k not in CATEGORIES}}
        cats = [{"id": k, "name": v, "count": counts.get(k, 0)} for k, v in names.items()]
        cats.sort(key=lambda c: (-c["count"], c["id"]))
        return {"categories": cats, "source": src, "total": len(cats)}

    async def trending(self, limit: int, source: str | None) -> HubAnswer:
        """The most popular models: from the hub when it answers, else from the cache."""
        src = normalize_source(source) if source else None
        hub_error = None
        if src in (None, "huggingface"):
            try:
                def call(api: Any) -> list[Any]:
                    return list(api.list_models(sort="trending_score", limit=limit,
                                                filter="gguf" if self.config.hub.gguf_only else None))

                items = [self._hf_item(i, detailed=False) for i in await self._hf(call, "trending")]
                await self.repo.put_items("huggingface", items)
                if src == "huggingface" or len(items) >= limit:
                    return HubAnswer(items[:limit], False)
            except HubUnavailableError as exc:
                hub_error = exc.message
        items = await self.repo.top_items(src, "trending", limit)
        age = time.time() - min((i["_fetched_at"] for i in items), default=time.time())
        return HubAnswer([_public(i) for i in items], True, age, hub_error)

    async def stats(self) -> dict[str, Any]:
        """Figures about the catalogue cache, favourites, downloads and registered models (times in Unix seconds)."""
        counts = await self.repo.counts()
        syncs = await self.repo.syncs()
        favs = await self.repo.favorites()
        downloads = await self.downloads_repo.counts()
        models = await self.registry.list()
        by_source: dict[str, int] = {}
        for m in models:
            by_source[m.source] = by_source.get(m.source, 0) + 1
        return {
            "catalog": {s: {"cached_models": c["count"], "last_sync": syncs.get(s, {}).get("synced_at"),
                            "oldest_entry": c["oldest"], "newest_entry": c["newest"]}
                        for s, c in counts.items()},
            "total_cached_models": sum(c["count"] for c in counts.values()),
            "favorites": len(favs),
            "downloads": {"total": sum(downloads.values()), "by_status": downloads},
            "registered_models": {"total": len(models), "by_source": by_source},
            "sources": list(SOURCES),
        }

    async def set_favorite(self, hub_id: str, source: str | None, on: bool) -> dict[str, Any]:
        """Mark or unmark a favourite (persisted); idempotent."""
        check_hub_id(hub_id, "hub_id")
        src = normalize_source(source)
        if on:
            changed = await self.repo.add_favorite(src, hub_id)
        else:
            changed = await self.repo.remove_favorite(src, hub_id)
        return {"id": hub_id, "source": src, "favorite": on, "changed": changed}

    async def sync(self, source: str | None) -> dict[str, Any]:
        """Refresh the catalogue cache: popular GGUF models, and every favourite's details."""
        sources = [normalize_source(source)] if source else list(SOURCES)
        out: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for src in sources:
            try:
                if src == "huggingface":
                    def call(api: Any, limit: int = self.config.hub.sync_limit) -> list[Any]:
                        return list(api.list_models(sort="downloads", limit=limit,
                                                    filter="gguf" if self.config.hub.gguf_only else None))

                    items = [self._hf_item(i, detailed=False) for i in await self._hf(call, "sync")]
                else:
                    items = await self._ollama_search("")
                await self.repo.put_items(src, items)
                details = 0
                for fav in await self.repo.favorites(src):
                    try:
                        item = await (self._hf_info(fav["id"]) if src == "huggingface"
                                      else self._ollama_info(fav["id"]))
                        await self.repo.put_items(src, [item], detailed=True)
                        details += 1
                    except ModelNotFoundError:
                        continue
                synced_at = await self.repo.record_sync(src, len(items))
                out[src] = {"models": len(items), "favorites_refreshed": details, "synced_at": synced_at}
            except HubUnavailableError as exc:
                errors[src] = exc.message
        if errors and not out:
            raise HubUnavailableError("; ".join(errors.values()), details={"errors": errors})
        return {"synced": out, "errors": errors, "total": sum(v["models"] for v in out.values())}

    # -- resolving downloads -------------------------------------------------
    async def plan(self, model_id: str, source: str, filename: str | None, quantization: str | None) -> DownloadPlan:
        """The files to fetch for a download request, with sizes, sha256 and URLs."""
        if source == "ollama":
            return await self._ollama_plan(model_id)
        return await self._hf_plan(model_id, filename, quantization)

    async def _hf_plan(self, repo_id: str, filename: str | None, quantization: str | None) -> DownloadPlan:
        from huggingface_hub import hf_hub_url

        if "/" not in repo_id or ":" in repo_id:
            raise ValidationError("model_id must be a Hugging Face repo id like 'owner/name'", field="model_id")
        info = await self._hf(lambda api: api.model_info(repo_id, files_metadata=True, timeout=self.timeout),
                              f"model '{repo_id}'")
        siblings = {s.rfilename: s for s in info.siblings or []}
        ggufs = sorted(n for n in siblings if n.lower().endswith(".gguf"))
        chosen = self._choose_file(repo_id, ggufs, filename, quantization)
        names = [chosen]
        m = SPLIT_RE.match(chosen)
        if m:
            count = int(m["count"])
            names = [f"{m['stem']}-{i:05d}-of-{m['count']}.gguf" for i in range(1, count + 1)]
            missing = [n for n in names if n not in siblings]
            if missing:
                raise ValidationError(f"split model {chosen} is missing parts in {repo_id}: {', '.join(missing)}",
                                      field="filename", details={"missing": missing})
        files = []
        for name in names:
            s = siblings[name]
            size = s.lfs.size if s.lfs else s.size
            if size is None:
                raise HubUnavailableError(f"the hub gave no size for {repo_id}/{name}")
            files.append(RemoteFile(
                name=name, url=hf_hub_url(repo_id, name, revision=info.sha, endpoint=self.hf_endpoint),
                size=int(size), sha256=s.lfs.sha256 if s.lfs else None,
                path=f"huggingface/{repo_id}/{name}"))
        return DownloadPlan(repo_id, "huggingface", info.sha, files, quantization_of(chosen), self.hf_headers())

    def _choose_file(self, repo_id: str, ggufs: list[str], filename: str | None, quantization: str | None) -> str:
        if not ggufs:
            raise ValidationError(f"{repo_id} has no GGUF file; llmd runs GGUF models only", field="model_id",
                                  details={"repo": repo_id})
        if filename:
            if filename not in ggufs:
                raise ValidationError(f"{repo_id} has no GGUF file '{filename}'", field="filename",
                                      details={"available": ggufs})
            return filename
        # Only the first part of a split model stands for it.
        candidates = [n for n in ggufs if not SPLIT_RE.match(n) or int(SPLIT_RE.match(n)["part"]) == 1]  # type: ignore[index]
        candidates = [n for n in candidates if "mmproj" not in n.lower()] or candidates
        prefs = [quantization] if quantization else [
            q.strip() for q in self.config.downloads.quantization_preference.split(",") if q.strip()]
        for q in prefs:
            hits = [n for n in candidates if (quantization_of(n) or "").upper() == q.upper()]
            if hits:
                return hits[0]
        if quantization:
            raise ValidationError(f"{repo_id} has no GGUF file in quantization '{quantization}'",
                                  field="quantization",
                                  details={"available": sorted({quantization_of(n) or n for n in candidates})})
        if len(candidates) == 1:
            return candidates[0]
        raise ValidationError(
            f"{repo_id} has several GGUF files and none matches downloads.quantization_preference; name one "
            f"with 'filename'", field="filename", details={"available": candidates})

    async def _ollama_plan(self, ref: str) -> DownloadPlan:
        name, tag = parse_ollama_ref(ref)
        resp = await self._ollama_get(f"/v2/{name}/manifests/{tag}", accept=MANIFEST_ACCEPT)
        try:
            layers = resp.json().get("layers") or []
        except (ValueError, AttributeError):
            raise HubUnavailableError("the Ollama manifest is not JSON") from None
        model = next((lay for lay in layers if lay.get("mediaType") == OLLAMA_MODEL_MEDIA), None)
        if model is None or not str(model.get("digest", "")).startswith("sha256:"):
            raise ValidationError(f"{ref} has no model layer in its manifest", field="model_id")
        digest = model["digest"]
        return DownloadPlan(
            ollama_display_id(name, tag), "ollama", digest,
            [RemoteFile(name=f"{tag}.gguf", url=f"{self.ollama_registry}/v2/{name}/blobs/{digest}",
                        size=int(model.get("size") or 0), sha256=digest.removeprefix("sha256:"),
                        path=f"ollama/{name}/{tag}.gguf")],
            None, {})
