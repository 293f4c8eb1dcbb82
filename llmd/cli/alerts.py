"""``llmctl alerts``: the daemon's alert rules (``/api/config/alerts``) and their history.

The built-in rules (ids ``threshold-...``) come from ``alert_thresholds`` and
change through ``llmctl config set alert_thresholds.<name>=...``; the daemon
refuses to delete or edit them here.
"""

from __future__ import annotations

from typing import Any

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import Client, CliError
from llmd.cli.output import print_json

SEVERITIES = ("info", "warning", "critical")
CHANNELS = ("journal", "webhook", "email")


def all_rules(client: Client) -> list[dict[str, Any]]:
    """Every alert rule, page by page (100 a page, the most the daemon gives)."""
    items: list[dict[str, Any]] = []
    page = 1
    while True:
        data = client.request("GET", "/api/config/alerts", params={"size": 100, "page": page})
        items.extend(data["items"])
        if page >= int(data.get("pages") or 1):
            return items
        page += 1


def _table(rows: list[list[Any]], headers: list[str], wide: set[str]) -> None:
    """A rich table fitted to the terminal; the ``wide`` columns wrap, the others stay whole."""
    from rich.console import Console  # rich loads only for the commands that draw
    from rich.table import Table

    t = Table(box=None, header_style="bold", pad_edge=False, padding=(0, 1))
    for h in headers:
        t.add_column(h, overflow="fold", no_wrap=h not in wide, min_width=12 if h in wide else None)
    for row in rows:
        t.add_row(*row)
    Console().print(t)


def _rule_cell(r: dict[str, Any]) -> Any:
    """The name with the condition under it: the built-in rules' ids leave no room for two columns on 80."""
    from rich.text import Text

    return Text.assemble(r["name"], "\n", (r["condition"], "cyan"))


@cli.group("alerts", invoke_without_command=True)
@json_option
@click.pass_context
def alerts(ctx: click.Context, as_json: bool) -> None:
    """List alert rules (or use a subcommand: list, add, rm, enable, disable, history)."""
    if ctx.invoked_subcommand is None:
        _list(ctx, as_json)


@alerts.command("list")
@json_option
@click.pass_context
def alerts_list(ctx: click.Context, as_json: bool) -> None:
    """The rules, built-in first, with whether each is ok, pending or firing."""
    _list(ctx, as_json)


def _list(ctx: click.Context, as_json: bool) -> None:
    items = all_rules(get_client(ctx))
    if want_json(ctx, as_json):
        print_json(items)
        return
    if not items:
        click.echo("no alert rules")
        return
    rows = [[r["id"], _rule_cell(r), r["severity"], (r.get("state") or "-") if r["enabled"] else "disabled",
             "\n".join(r.get("notification_channels") or []) or "-"] for r in items]
    _table(rows, ["ID", "RULE", "SEVERITY", "STATE", "CHANNELS"], {"RULE"})


@alerts.command("add")
@click.argument("name")
@click.argument("condition")
@click.option("--severity", type=click.Choice(SEVERITIES), default="warning", show_default=True)
@click.option("--channel", "channels", type=click.Choice(CHANNELS), multiple=True,
              help="where to notify (repeatable; default: journal)")
@click.option("--repeat", "repeat_s", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="notify again every SECONDS while it fires (0: once; default: alerts.repeat_interval_s)")
@click.option("--disabled", is_flag=True, help="create it disabled")
@click.option("--description", default="", help="free text kept with the rule")
@json_option
@click.pass_context
def alerts_add(ctx: click.Context, name: str, condition: str, severity: str, channels: tuple[str, ...],
               repeat_s: float | None, disabled: bool, description: str, as_json: bool) -> None:
    """Add a rule NAME that fires when CONDITION holds.

    CONDITION is ``<metric> <op> <threshold> [for <duration>]``, e.g.
    ``"cpu_percent > 90 for 5m"`` or ``"error_rate > 0.05"``.
    """
    body: dict[str, Any] = {"name": name, "condition": condition, "severity": severity, "enabled": not disabled,
                            "notification_channels": list(channels or ("journal",)),
                            "repeat_interval_s": repeat_s, "description": description}
    try:
        r = get_client(ctx).request("POST", "/api/config/alerts", json=body)
    except CliError as exc:
        # The daemon's message says what is wrong but not always with what (a bad condition reads
        # "unknown metric 'x'"): name the rule and its condition so the line stands on its own.
        raise CliError(f"alert rule {name!r} with condition {condition!r} not added: {exc}", exc.code) from None
    if want_json(ctx, as_json):
        print_json(r)
        return
    click.echo(r["id"])
    click.echo(f"added {r['id']}: {r['name']} when {r['condition']} ({r['severity']}, "
               f"{'enabled' if r['enabled'] else 'disabled'}, to {','.join(r['notification_channels'])})", err=True)


def _act(ctx: click.Context, method: str, path: str, as_json: bool) -> dict[str, Any]:
    data = get_client(ctx).request(method, path)
    if want_json(ctx, as_json):
        print_json(data)
    return data


@alerts.command("rm")
@click.argument("alert_id")
@json_option
@click.pass_context
def alerts_rm(ctx: click.Context, alert_id: str, as_json: bool) -> None:
    """Delete rule ALERT_ID (its history stays)."""
    _act(ctx, "DELETE", f"/api/config/alerts/{alert_id}", as_json)
    if not want_json(ctx, as_json):
        click.echo(f"{alert_id}: deleted")


@alerts.command("enable")
@click.argument("alert_id")
@json_option
@click.pass_context
def alerts_enable(ctx: click.Context, alert_id: str, as_json: bool) -> None:
    """Evaluate rule ALERT_ID again from the next sample."""
    r = _act(ctx, "POST", f"/api/config/alerts/{alert_id}/enable", as_json)
    if not want_json(ctx, as_json):
        click.echo(f"{r['id']}: enabled ({r.get('state') or '-'})")


@alerts.command("disable")
@click.argument("alert_id")
@json_option
@click.pass_context
def alerts_disable(ctx: click.Context, alert_id: str, as_json: bool) -> None:
    """Stop evaluating rule ALERT_ID (a firing one resolves at the next sample)."""
    r = _act(ctx, "POST", f"/api/config/alerts/{alert_id}/disable", as_json)
    if not want_json(ctx, as_json):
        click.echo(f"{r['id']}: disabled")


@alerts.command("history")
@click.option("--alert", "alert_id", help="only this rule's events")
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True, help="newest events to show")
@json_option
@click.pass_context
def alerts_history(ctx: click.Context, alert_id: str | None, limit: int, as_json: bool) -> None:
    """The newest firings, repeats and resolutions."""
    params: dict[str, Any] = {"size": limit}
    if alert_id:
        params["alert_id"] = alert_id
    data = get_client(ctx).request("GET", "/api/config/alerts/history", params=params)
    if want_json(ctx, as_json):
        print_json(data)
        return
    if not data["items"]:
        click.echo(f"no alert events{f' for {alert_id}' if alert_id else ''}")
        return
    rows = [[(e.get("timestamp") or "-").replace("T", " "), e["alert_id"], e["state"], e["severity"],
             e.get("message") or ""] for e in data["items"]]
    _table(rows, ["TIME", "ALERT", "STATE", "SEVERITY", "MESSAGE"], {"MESSAGE"})
    if data.get("total", 0) > len(rows):
        click.echo(f"{len(rows)} of {data['total']} events (--limit shows more)", err=True)
