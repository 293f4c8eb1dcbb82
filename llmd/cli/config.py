"""``llmctl config get|set|unset``: the daemon's settings at run time (``GET``/``PUT /api/config``).

Keys are the document's (``gpu_monitor_interval``, ``alert_thresholds.error_rate_high``, ...) or any
llmd setting by ``section.key`` (``engine.n_ctx``). A value set here is stored by the daemon as an
override that wins over llmd.toml; ``unset`` drops the override so the file's value applies again.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import CliError
from llmd.cli.output import print_json, table

# The document's keys -> llmd's settings (the daemon's own map, which llmctl may not import).
DOC_KEYS = {
    "gpu_monitor_interval": "monitor.interval_s",
    "max_concurrent_models": "deployments.max_running",
    "default_model_timeout": "deployments.start_timeout_s",
    "health_check_interval": "deployments.health_check_interval_s",
    "log_level": "log.level",
}
THRESHOLDS = "alert_thresholds."
THRESHOLD_NAMES = ("gpu_utilization_high", "gpu_temperature_high", "response_time_high", "error_rate_high")


def setting_key(key: str) -> str:
    """A document key as llmd's ``section.key``; an llmd key as it is."""
    if key in DOC_KEYS:
        return DOC_KEYS[key]
    if key.startswith(THRESHOLDS):
        return "alerts." + key[len(THRESHOLDS):]
    return key


def doc_name(key: str) -> str:
    """llmd's ``section.key`` as the document names it (the name the daemon's answers use)."""
    for name, k in DOC_KEYS.items():
        if k == key:
            return name
    if key.startswith("alerts.") and key[len("alerts."):] in THRESHOLD_NAMES:
        return THRESHOLDS + key[len("alerts."):]
    return key


def shown(value: Any) -> str:
    """A value as the config file would spell it (strings bare)."""
    return value if isinstance(value, str) else json.dumps(value)


def parse_value(text: str) -> Any:
    """JSON when it parses (``60``, ``true``, ``"x"``, ``[1]``), else the text itself (``info``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def lookup(doc: dict[str, Any], key: str) -> dict[str, Any] | None:
    """One key of ``GET /api/config``'s answer: ``{"key", "value", "source", "applies", "pending"?}``."""
    settings = doc.get("settings") or {}
    entry = settings.get(setting_key(key))
    if key in DOC_KEYS or key.startswith(THRESHOLDS):
        group = doc.get("alert_thresholds", {}) if key.startswith(THRESHOLDS) else doc
        name = key[len(THRESHOLDS):] if key.startswith(THRESHOLDS) else key
        if name not in group:
            return None
        out = {"key": key, "setting": setting_key(key), "value": group[name],
               "source": (doc.get("sources") or {}).get(key, (entry or {}).get("source"))}
        if entry:
            out.update({k: entry[k] for k in ("applies", "pending") if k in entry})
        return out
    return {"key": key, **entry} if entry is not None else None


def _unknown(doc: dict[str, Any], key: str) -> CliError:
    known = [*DOC_KEYS, *(THRESHOLDS + n for n in doc.get("alert_thresholds", {})), *(doc.get("settings") or {})]
    close = difflib.get_close_matches(key, known, n=3)
    return CliError(f"unknown setting {key!r}" + (f"; did you mean {', '.join(close)}?" if close else
                                                  "; 'llmctl config get' lists them"))


@cli.group("config")
def config() -> None:
    """Read and change the daemon's settings at run time."""


