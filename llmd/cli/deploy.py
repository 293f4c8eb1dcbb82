"""``llmctl ps``, ``run`` (alias ``start``), ``stop`` and ``logs``: deployments, over the LLM Manager API's routes."""

from __future__ import annotations

import time
from typing import Any

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import Client, CliError
from llmd.cli.output import print_json, table


def _idle(seconds: float | None) -> str:
    if not seconds:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def deployment_id(client: Client, ref: str) -> str:
    """The deployment id for ``ref``: an id as is, else the deployment of the model named (or aliased) ``ref``."""
    if ref.startswith("deploy_"):
        return ref
    items = client.request("GET", "/api/deployments/list")["data"]["items"]
    names = {ref}
    try:
        for m in client.request("GET", "/llmd/v1/models")["models"]:
            if ref == m["name"] or ref in m.get("aliases", ()):
                names.add(m["name"])
    except CliError:
        pass
    for item in items:
        if item["model_id"] in names:
            return item["deployment_id"]
    raise CliError(f"no deployment of '{ref}' (see 'llmctl ps -a')")


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="also stopped deployments")
@json_option
@click.pass_context
def ps(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List deployments: id, model, state, port, memory (budgeted, estimated, measured), idle time, pinned."""
    items = get_client(ctx).request("GET", "/api/deployments/list")["data"]["items"]
    if not show_all:
        items = [i for i in items if i["status"] not in ("stopped",)]
    if want_json(ctx, as_json):
        print_json(items)
        return
    if not items:
        click.echo("no deployments" + ("" if show_all else " running (llmctl ps -a shows stopped ones)"))
        return
    def mib(v: float | None) -> str:
        return f"{v:.0f} MiB" if v else "-"

    rows = [[i["deployment_id"], i["model_id"], i["status"], str(i["port"] or "-"), mib(i["memory_mb"]),
             mib(i.get("memory_estimate_mb")), mib(i.get("memory_measured_mb")), _idle(i.get("idle_s")),
             "yes" if i["pinned"] else "no",
             i.get("note") or i.get("error") or (i.get("stop_reason") if i["status"] == "stopped" else "") or ""]
            for i in items]
    # MEMORY is what the budget counts: the larger of the estimate and the measurement (docs/deployments.md)
    table(rows, ["ID", "MODEL", "STATE", "PORT", "MEMORY", "ESTIMATED", "MEASURED", "IDLE", "PINNED", "NOTE"])


def _run(ctx: click.Context, model: str, ctx_len: int | None, gpu_layers: int | None, port: int | None,
         pin: bool | None, parallel: int | None, no_wait: bool, as_json: bool) -> None:
    body: dict[str, Any] = {"model_id": model, "wait": not no_wait}
    for key, value in (("max_model_len", ctx_len), ("n_gpu_layers", gpu_layers), ("port", port),
                       ("pinned", pin), ("parallel", parallel)):
        if value is not None:
            body[key] = value
    data = get_client(ctx).request("POST", "/api/deployments/start", json=body)["data"]
    if want_json(ctx, as_json):
        print_json(data)
        return
    if data["status"] == "error":
        raise CliError(f"{data['model_id']} failed to start: {data.get('error')}")
    where = f", OpenAI API on {data['host']}:{data['port']}" if data.get("port") else ""
    click.echo(f"{data['model_id']} {data['status']} as {data['deployment_id']} "
               f"(context {data.get('max_model_len')}, {data['memory_mb']:.0f} MiB{where})")
    if data.get("note"):
        click.echo(f"note: {data['note']}")


_run_options = [
    click.argument("model"),
    click.option("--ctx", "ctx_len", type=click.IntRange(16), help="context tokens per slot"),
    click.option("--gpu-layers", type=click.IntRange(-1), help="layers to offload to the GPU (-1: all)"),
    click.option("--port", type=click.IntRange(1, 65535), help="also serve the OpenAI API for just this model here"),
    click.option("--pin/--no-pin", "pin", default=None, help="never evict it or unload it when idle"),
    click.option("--parallel", type=click.IntRange(1, 256), help="sequence slots"),
    click.option("--no-wait", is_flag=True, help="return at once instead of when loaded"),
    json_option,
    click.pass_context,
]


def _with_run_options(fn: Any) -> Any:
    for deco in reversed(_run_options):
        fn = deco(fn)
    return fn


@cli.command()
@_with_run_options
def run(ctx: click.Context, model: str, ctx_len: int | None, gpu_layers: int | None, port: int | None,
        pin: bool | None, parallel: int | None, no_wait: bool, as_json: bool) -> None:
    """Deploy MODEL (a name or alias) and wait until it serves."""
    _run(ctx, model, ctx_len, gpu_layers, port, pin, parallel, no_wait, as_json)


@cli.command("start")
@_with_run_options
def start(ctx: click.Context, model: str, ctx_len: int | None, gpu_layers: int | None, port: int | None,
          pin: bool | None, parallel: int | None, no_wait: bool, as_json: bool) -> None:
    """Same as 'llmctl run'."""
    _run(ctx, model, ctx_len, gpu_layers, port, pin, parallel, no_wait, as_json)


@cli.command()
@click.argument("ref", metavar="MODEL|ID")
@click.option("--force", is_flag=True, help="cancel running generations instead of letting them finish")
@json_option
@click.pass_context
def stop(ctx: click.Context, ref: str, force: bool, as_json: bool) -> None:
    """Stop a deployment (by model name, alias or deployment id)."""
    client = get_client(ctx)
    dep = deployment_id(client, ref)
    data = client.request("PUT", f"/api/deployments/{dep}/stop", params={"force": str(force).lower()})["data"]
    if want_json(ctx, as_json):
        print_json(data)
        return
    click.echo(f"stopped {data['model_id']} ({dep})")


def _line(entry: dict[str, Any]) -> str:
    ts = time.strftime("%H:%M:%S", time.localtime(entry.get("ts") or 0))
    return f"{ts} {entry.get('level', 'info'):7} {entry.get('message', '')}"


@cli.command()
@click.argument("ref", metavar="MODEL|ID")
@click.option("-n", "--lines", default=100, type=click.IntRange(1, 10000), help="how many lines")
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines (Ctrl-C ends)")
@json_option
@click.pass_context
def logs(ctx: click.Context, ref: str, lines: int, follow: bool, as_json: bool) -> None:
    """Print a deployment's log: its own lines, llama.cpp's and errors (also of a stopped model)."""
    client = get_client(ctx)
    dep = deployment_id(client, ref)
    if not follow:
        data = client.request("GET", f"/api/deployments/{dep}/logs", params={"lines": lines})["data"]
        if want_json(ctx, as_json):
            print_json(data["logs"])
            return
        for entry in data["logs"]:
            click.echo(_line(entry))
        return
    for entry in client.stream(f"/api/deployments/{dep}/logs", method="GET",
                               params={"lines": lines, "follow": "true"}):
        if want_json(ctx, as_json):
            print_json(entry)
        else:
            click.echo(_line(entry))
