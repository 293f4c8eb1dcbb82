"""``llmctl models``, ``llmctl models add`` and ``llmctl rm``."""

from __future__ import annotations

from pathlib import Path

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import Client
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


def model_id(client: Client, name: str) -> str:
    """The ``model-<n>`` id of the model named (or aliased) ``name``; the name itself if unknown.

    Names may hold a slash, which a path segment cannot; the id always fits.
    """
    data = client.request("GET", "/llmd/v1/models")
    for m in data["models"]:
        if name == m["name"] or name in m.get("aliases", ()):
            return m.get("id") or name
    return name


@cli.command("rm")
@click.argument("model")
@click.option("--force", "-f", is_flag=True, help="stop the model first if it is running")
@json_option
@click.pass_context
def rm(ctx: click.Context, model: str, force: bool, as_json: bool) -> None:
    """Delete MODEL from the registry (its file too when llmd downloaded it).

    A running model needs --force. Bundled and user-supplied files stay on disk.
    """
    client = get_client(ctx)
    mid = model_id(client, model)
    data = client.request("DELETE", f"/api/models/{mid}", params={"force": "true" if force else "false"})
    if want_json(ctx, as_json):
        print_json(data)
        return
    note = " and its file" if data.get("file_removed") else ""
    click.echo(f"deleted {data.get('name', model)}{note}")
