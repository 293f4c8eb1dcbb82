"""``llmctl metrics``: the metrics history as one sparkline per field.

``GET /api/monitoring/metrics`` answers buckets of ``interval`` (each field
the average of the samples in it); a bucket with no sample is missing from
the answer, and a field with no value in a bucket is null: both draw as a
space, so gaps in the history show as gaps in the chart.
"""

from __future__ import annotations

import datetime
import re
import shutil
from typing import Any

import click

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.output import print_json

BARS = "▁▂▃▄▅▆▇█"
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
INTERVALS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
# The shortest window each bucket length suits: a chart of tens of buckets, not thousands.
AUTO_INTERVAL = ((2 * 3600, "1m"), (86400, "5m"), (30 * 86400, "1h"))
TYPES = ("cpu", "memory", "gpu", "model")
LABEL_W = 15  # the longest field name the daemon has (gpu_memory_used)
STATS_W = 7   # each of min, avg, max


class Since(click.ParamType):
    """A duration such as ``90s``, ``30m``, ``1h`` or ``7d``, as seconds."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        """``"1h"`` -> 3600; anything else is a usage error."""
        if isinstance(value, int):
            return value
        m = re.fullmatch(r"\s*(\d+)\s*([smhd])\s*", str(value))
        if m is None or int(m.group(1)) == 0:
            self.fail(f"{value!r} is not a duration: a positive whole number and s, m, h or d (90s, 30m, 1h, 7d)",
                      param, ctx)
        return int(m.group(1)) * UNITS[m.group(2)]


def auto_interval(since_s: int) -> str:
    """The bucket length for a window: <=2h 1m, <=1d 5m, <=30d 1h, else 1d."""
    for limit, interval in AUTO_INTERVAL:
        if since_s <= limit:
            return interval
    return "1d"


def iso_z(t: datetime.datetime) -> str:
    """A UTC time as ``2024-01-01T12:00:00Z``."""
    return t.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ts(iso: str) -> float:
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def sparkline(values: list[float | None]) -> str:
    """One bar per value, scaled between the values' min and max; None is a space."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    lo, hi = min(known), max(known)
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif hi == lo:
            out.append(BARS[0] if hi == 0 else BARS[len(BARS) // 2])  # flat: a line, at the bottom when all 0
        else:
            out.append(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))])
    return "".join(out)


