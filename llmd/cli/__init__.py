"""llmctl: the admin CLI. One module per command group; all talk HTTP over the Unix socket."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from llmd import __version__
from llmd.cli.client import Client, CliError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), envvar="LLMCTL_SOCKET",
              help="the daemon's Unix socket (default: from the daemon's config)")
@click.option("--url", envvar="LLMCTL_URL", help="talk TCP to this base URL instead, e.g. http://127.0.0.1:8000")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text (every command)")
@click.version_option(__version__, prog_name="llmctl")
@click.pass_context
def cli(ctx: click.Context, socket_path: Path | None, url: str | None, as_json: bool) -> None:
    """Control the llmd daemon."""
    ctx.obj = {"socket": socket_path, "url": url, "json": as_json, "client": None}


def get_client(ctx: click.Context) -> Client:
    """The client for this invocation (created on first use)."""
    root = ctx.find_root()
    if root.obj["client"] is None:
        root.obj["client"] = Client(root.obj["socket"], root.obj["url"])
    return root.obj["client"]


def want_json(ctx: click.Context, local: bool) -> bool:
    """``--json`` given before or after the command name."""
    return local or ctx.find_root().obj["json"]


json_option = click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")


def main() -> None:
    """Entry point of ``llmctl``."""
    # importing a command module registers its commands
    from llmd.cli import access, alerts, backup, chat, config, deploy, doctor, hub, metrics, models, status, top  # noqa: F401

    try:
        cli.main(standalone_mode=False)
    except CliError as exc:
        click.echo(f"llmctl: {exc}", err=True)
        sys.exit(exc.code)
    except click.exceptions.Abort:
        click.echo("", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
