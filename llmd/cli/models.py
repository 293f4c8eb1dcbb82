"""``llmctl models`` and ``llmctl models add``."""

from __future__ import annotations

from pathlib import Path

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.output import human_size, print_json, table


@cli.group(invoke_without_command=True)
@json_option
@click.pass_context
def models(ctx: click.Context, as_json: bool) -> None:
    """List registered models (or use a subcommand)."""
    if ctx.invoked_subcommand is not None:
        return
    data = get_client(ctx).request("GET", "/llmd/v1/models")
    if want_json(ctx, as_json):
        print_json(data)
        return
    rows = [[m["name"], ",".join(m["aliases"]) or "-", m["source"], m["quantization"] or "-",
             human_size(m["size_bytes"]), m["state"]] for m in data["models"]]
    if not rows:
        click.echo("no models registered")
        return
    table(rows, ["NAME", "ALIASES", "SOURCE", "QUANT", "SIZE", "STATE"])


@models.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", help="registry name (default: from the file name)")
@json_option
@click.pass_context
def add(ctx: click.Context, path: Path, name: str | None, as_json: bool) -> None:
    """Register a local GGUF file by PATH."""
    body = {"path": str(path.expanduser().resolve())}
    if name:
        body["name"] = name
    data = get_client(ctx).request("POST", "/llmd/v1/models", json=body)
    if want_json(ctx, as_json):
        print_json(data)
        return
    m = data["model"]
    click.echo(f"registered {m['name']}: {m['architecture'] or '?'} {m['quantization'] or '?'}, "
               f"context {m['context_length'] or '?'}, {human_size(m['size_bytes'])}")
