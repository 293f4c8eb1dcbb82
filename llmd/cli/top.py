"""``llmctl top``: the box, its deployments and the firing alerts, refreshed until Ctrl-C.

One frame is four answers of the daemon: ``GET /api/system/status``,
``GET /api/monitoring/performance?time_range=1h``, ``GET /metrics`` (the
per-deployment gauges and the completion-token counter) and
``GET /api/config/alerts``. Tokens per second is the counter's difference
between two frames over the time between them, so the first frame shows "-";
the daemon adds a request's tokens to the counter when it finishes, so a long
generation shows as a burst at its end rather than as a steady rate.
"""

from __future__ import annotations

import datetime
import math
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import click
import httpx

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.alerts import all_rules
from llmd.cli.client import Client, CliError
from llmd.cli.output import print_json

# The /metrics families a frame reads, and what each becomes in a deployment's row.
FAMILIES = {
    "llmd_requests_processing": "active",
    "llmd_requests_deferred": "queued",
    "llmd_completion_tokens_total": "completion_tokens",
}
# name{labels} value [timestamp]; label values may hold escaped quotes.
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
MODEL_STATES = ("running", "starting", "pending", "stopping", "stopped", "error")


def parse_metrics(text: str) -> dict[str, dict[str, float]]:
    """Prometheus text -> ``{model: {"active", "queued", "completion_tokens"}}`` for the families in FAMILIES."""
    out: dict[str, dict[str, float]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line.strip())
        if m is None or m.group(1) not in FAMILIES:
            continue
        labels = {k: _unescape(v) for k, v in _LABEL.findall(m.group(2) or "")}
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.setdefault(labels.get("model", ""), {})[FAMILIES[m.group(1)]] = value
    return out


def _unescape(value: str) -> str:
    return value.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")


@dataclass
class Frame:
    """The daemon's answers at one moment, and the token rates against the frame before."""

    at: float
    status: dict[str, Any]
    performance: dict[str, Any]
    deployments: dict[str, dict[str, float]]
    rules: list[dict[str, Any]]
    tokens_per_s: dict[str, float] = field(default_factory=dict)

    def firing(self) -> list[dict[str, Any]]:
        """The rules firing now."""
        return [r for r in self.rules if r.get("state") == "firing"]

    def as_json(self) -> dict[str, Any]:
        """The raw answers (the /metrics text as its parsed per-deployment figures)."""
        return {"status": self.status, "performance": self.performance, "deployments": self.deployments,
                "alerts": self.rules, "firing": self.firing(), "tokens_per_s": self.tokens_per_s}


def read_frame(client: Client, before: Frame | None) -> Frame:
    """Ask the daemon for one frame; ``before`` gives the token counters to take the rate from."""
    status = client.request("GET", "/api/system/status")
    performance = client.request("GET", "/api/monitoring/performance", params={"time_range": "1h"})
    text = _text(client, "/metrics")
    at = time.monotonic()  # when the counters were read, not when the frame was done
    frame = Frame(at, status, performance, parse_metrics(text), all_rules(client))
    if before is not None and frame.at > before.at:
        for model, now in frame.deployments.items():
            prev = before.deployments.get(model, {}).get("completion_tokens")
            cur = now.get("completion_tokens")
            if cur is not None:
                # A model with no counter yet (no request since start) had 0 tokens; a counter that went down
                # means the daemon restarted between frames: count from 0 again.
                delta = cur - (prev or 0.0)
                frame.tokens_per_s[model] = (delta if delta >= 0 else cur) / (frame.at - before.at)
            elif prev is None:
                frame.tokens_per_s[model] = 0.0
    return frame


def _text(client: Client, path: str) -> str:
    """A text answer (``Client.request`` reads JSON); failures become one line like the client's."""
    try:
        resp = client.http.get(path)
    except httpx.HTTPError as exc:
        raise CliError(f"request to llmd failed: {exc}") from None
    if resp.status_code >= 400:
        raise CliError(f"GET {path}: HTTP {resp.status_code}")
    return resp.text


