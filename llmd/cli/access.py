"""``llmctl keys`` (API keys) and ``llmctl users`` (users who log in for tokens)."""

from __future__ import annotations

import datetime
import re
import sys

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import CliError
from llmd.cli.output import print_json, table


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``15m``, ``90s``, ``2w`` or plain seconds, as seconds."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if not m or int(m.group(1)) == 0:
        raise CliError(f"--expires: '{text}' is not a duration such as 30d, 12h or 3600", code=2)
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def _when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


@cli.group()
def keys() -> None:
    """Create, list and revoke API keys."""


@keys.command("create")
@click.option("--name", required=True, help="a unique name, e.g. the client that will use the key")
@click.option("--scope", type=click.Choice(["inference", "admin"]), default="inference", show_default=True,
              help="inference: generate, chat, completions, embeddings and model listing; admin: everything")
@click.option("--models", help="comma-separated models the key may use (default: every model)")
@click.option("--expires", help="lifetime such as 30d, 12h, 90m or seconds (default: never)")
@json_option
@click.pass_context
def keys_create(ctx: click.Context, name: str, scope: str, models: str | None, expires: str | None,
                as_json: bool) -> None:
    """Create a key; it is printed once and cannot be shown again."""
    body: dict[str, object] = {"name": name, "scope": scope}
    if models:
        body["models"] = [m.strip() for m in models.split(",") if m.strip()]
    if expires:
        body["expires_in_s"] = parse_duration(expires)
    data = get_client(ctx).request("POST", "/llmd/v1/keys", json=body)
    if want_json(ctx, as_json):
        print_json(data)
        return
    k = data["key"]
    click.echo(data["secret"])
    limits = f", models {','.join(k['models'])}" if k["models"] else ""
    expiry = f", expires {_when(k['expires_at'])}" if k["expires_at"] else ""
    click.echo(f"created key {k['name']} (id {k['id']}, scope {k['scope']}{limits}{expiry}); "
               f"store it now: it is not shown again", err=True)


@keys.command("list")
@click.option("--all", "include_revoked", is_flag=True, help="show revoked keys too")
@json_option
@click.pass_context
def keys_list(ctx: click.Context, include_revoked: bool, as_json: bool) -> None:
    """List keys (never the keys themselves)."""
    data = get_client(ctx).request("GET", "/llmd/v1/keys",
                                   params={"include_revoked": "true" if include_revoked else "false"})
    if want_json(ctx, as_json):
        print_json(data)
        return
    if not data["keys"]:
        click.echo("no API keys")
        return
    rows = [[str(k["id"]), k["name"], k["prefix"] + "...", k["scope"], ",".join(k["models"] or []) or "all",
             _when(k["created_at"]), _when(k["expires_at"]), _when(k["last_used_at"]),
             "revoked" if k["revoked_at"] else "active"] for k in data["keys"]]
    table(rows, ["ID", "NAME", "KEY", "SCOPE", "MODELS", "CREATED", "EXPIRES", "LAST USED", "STATE"])


@keys.command("revoke")
@click.argument("key")
@json_option
@click.pass_context
def keys_revoke(ctx: click.Context, key: str, as_json: bool) -> None:
    """Revoke KEY (its id or name); requests with it are refused from now on."""
    data = get_client(ctx).request("DELETE", f"/llmd/v1/keys/{key}")
    if want_json(ctx, as_json):
        print_json(data)
        return
    click.echo(f"revoked key {data['key']['name']} (id {data['key']['id']})")


@cli.group()
def users() -> None:
    """Add, list and remove users (they get tokens from POST /api/auth/token)."""


@users.command("add")
@click.argument("username")
@click.option("--scope", type=click.Choice(["inference", "admin"]), default="admin", show_default=True)
@click.option("--password-stdin", is_flag=True, help="read the password from standard input (for scripts)")
@json_option
@click.pass_context
def users_add(ctx: click.Context, username: str, scope: str, password_stdin: bool, as_json: bool) -> None:
    """Add USERNAME; the password is asked for (twice) unless --password-stdin."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=True)
    data = get_client(ctx).request("POST", "/llmd/v1/users",
                                   json={"username": username, "password": password, "scope": scope})
    if want_json(ctx, as_json):
        print_json(data)
        return
    click.echo(f"added user {data['user']['username']} (scope {data['user']['scope']})")


@users.command("list")
@json_option
@click.pass_context
def users_list(ctx: click.Context, as_json: bool) -> None:
    """List users and their scopes."""
    data = get_client(ctx).request("GET", "/llmd/v1/users")
    if want_json(ctx, as_json):
        print_json(data)
        return
    if not data["users"]:
        click.echo("no users")
        return
    table([[u["username"], u["scope"], _when(u["created_at"]), _when(u["last_login_at"])] for u in data["users"]],
          ["USERNAME", "SCOPE", "CREATED", "LAST LOGIN"])


@users.command("remove")
@click.argument("username")
@json_option
@click.pass_context
def users_remove(ctx: click.Context, username: str, as_json: bool) -> None:
    """Remove USERNAME; their tokens stop working at once."""
    data = get_client(ctx).request("DELETE", f"/llmd/v1/users/{username}")
    if want_json(ctx, as_json):
        print_json(data)
        return
    click.echo(f"removed user {username}")


@cli.command()
@json_option
@click.pass_context
def whoami(ctx: click.Context, as_json: bool) -> None:
    """Show the auth mode in force (and why) and who llmctl is to the daemon."""
    data = get_client(ctx).request("GET", "/llmd/v1/auth")
    if want_json(ctx, as_json):
        print_json(data)
        return
    auth = data.get("auth") or {}
    click.echo(f"auth {'on' if auth.get('enabled') else 'off'}: {auth.get('reason', '')}")
    who = data.get("principal")
    if not who:
        click.echo("you: anonymous")
        return
    click.echo("you: " + ", ".join(f"{k} {v}" for k, v in who.items() if v not in (None, "", [])))
