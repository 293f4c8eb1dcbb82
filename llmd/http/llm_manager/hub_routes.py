"""LLM Manager API routes: model hub search, info, categories, trending, stats, favourites and sync.

Hub ids contain a slash (``owner/repo``), so ``/info`` and ``/favorite`` use a
``path`` converter; the static segments (search, categories, trending, stats,
sync) are plain rules and win over it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llmd.core import Core
from llmd.http.body import parse_query
from llmd.http.fields import PageNumber, PageSize, StrictModel
from llmd.http.llm_manager import translate as t
from llmd.http.llm_manager.envelope import ok
from llmd.http.routing import Dialect


class SourceQuery(StrictModel):
    """``source``: huggingface (default) or ollama."""

    source: str | None = Field(None, max_length=32, description="huggingface (default) or ollama")


class SearchQuery(SourceQuery):
    """Search parameters."""

    query: str = Field("", max_length=200, description="words to look for in model ids")
    model_type: str | None = Field(None, max_length=64, description="e.g. text-generation")
    page: PageNumber = 1
    page_size: PageSize = 20


class TrendingQuery(SourceQuery):
    """How many trending models."""

    limit: int = Field(10, ge=1, le=50)


def register(d: Dialect, core: Core) -> None:
    """Declare this module's routes on the LLM Manager API."""

    @d.route("/api/models/search", summary="Search models on the hub", query=SearchQuery, auth="admin")
    async def hub_search() -> Any:
        """Search Hugging Face (or an Ollama registry); answers from the catalogue cache when the hub is down."""
        q = parse_query(SearchQuery)
        answer = await core.hub.search(q.query, q.source, q.model_type, q.page, q.page_size)
        return ok(t.hub_answer(answer), "search results (from the cache)" if answer.from_cache else "search results")

    @d.route("/api/models/categories", summary="Model categories", query=SourceQuery, auth="admin")
    async def hub_categories() -> Any:
        """Model types and how many cached models have each."""
        q = parse_query(SourceQuery)
        return ok(await core.hub.categories(q.source), "categories")

    @d.route("/api/models/trending", summary="Trending models", query=TrendingQuery, auth="admin")
    async def hub_trending() -> Any:
        """The hub's trending models (up to 50); from the cache when the hub is down."""
        q = parse_query(TrendingQuery)
        return ok(t.hub_answer(await core.hub.trending(q.limit, q.source), limit=q.limit), "trending models")

    @d.route("/api/models/stats", summary="Catalogue and download statistics", auth="admin")
    async def hub_stats() -> Any:
        """Cached models per source, favourites, downloads per state, registered models."""
        return ok(t.hub_stats(await core.hub.stats()), "statistics")

    @d.route("/api/models/sync", ("POST",), summary="Refresh the catalogue cache", query=SourceQuery,
             auth="admin")
    async def hub_sync() -> Any:
        """Fetch the hub's popular GGUF models and the favourites' details into the SQLite cache."""
        q = parse_query(SourceQuery)
        return ok(t.hub_sync(await core.hub.sync(q.source)), "catalogue synchronised")

    @d.route("/api/models/<path:hub_id>/info", summary="Model details from the hub", query=SourceQuery,
             auth="admin")
    async def hub_info(hub_id: str) -> Any:
        """Files, sizes and sha256 of one model; from the cache when the hub is down."""
        q = parse_query(SourceQuery)
        answer = await core.hub.info(hub_id, q.source)
        return ok(t.hub_info(answer), "model info (from the cache)" if answer.from_cache else "model info")

    @d.route("/api/models/<path:hub_id>/favorite", ("POST",), summary="Mark a favourite", query=SourceQuery,
             auth="admin")
    async def hub_favorite(hub_id: str) -> Any:
        """Persisted in SQLite; marking twice is harmless."""
        q = parse_query(SourceQuery)
        return ok(await core.hub.set_favorite(hub_id, q.source, True), "added to favourites")

    @d.route("/api/models/<path:hub_id>/favorite", ("DELETE",), summary="Unmark a favourite", query=SourceQuery,
             auth="admin")
    async def hub_unfavorite(hub_id: str) -> Any:
        """Unmarking a model that is not a favourite is harmless."""
        q = parse_query(SourceQuery)
        return ok(await core.hub.set_favorite(hub_id, q.source, False), "removed from favourites")
