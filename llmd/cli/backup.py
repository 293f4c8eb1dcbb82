"""``llmctl backup FILE`` and ``llmctl restore FILE``: the daemon's SQLite database, while it runs.

A backup is a consistent copy made by the daemon with SQLite's online backup
API (registry, deployments, keys and users, chat sessions, request log,
metrics history, alert rules, settings). A restore is uploaded in parts,
checked by the daemon (size, SHA-256, integrity, schema), and put in place by
the daemon itself at a restart; the database it replaces is kept in
``<state_dir>/backups/``.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import CliError
from llmd.cli.output import human_size, print_json

PART = 2 << 20  # under the daemon's default request limit (server.max_body_bytes, 4 MiB)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False, writable=True, path_type=Path))
@json_option
@click.pass_context
def backup(ctx: click.Context, file: Path, as_json: bool) -> None:
    """Write a consistent copy of the daemon's database to FILE, while it runs."""
    started = time.monotonic()
    size = get_client(ctx).download("/llmd/v1/backup", file)
    took = time.monotonic() - started
    if want_json(ctx, as_json):
        print_json({"file": str(file), "size_bytes": size, "seconds": round(took, 3)})
        return
    click.echo(f"backed up {human_size(size)} to {file} in {took:.1f}s")


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option("--wait", "wait_s", type=float, default=120.0, show_default=True,
              help="seconds to wait for the daemon to come back with the restored database")
@json_option
@click.pass_context
def restore(ctx: click.Context, file: Path, wait_s: float, as_json: bool) -> None:
    """Replace the daemon's database with FILE (a backup): checked, then put in place at a restart."""
    client = get_client(ctx)
    data = file.read_bytes()
    for offset in range(0, len(data), PART):
        client.request("PUT", "/llmd/v1/restore", params={"offset": offset}, content=data[offset:offset + PART],
                       headers={"Content-Type": "application/octet-stream"})
    answer = client.request("POST", "/llmd/v1/restore/commit",
                            json={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    back = answer["restarting"] and _wait_back(client, wait_s)
    if want_json(ctx, as_json):
        print_json({**answer, "back": bool(back)})
        return
    if not answer["restarting"]:
        click.echo(f"checked {file} ({human_size(len(data))}); restart llmd to put it in place")
    elif back:
        click.echo(f"restored {file} ({human_size(len(data))}); llmd restarted with it (the replaced database "
                   "is kept in its state directory, under backups/)")
    else:
        raise CliError(f"{file} was checked and llmd stopped to put it in place, but it did not answer within "
                       f"{wait_s:g}s: under systemd it restarts by itself ('systemctl status llmd'); "
                       "otherwise start it again")


def _wait_back(client, wait_s: float) -> bool:
    """Whether the daemon went away and answers again within ``wait_s``."""
    deadline = time.monotonic() + wait_s
    gone = False
    while time.monotonic() < deadline:
        try:
            client.request("GET", "/llmd/v1/status")
            if gone:
                return True
        except CliError:
            gone = True
        time.sleep(0.5)
    return False
