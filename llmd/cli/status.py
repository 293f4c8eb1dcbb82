"""``llmctl status``."""

from __future__ import annotations

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.output import human_size, print_json


@cli.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the daemon's health, models in memory and request totals."""
    data = get_client(ctx).request("GET", "/llmd/v1/status")
    if want_json(ctx, as_json):
        print_json(data)
        return
    health = data["health"]
    click.echo(f"llmd {data['version']} (pid {data['pid']}), engine {data['engine']}: {health['status']}")
    click.echo(f"  listening on {data['listen']}, socket {data['socket']}")
    click.echo(f"  state dir {data['state_dir']}, memory {human_size(data['memory_rss_bytes'])}")
    click.echo(f"  default model {health['default_model']} "
               f"({'loaded' if health['model_loaded'] else 'not loaded'})")
    for d in health["deployments"]:
        extra = f" error: {d['error']}" if d.get("error") else ""
        click.echo(f"  deployment {d['model']}: {d['state']} on {d['device'] or '-'}, "
                   f"active {d['active']}, queued {d['queued']}/{d['queue_size']}{extra}")
    r = data["requests"]
    click.echo(f"  requests {r.get('requests', 0)}, tokens in {r.get('prompt_tokens', 0)}, "
               f"out {r.get('completion_tokens', 0)}, errors {r.get('errors', 0)}")
