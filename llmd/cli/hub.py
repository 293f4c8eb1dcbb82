"""``llmctl search``, ``llmctl pull`` and ``llmctl downloads``.

``pull`` starts (or finds) a download task in the daemon and follows its
progress over SSE (``GET /api/downloads/{id}/events``) with a rich progress
bar. Ctrl-C only detaches: the download goes on in the daemon, and running
the same ``pull`` again (or ``pull --wait``) attaches to the same task.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import CliError
from llmd.cli.output import human_size, print_json, table

SOURCES = ("huggingface", "ollama")


@cli.command("search")
@click.argument("query", required=False, default="")
@click.option("--source", type=click.Choice(SOURCES), default="huggingface", show_default=True)
@click.option("--type", "model_type", help="model type, e.g. text-generation")
@click.option("--page", type=click.IntRange(1), default=1, show_default=True)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="results per page")
@json_option
@click.pass_context
def search(ctx: click.Context, query: str, source: str, model_type: str | None, page: int, limit: int,
           as_json: bool) -> None:
    """Search the model hub for QUERY (GGUF models)."""
    params: dict[str, Any] = {"query": query, "source": source, "page": page, "page_size": limit}
    if model_type:
        params["model_type"] = model_type
    data = get_client(ctx).request("GET", "/api/models/search", params=params)["data"]
    if want_json(ctx, as_json):
        print_json(data)
        return
    rows = [[i["id"], i.get("model_type") or "-", i.get("parameters") or "-", str(i.get("downloads", 0)),
             str(i.get("likes", 0)), "*" if i.get("favorite") else ""] for i in data["items"]]
    if not rows:
        click.echo("no models found")
    else:
        table(rows, ["ID", "TYPE", "PARAMS", "DOWNLOADS", "LIKES", "FAV"])
    p = data["pagination"]
    note = f"page {p['page']} of {p['total_pages']}, {p['total']} models"
    if data.get("from_cache"):
        note += f" (from the local cache, {int(data.get('cache_age_s') or 0)} s old; the hub did not answer)" \
            if data.get("hub_error") else " (from the local cache)"
    click.echo(note, err=True)


def _split_ref(ref: str, source: str) -> tuple[str, str | None]:
    """``owner/repo:file.gguf`` -> (repo, file); Ollama's ``name:tag`` stays whole."""
    if source == "ollama" or ":" not in ref:
        return ref, None
    repo, _, filename = ref.partition(":")
    return repo, filename or None


@cli.command("pull")
@click.argument("ref", metavar="REPO[:FILE]")
@click.option("--source", type=click.Choice(SOURCES), default="huggingface", show_default=True)
@click.option("--quant", "quantization", help="quantization to pick when no FILE is named, e.g. Q4_K_M")
@click.option("--wait", is_flag=True, help="follow the download to the end even when stdout is not a terminal")
@click.option("--detach", is_flag=True, help="start the download and return at once")
@json_option
@click.pass_context
def pull(ctx: click.Context, ref: str, source: str, quantization: str | None, wait: bool, detach: bool,
         as_json: bool) -> None:
    """Download a model from the hub and register it; shows progress, Ctrl-C detaches.

    REPO is a Hugging Face repo id (``owner/name``), optionally with ``:FILE``
    to pick one GGUF file; with ``--source ollama`` it is ``name[:tag]``.
    Running the same pull again attaches to the download in progress.
    """
    client = get_client(ctx)
    model_id, filename = _split_ref(ref, source)
    body: dict[str, Any] = {"model_id": model_id, "source": source}
    if filename:
        body["filename"] = filename
    if quantization:
        body["quantization"] = quantization
    data = client.request("POST", "/api/downloads/start", json=body)["data"]
    task = data["task"]
    tid = task["id"]
    follow = not detach and (wait or sys.stdout.isatty())
    if not follow:
        if want_json(ctx, as_json):
            print_json(task)
        else:
            click.echo(f"{tid}: {task['model_id']} {task['filename']} {task['status']}"
                       f"{'' if data.get('created') else ' (already started)'}; follow with "
                       f"'llmctl pull --wait {ref}'")
        return
    if not data.get("created"):
        click.echo(f"attaching to {tid} ({task['status']})", err=True)
    try:
        final = _follow(client, task, fancy=sys.stdout.isatty() and not want_json(ctx, as_json))
    except KeyboardInterrupt:
        click.echo(f"\ndetached: {tid} goes on in the daemon; 'llmctl pull --wait {ref}' attaches again, "
                   f"'llmctl downloads pause {tid}' pauses it", err=True)
        return
    if want_json(ctx, as_json):
        print_json(final)
    if final["status"] == "completed":
        if not want_json(ctx, as_json):
            click.echo(f"{tid}: completed; registered as '{final['model_name']}' "
                       f"({human_size(final['total_bytes'])}, sha256 verified)")
        return
    if final["status"] == "paused":
        raise CliError(f"{tid} is paused; 'llmctl downloads resume {tid}' continues it")
    raise CliError(f"{tid} {final['status']}: {final.get('error') or final.get('message') or ''}".strip())