def fit(values: list[float | None], width: int) -> list[float | None]:
    """Exactly ``columns(len(values), width)`` columns: each bucket repeated when there are few (a 10-minute
    window stays readable), neighbouring buckets averaged when there are many (a column with no value: None)."""
    if not values:
        return []
    if len(values) <= width:
        return [v for v in values for _ in range(width // len(values))]
    out: list[float | None] = []
    for col in range(width):
        group = [v for v in values[col * len(values) // width:(col + 1) * len(values) // width] if v is not None]
        out.append(sum(group) / len(group) if group else None)
    return out


def columns(buckets: int, width: int) -> int:
    """How many columns :func:`fit` makes of ``buckets`` in at most ``width``."""
    return width if buckets > width else buckets * (width // buckets) if buckets else width


def timeline(rows: list[dict[str, Any]], start: float, end: float, step: int) -> list[float]:
    """The bucket start times from ``start`` to ``end`` (the answer's buckets begin at multiples of ``step``)."""
    first = start // step * step
    times = [first + i * step for i in range(int((end - first) // step) + 1)]
    # Should the daemon's buckets not fall on this grid, its own times are the timeline.
    grid = set(times)
    return times if all(_ts(r["timestamp"]) in grid for r in rows) else sorted(_ts(r["timestamp"]) for r in rows)


def series(rows: list[dict[str, Any]], times: list[float], name: str) -> list[float | None]:
    """The field ``name`` of each bucket of ``times`` (None where the bucket or its value is missing)."""
    by_time = {_ts(r["timestamp"]): r.get(name) for r in rows}
    return [by_time.get(t) for t in times]


def fields_of(rows: list[dict[str, Any]]) -> list[str]:
    """The figures the buckets carry, in the daemon's order."""
    names: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k not in ("timestamp", "models") and (v is None or isinstance(v, int | float)):
                names.setdefault(k)
    return list(names)


def fmt(v: float | None) -> str:
    """A figure in at most 7 characters, precise where it is small."""
    if v is None:
        return "-"
    if abs(v) >= 1e6:
        return f"{v:.2e}"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"


def chart_line(label: str, values: list[float | None], width: int) -> str:
    """``  label  ▁▃█  min avg max`` (min, avg and max of the buckets; the chart fitted to ``width``)."""
    known = [v for v in values if v is not None]
    chart = sparkline(fit(values, width)).ljust(width)
    if not known:
        return f"  {label:<{LABEL_W}} {chart} " + "no data".rjust(3 * STATS_W)
    stats = "".join(fmt(v).rjust(STATS_W) for v in (min(known), sum(known) / len(known), max(known)))
    return f"  {label:<{LABEL_W}} {chart} {stats}"


def render(data: dict[str, Any], since: str, width: int) -> list[str]:
    """The answer as text lines: a header, one chart per field (per model too), then the summary."""
    rows = data.get("metrics") or []
    step = INTERVALS.get(data.get("interval", ""), 300)
    start, end = _ts(data["start_time"]), _ts(data["end_time"])
    times = timeline(rows, start, end, step)
    chart_w = columns(len(times), max(16, width - 2 - LABEL_W - 1 - 1 - 3 * STATS_W))
    t0 = datetime.datetime.fromtimestamp(start, datetime.UTC)
    t1 = datetime.datetime.fromtimestamp(end, datetime.UTC)
    fmt_t = "%H:%M" if end - start <= 86400 else "%m-%d %H:%M"
    left, right = f"{t0:{fmt_t}}", f"{t1:{fmt_t}}Z"
    lines = [f"last {since} in {data.get('interval')} buckets, {t0:%Y-%m-%d %H:%M} to {t1:%Y-%m-%d %H:%M} UTC",
             f"  {'':<{LABEL_W}} {left}{right.rjust(max(1, chart_w - len(left)))} "
             + "".join(h.rjust(STATS_W) for h in ("min", "avg", "max"))]
    for name in fields_of(rows):
        lines.append(chart_line(name, series(rows, times, name), chart_w))
    models = sorted({m["model_name"] for r in rows for m in r.get("models") or []})
    for model in models:
        per_model = [{"timestamp": r["timestamp"], **next((m for m in r.get("models") or []
                                                           if m["model_name"] == model), {})} for r in rows]
        lines.append(f"  {model}")
        for name in fields_of(per_model):
            if name != "model_name":
                lines.append(chart_line(f"  {name}", series(per_model, times, name), chart_w))
    rt = (data.get("summary") or {}).get("avg_response_time")
    lines.append("avg response time: " + (f"{rt:.3f} s" if rt is not None else "- (no request finished in the window)"))
    return lines


@cli.command("metrics")
@click.option("--since", "since_s", type=Since(), default="1h", show_default=True,
              help="how far back: 90s, 30m, 1h, 7d")
@click.option("--type", "metric_type", type=click.Choice(TYPES),
              help="which figures (default: cpu, memory and gpu)")
@click.option("--interval", type=click.Choice(tuple(INTERVALS)),
              help="bucket length (default from --since: <=2h 1m, <=1d 5m, <=30d 1h, else 1d)")
@json_option
@click.pass_context
def metrics(ctx: click.Context, since_s: int, metric_type: str | None, interval: str | None, as_json: bool) -> None:
    """Charts of the metrics history: one sparkline per figure with its min, average and max."""
    now = datetime.datetime.now(datetime.UTC)
    params: dict[str, Any] = {"start_time": iso_z(now - datetime.timedelta(seconds=since_s)), "end_time": iso_z(now),
                              "interval": interval or auto_interval(since_s)}
    if metric_type:
        params["metric_type"] = metric_type
    data = get_client(ctx).request("GET", "/api/monitoring/metrics", params=params)
    if want_json(ctx, as_json):
        print_json(data)
        return
    label = _since_text(since_s)
    if not data.get("metrics"):
        hint = "is monitor.interval_s 0, or is there no GPU?" if metric_type == "gpu" else "is monitor.interval_s 0?"
        what = f"{metric_type} samples" if metric_type else "samples"
        click.echo(f"no {what} in the last {label} ({hint})")
        return
    for line in render(data, label, shutil.get_terminal_size((80, 24)).columns):
        click.echo(line)


def _since_text(seconds: int) -> str:
    """3600 -> ``1h`` (the largest unit that divides it)."""
    for unit in ("d", "h", "m"):
        if seconds % UNITS[unit] == 0:
            return f"{seconds // UNITS[unit]}{unit}"
    return f"{seconds}s"
