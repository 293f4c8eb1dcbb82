"""Printing helpers shared by llmctl commands."""

from __future__ import annotations

import json
from typing import Any

import click


def print_json(data: Any) -> None:
    """Pretty JSON on stdout, non-ASCII kept readable."""
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def human_size(n: int | None) -> str:
    """1234567 -> '1.2 MB'."""
    if not n:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return str(n)


def table(rows: list[list[str]], headers: list[str]) -> None:
    """A plain aligned table."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    for row in [headers, *rows]:
        click.echo("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