def _follow(client: Any, task: dict[str, Any], *, fancy: bool) -> dict[str, Any]:
    """Read the task's SSE events until it finishes (or pauses); returns its last state."""
    last = task
    progress = None
    bar = None
    if fancy:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))
        progress.start()
        bar = progress.add_task(task["filename"] or task["model_id"], total=task["total_bytes"] or None,
                                completed=task["downloaded_bytes"], status=task["status"])
    shown = None
    try:
        for event in client.stream(f"/api/downloads/{task['id']}/events", method="GET"):
            t = event.get("task")
            if not t:
                continue
            last = t
            if progress is not None:
                progress.update(bar, completed=t["downloaded_bytes"], total=t["total_bytes"] or None,
                                status=t["status"])
            elif t["status"] != shown:
                shown = t["status"]
                click.echo(f"{t['id']}: {t['status']} {t['progress']:.1f}% of {t['total_size']}"
                           f"{' - ' + t['error'] if t.get('error') else ''}", err=True)
            if t["status"] in ("completed", "failed", "cancelled", "paused"):
                break
    finally:
        if progress is not None:
            progress.stop()
    return last


@cli.group("downloads", invoke_without_command=True)
@click.option("--status", type=click.Choice(("pending", "downloading", "paused", "completed", "failed",
                                             "cancelled")))
@json_option
@click.pass_context
def downloads(ctx: click.Context, status: str | None, as_json: bool) -> None:
    """List download tasks (or use a subcommand: pause, resume, cancel, rm)."""
    if ctx.invoked_subcommand is not None:
        return
    params: dict[str, Any] = {"page_size": 100}
    if status:
        params["status"] = status
    data = get_client(ctx).request("GET", "/api/downloads/list", params=params)["data"]
    if want_json(ctx, as_json):
        print_json(data)
        return
    rows = [[t["id"], t["model_id"], t["filename"] or "-", t["status"], f"{t['progress']:.1f}%",
             f"{t['downloaded_size']}/{t['total_size']}", t["speed"] if t["status"] == "downloading" else "-",
             t["eta"] or "-", t.get("model_name") or (t.get("error_code") or "-")] for t in data["items"]]
    if not rows:
        click.echo("no downloads")
        return
    table(rows, ["ID", "MODEL", "FILE", "STATUS", "PROGRESS", "SIZE", "SPEED", "ETA", "MODEL/ERROR"])


def _action(ctx: click.Context, task_id: str, action: str, as_json: bool) -> None:
    client = get_client(ctx)
    if action == "rm":
        data = client.request("DELETE", f"/api/downloads/{task_id}")["data"]
        if want_json(ctx, as_json):
            print_json(data)
        else:
            click.echo(f"{task_id}: deleted")
        return
    t = client.request("PUT", f"/api/downloads/{task_id}/{action}")["data"]
    if want_json(ctx, as_json):
        print_json(t)
    else:
        click.echo(f"{t['id']}: {t['status']} ({t['progress']:.1f}% of {t['total_size']})")


@downloads.command("pause")
@click.argument("task_id")
@json_option
@click.pass_context
def downloads_pause(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Pause TASK_ID; the partial file stays for the resume."""
    _action(ctx, task_id, "pause", as_json)


@downloads.command("resume")
@click.argument("task_id")
@json_option
@click.pass_context
def downloads_resume(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Resume TASK_ID from its partial file."""
    _action(ctx, task_id, "resume", as_json)


@downloads.command("cancel")
@click.argument("task_id")
@json_option
@click.pass_context
def downloads_cancel(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Cancel TASK_ID and delete its partial files."""
    _action(ctx, task_id, "cancel", as_json)


@downloads.command("rm")
@click.argument("task_id")
@json_option
@click.pass_context
def downloads_rm(ctx: click.Context, task_id: str, as_json: bool) -> None:
    """Forget TASK_ID (a registered model stays)."""
    _action(ctx, task_id, "rm", as_json)