def _uptime(seconds: float) -> str:
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return f"{d}d{h:02d}h{m:02d}m" if d else f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def _ago(iso: str | None) -> str:
    """``2024-01-01T12:00:00Z`` -> ``12:00:00Z (5m ago)``."""
    if not iso:
        return "-"
    try:
        then = datetime.datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    secs = max(0.0, (datetime.datetime.now(datetime.UTC) - then).total_seconds())
    return f"{then:%H:%M:%S}Z ({_uptime(secs)} ago)"


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def render(frame: Frame) -> Any:
    """One frame as a rich renderable, narrow enough for 80 columns."""
    # rich loads only when a frame is drawn: llmctl's other commands start faster without it
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    s = frame.status
    res = s.get("resources") or {}
    colour = {"healthy": "green", "degraded": "yellow"}.get(s.get("status", ""), "red")
    head = Text.assemble(("llmd ", "bold"), f"{s.get('version', '?')}  ", (s.get("status", "?"), f"bold {colour}"),
                         f"  up {_uptime(s.get('uptime', 0))}  cpu {_num(res.get('cpu_percent'))}%"
                         f"  mem {_num(res.get('memory_percent'))}%  disk {_num(res.get('disk_percent'))}%")
    models = s.get("models") or {}
    counts = ", ".join(f"{models[k]} {k}" for k in MODEL_STATES if models.get(k))
    lines: list[Any] = [head, Text(f"models: {models.get('total', 0)} ({counts or 'none deployed'})")]
    gpus = s.get("gpu") or []
    if not gpus:
        lines.append(Text(f"gpu: none ({s.get('gpu_reason') or 'not reported'})", style="dim"))
    for g in gpus:
        lines.append(Text(f"gpu{g.get('id')} {g.get('name', '')}: {_num(g.get('utilization'))}% busy, "
                          f"{g.get('memory_used', '-')}/{g.get('memory_total', '-')} MiB, "
                          f"{g.get('temperature', '-')}°C"))

    perf = {m["model_name"]: m for m in frame.performance.get("models", [])}
    table = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
    table.add_column("DEPLOYMENT", overflow="fold", max_width=28)
    for name in ("ACTIVE", "QUEUED", "TOK/S", "REQ 1h", "AVG s", "ERR %"):
        table.add_column(name, justify="right", no_wrap=True)
    for model in sorted(set(frame.deployments) | set(perf)):
        d = frame.deployments.get(model, {})
        p = perf.get(model, {})
        rate = frame.tokens_per_s.get(model)
        err = p.get("error_rate")
        table.add_row(model, _count(d.get("active")), _count(d.get("queued")), _num(rate),
                      str(p.get("total_requests", 0)), _num(p.get("avg_response_time"), 2),
                      _num(None if err is None else err * 100))
    lines.append(Text(""))
    lines.append(table if table.row_count else Text("no deployments", style="dim"))

    lines.append(Text(""))
    firing = frame.firing()
    if not firing:
        lines.append(Text("alerts: none firing", style="green"))
    else:
        alerts = Table(box=None, header_style="bold red", pad_edge=False)
        alerts.add_column("FIRING", overflow="fold", max_width=34)
        alerts.add_column("SEVERITY", no_wrap=True)
        alerts.add_column("SINCE", no_wrap=True)
        for r in firing:
            alerts.add_row(r.get("name") or r.get("id", "?"), r.get("severity", "-"), _ago(r.get("since")))
        lines.append(alerts)
    return Group(*lines)


def _count(v: float | None) -> str:
    return "-" if v is None else str(int(v))


@cli.command("top")
@click.option("--interval", type=click.FloatRange(0.2), default=2.0, show_default=True,
              help="seconds between frames")
@click.option("--once", is_flag=True, help="print one frame and exit (also when stdout is not a terminal)")
@json_option
@click.pass_context
def top(ctx: click.Context, interval: float, once: bool, as_json: bool) -> None:
    """A live view of the box, its deployments and the alerts firing; Ctrl-C ends it.

    Tokens per second are measured between two frames, so the first frame
    (and ``--once``) shows "-".
    """
    from rich.console import Console

    client = get_client(ctx)
    frame = read_frame(client, None)
    if want_json(ctx, as_json):
        print_json(frame.as_json())
        return
    console = Console()
    if once or not sys.stdout.isatty():
        console.print(render(frame))
        return
    from rich.live import Live

    try:
        with Live(render(frame), console=console, auto_refresh=False, screen=False) as live:
            while True:
                time.sleep(interval)
                frame = read_frame(client, frame)
                live.update(render(frame), refresh=True)
    except KeyboardInterrupt:
        return  # Ctrl-C is how top ends, not a failure