@config.command("get")
@click.argument("key", required=False)
@json_option
@click.pass_context
def config_get(ctx: click.Context, key: str | None, as_json: bool) -> None:
    """Show the document's keys with their sources, or one KEY (a document key or any ``section.key``)."""
    doc = get_client(ctx).request("GET", "/api/config")
    if key:
        entry = lookup(doc, key)
        if entry is None:
            raise _unknown(doc, key)
        if want_json(ctx, as_json):
            print_json(entry)
            return
        extra = f"; {shown(entry['pending'])} after a restart" if "pending" in entry else ""
        applies = {"now": "applies at once", "restart": "applies at a restart"}.get(entry.get("applies", ""))
        click.echo(f"{key} = {shown(entry['value'])}  (source: {entry.get('source') or '-'}"
                   f"{'; ' + applies if applies else ''}{extra})")
        return
    if want_json(ctx, as_json):
        print_json(doc)
        return
    sources = doc.get("sources") or {}
    rows = [[k, shown(doc[k]), sources.get(k, "-")] for k in DOC_KEYS if k in doc]
    rows += [[THRESHOLDS + k, shown(v), sources.get(THRESHOLDS + k, "-")]
             for k, v in (doc.get("alert_thresholds") or {}).items()]
    table(rows, ["KEY", "VALUE", "SOURCE"])
    _pending(doc.get("restart_required") or {})
    click.echo("every other setting: 'llmctl config get SECTION.KEY' or 'llmctl config get --json'", err=True)


def _pending(restart_required: dict[str, Any]) -> None:
    if restart_required:
        click.echo("waiting for a restart of llmd:")
        for k, v in restart_required.items():
            click.echo(f"  {k} = {shown(v)}")


def put_body(pairs: dict[str, Any]) -> dict[str, Any]:
    """``{key: value}`` as a ``PUT /api/config`` body: document keys at the top, the others under settings."""
    body: dict[str, Any] = {}
    for key, value in pairs.items():
        if key.startswith(THRESHOLDS):
            body.setdefault("alert_thresholds", {})[key[len(THRESHOLDS):]] = value
        elif "." in key:
            body.setdefault("settings", {})[key] = value
        else:
            body[key] = value  # a document key (or a typo the daemon will name in its 400)
    return body


def _pair(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE")
        out[key.strip()] = parse_value(value)
    return out


@config.command("set")
@click.argument("pairs", metavar="KEY=VALUE...", nargs=-1, required=True, callback=_pair)
@json_option
@click.pass_context
def config_set(ctx: click.Context, pairs: dict[str, Any], as_json: bool) -> None:
    """Change settings; each is stored as an override and applied at once where it can be.

    VALUE is read as JSON when it parses (``60``, ``true``, ``"x"``), else as text.
    """
    doc = get_client(ctx).request("PUT", "/api/config", json=put_body(pairs))
    if want_json(ctx, as_json):
        print_json(doc)
        return
    applied = set(doc.get("applied") or [])
    restart = doc.get("restart_required") or {}
    for key, value in pairs.items():
        # The answer names a setting as the document does when it has a name there (monitor.interval_s is
        # gpu_monitor_interval), so look each key up under that name.
        name = doc_name(setting_key(key))
        if name in applied:
            click.echo(f"{key} = {shown(value)}: applied now")
        elif name in restart or key in restart:
            click.echo(f"{key} = {shown(value)}: stored; applies when llmd restarts")
        else:
            click.echo(f"{key} = {shown(value)}: unchanged (already the value)")
    others = {k: v for k, v in restart.items() if k not in {doc_name(setting_key(x)) for x in pairs}}
    if others:
        click.echo("also waiting for a restart: " + ", ".join(f"{k} = {shown(v)}" for k, v in others.items()))


@config.command("unset")
@click.argument("keys", metavar="KEY...", nargs=-1, required=True)
@json_option
@click.pass_context
def config_unset(ctx: click.Context, keys: tuple[str, ...], as_json: bool) -> None:
    """Drop the stored overrides of KEYs: llmd.toml's value (or the default) applies again."""
    doc = get_client(ctx).request("PUT", "/api/config", json={"reset": [setting_key(k) for k in keys]})
    if want_json(ctx, as_json):
        print_json(doc)
        return
    for key in keys:
        entry = lookup(doc, key) or {}
        later = f"; {shown(entry['pending'])} after a restart" if "pending" in entry else ""
        click.echo(f"{key}: override dropped, now {shown(entry.get('value'))} ({entry.get('source') or '-'}){later}")
