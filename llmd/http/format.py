"""How every API writes times, sizes, counts and pages: one definition of each.

The core hands out raw figures (Unix seconds, bytes, counts, :class:`Page`);
the dialects turn them into the strings and blocks their documents show,
with these functions only.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, TypeVar

from llmd.core.types import Page

T = TypeVar("T")
MIB = 1 << 20
GIB = 1 << 30


def iso(ts: float | str | None) -> str | None:
    """Unix seconds as ISO 8601 UTC to the second with a ``Z``: ``2024-01-01T12:00:00Z``.

    A string (a time some hub already wrote as text) passes through.
    """
    if ts is None or ts == "":
        return None
    if isinstance(ts, str):
        return ts
    when = datetime.datetime.fromtimestamp(float(ts), datetime.UTC)
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def timestamp() -> str:
    """Now as ISO 8601 UTC to the millisecond with a ``Z``, as the envelopes' ``timestamp`` fields show it."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def human_size(n: float | int | None) -> str:
    """``103178240`` -> ``"98.4MB"``: binary units, one decimal, no trailing ``.0``."""
    value = float(n or 0)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)}B" if unit == "B" else f"{value:.1f}".rstrip("0").rstrip(".") + unit
        value /= 1024
    raise AssertionError("unreachable")


def human_count(n: int | str | None) -> str | None:
    """``135000000`` -> ``"135M"`` (parameter counts as hubs label models); text passes through."""
    if n is None or n == 0 or isinstance(n, str):
        return n or None
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return str(n)


def hms(seconds: float | None) -> str | None:
    """``60`` -> ``"00:01:00"``."""
    if seconds is None:
        return None
    s = int(round(seconds))
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def mib(n: float | int | None, digits: int = 1) -> float:
    """Bytes as MiB, rounded."""
    return round((n or 0) / MIB, digits)


def memory_fields(d: Any) -> dict[str, Any]:
    """A deployment's memory as every API shows it (docs/deployments.md), in MiB: what the budget counts
    (``memory_mb``, the larger of the two), the estimate and the measurement, and each by part."""
    est, measured = d.memory_estimate, d.memory_measured
    return {
        "memory_mb": mib(d.memory_bytes),
        "memory_estimate_mb": mib(est["total"]) if est else None,
        "memory_measured_mb": mib(measured["total"]) if measured else None,
        "memory": {"estimate": {k: mib(v) for k, v in est.items()} if est else None,
                   "measured": {k: mib(v) for k, v in measured.items()} if measured else None},
    }


def gib(n: float | int | None, digits: int = 2) -> float:
    """Bytes as GiB (the "GB" the documents show), rounded."""
    return round((n or 0) / GIB, digits)


def round_or_none(value: float | None, digits: int = 4) -> float | None:
    """A figure rounded for display (``None`` stays ``None``)."""
    return round(value, digits) if value is not None else None


def page_block(page: Page[T], render: Callable[[T], Any]) -> dict[str, Any]:
    """``{"items", "total", "page", "size", "pages"}``: the LLM Inference Service API's paging."""
    return {"items": [render(i) for i in page.items], "total": page.total, "page": page.page, "size": page.size,
            "pages": page.pages}


def pagination(page: Page[Any]) -> dict[str, Any]:
    """``{"page", "page_size", "total", "total_pages", "has_next", "has_prev"}``: the LLM Manager API's paging."""
    pages = page.pages
    return {"page": page.page, "page_size": page.size, "total": page.total, "total_pages": pages,
            "has_next": page.page < pages, "has_prev": page.page > 1}
