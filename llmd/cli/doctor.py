"""``llmctl doctor``: check the box and the daemon, and say what to fix.

Ten checks, each a row with ``ok``, ``warn`` or ``fail``, the figures seen and,
for a problem, one line of what to do. llmctl runs on the box, so systemd, the
clock's synchronization, ``nvidia-smi``, the free RAM and the hub's reachability
are looked at here; everything about the daemon comes from its HTTP answers
(llmctl may not import the daemon's code): ``GET /llmd/v1/status``,
``/api/system/status``, ``/api/system/gpu``, ``/api/system/resources``,
``/api/config``, and ``GET /health`` on its TCP listener. When the daemon does
not answer on its socket, the checks that need it are skipped.
"""

from __future__ import annotations

import dataclasses
import email.utils
import ipaddress
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import click
import httpx
import psutil

from llmd.cli import cli, get_client, json_option, want_json
from llmd.cli.client import Client, CliError
from llmd.cli.output import human_size, print_json, table
from llmd.config import DEFAULT_CONFIG_FILE

CHECKS = ("service", "socket", "tcp", "auth", "disk", "memory", "models", "gpu", "hub", "clock")
SKIPPED = "skipped: the daemon does not answer"
DAEMON_TIMEOUT_S = 15.0  # one slow answer must not hang the doctor for the client's usual 600 s
PROBE_TIMEOUT_S = 5.0  # the TCP listener, the hub, each command run
MIB = 1 << 20
GIB = 1 << 30
CLOCK_SKEW_S = 5.0
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
# systemctl is-enabled answers under which the unit starts at boot (or is pulled in by another unit).
STARTS_AT_BOOT = ("enabled", "enabled-runtime", "static", "indirect", "generated", "alias", "linked", "linked-runtime")


@dataclass
class Check:
    """One row of the report: ``status`` is ok, warn or fail; ``fix`` one line of what to do (or a note)."""

    name: str
    status: str
    detail: str
    fix: str | None = None


@dataclass
class Probe:
    """The socket check, and what the daemon answered there (None when it did not)."""

    check: Check
    answered: bool = False  # an HTTP answer came back, even a refusal
    status: dict[str, Any] | None = None
    date: str | None = None  # the answer's Date header
    local_time: float = 0.0  # llmctl's clock halfway through the request


class Answers:
    """The daemon's answers, each asked for once: several checks read the same one."""

    def __init__(self, client: Client, status: dict[str, Any]) -> None:
        self.client = client
        self.status = status
        self._cache: dict[str, Any] = {}

    def get(self, path: str) -> Any:
        """The JSON of ``GET path``; raises :class:`CliError` as every llmctl request does."""
        if path not in self._cache:
            self._cache[path] = self.client.request("GET", path)
        return self._cache[path]

    def setting(self, key: str) -> Any:
        """The value in force of one setting (``section.key``) from ``GET /api/config``."""
        return self.get("/api/config")["settings"][key]["value"]

    @property
    def local(self) -> bool:
        """Whether the daemon runs on this box (its socket, or a loopback URL): then psutil here sees its RAM."""
        return self.client.url is None or is_loopback(urlsplit(self.client.url).hostname or "")


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    """``127.0.0.1:8000``, ``[::1]:8000`` or ``::1:8000`` (the status writes host:port unbracketed) -> host, port."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def run_command(*argv: str) -> tuple[int, str] | None:
    """Run a short command; its exit status and its output (stdout, else stderr), or None when it cannot run."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.returncode, (proc.stdout.strip() or proc.stderr.strip())


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f} %" if whole else "-"


# -- the checks ------------------------------------------------------------------------------------------------------

def check_service(answers: bool) -> Check:
    """systemd's view of llmd.service; ``answers``: whether a daemon answered on the socket."""
    if shutil.which("systemctl") is None or not Path("/run/systemd/system").exists():
        # Containers and dev boxes run llmd by hand; that is fine as long as it answers.
        if answers:
            return Check("service", "ok", "not under systemd (started by hand?)")
        return Check("service", "warn", "not under systemd (started by hand?), and no daemon answers",
                     "start llmd (by hand, or 'make run' in a checkout)")
    active = (run_command("systemctl", "is-active", "llmd") or (1, "unknown"))[1] or "unknown"
    enabled = (run_command("systemctl", "is-enabled", "llmd") or (1, ""))[1]
    if enabled in ("", "not-found") or enabled.startswith("Failed"):
        if answers:
            return Check("service", "ok", "systemd has no llmd unit: not under systemd (started by hand?)")
        return Check("service", "warn", "systemd has no llmd unit, and no daemon answers",
                     "install llmd's package (it brings llmd.service), or start llmd by hand")
    detail = f"llmd.service is {active}, {enabled}"
    if active in ("active", "reloading"):
        if enabled in STARTS_AT_BOOT:
            return Check("service", "ok", detail)
        return Check("service", "warn", detail, "sudo systemctl enable llmd (else it does not start at boot)")
    if active == "activating":
        return Check("service", "warn", detail, "it is starting: wait, or read journalctl -u llmd -e")
    if answers:
        # Not the unit, yet something answers: a daemon started by hand gets no restart on failure or at boot.
        return Check("service", "warn", f"{detail}, but a daemon answers (started by hand?)",
                     "stop the daemon started by hand, then sudo systemctl start llmd")
    if enabled == "masked":
        return Check("service", "fail", detail, "sudo systemctl unmask llmd; sudo systemctl start llmd")
    return Check("service", "fail", detail, "sudo systemctl start llmd; journalctl -u llmd -e")


def probe_socket(client: Client) -> Probe:
    """``GET /llmd/v1/status`` where llmctl talks to the daemon (its Unix socket, or ``--url``)."""
    where = client.url or str(client.socket_path)
    before = time.time()
    try:
        resp = client.http.get("/llmd/v1/status")
    except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError):
        # The client's own message: permission denied (with the group advice) or not running (with how to start it).
        advice = str(client._not_running())
        path = client.socket_path
        if client.url is not None:
            seen = f"nothing answers at {client.url}"
        elif path is not None and not path.exists():
            seen = f"no socket at {path}"
        elif path is not None and not os.access(path, os.R_OK | os.W_OK):
            seen = f"permission denied on {path}"
        else:
            seen = f"nothing answers on {path} (a stale socket?)"
        return Probe(Check("socket", "fail", seen, advice))
    except httpx.HTTPError as exc:
        return Probe(Check("socket", "fail", f"{where}: {type(exc).__name__}: {exc}",
                           "the daemon is stuck or overloaded: journalctl -u llmd -e"))
    after = time.time()
    if resp.status_code >= 400:
        fix = ("give llmctl an admin key: LLMCTL_API_KEY=... (llmctl keys create --name NAME --scope admin, "
               "on the box)" if client.url is not None and resp.status_code in (401, 403) else "journalctl -u llmd -e")
        return Probe(Check("socket", "fail", f"{where}: GET /llmd/v1/status: {client._error_text(resp)}", fix), True)
    try:
        status = resp.json()
        detail = f"llmd {status['version']} (pid {status['pid']}) answers on {where}"
    except (ValueError, KeyError, TypeError):
        return Probe(Check("socket", "fail", f"{where} answers, but not as llmd does (HTTP {resp.status_code})",
                           "is another program on that socket or port? check --socket / --url"), True)
    return Probe(Check("socket", "ok", detail), True, status, resp.headers.get("date"), (before + after) / 2)


def check_tcp(a: Answers) -> Check:
    """The daemon's TCP listener answers ``GET /health`` from this box; loopback-only is noted, not a failure."""
    host, port = split_listen(a.status["listen"])
    # A wildcard listener is reached here through loopback.
    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    url = f"http://[{target}]:{port}/health" if ":" in target else f"http://{target}:{port}/health"
    try:
        # trust_env off: an HTTP(S)_PROXY of the shell must not carry a request meant for this box
        with httpx.Client(timeout=PROBE_TIMEOUT_S, trust_env=False) as http:
            resp = http.get(url)
        body = resp.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Check("tcp", "fail", f"{a.status['listen']}: {url} does not answer ({type(exc).__name__})",
                     f"a firewall or another program on port {port}? check [server] in {DEFAULT_CONFIG_FILE} "
                     f"and journalctl -u llmd -e")
    if resp.status_code != 200 or not isinstance(body, dict) or "model_loaded" not in body:
        return Check("tcp", "fail", f"{url} answers HTTP {resp.status_code}, not as llmd does",
                     f"another program holds port {port}? check [server] port in {DEFAULT_CONFIG_FILE}")
    if is_loopback(host):
        return Check("tcp", "ok", f"{a.status['listen']} answers /health; loopback only",
                     f'LAN clients cannot reach it: set [server] host = "0.0.0.0" in {DEFAULT_CONFIG_FILE} '
                     f"and restart")
    return Check("tcp", "ok", f"{a.status['listen']} answers /health (via {target}); reachable from the LAN")


def check_auth(a: Answers) -> Check:
    """Auth is on whenever the TCP listener is reachable from other machines."""
    auth = a.status["health"]["auth"]
    host, _ = split_listen(a.status["listen"])
    detail = f"{'on' if auth['enabled'] else 'off'}: {auth.get('reason') or auth.get('mode')}"
    if auth.get("failed_attempts"):
        detail += f"; {auth['failed_attempts']} refused credentials"
    if not auth["enabled"] and not is_loopback(host):
        return Check("auth", "warn", detail,
                     f'anyone on the LAN may use and administer llmd: set [auth] mode = "auto" in '
                     f"{DEFAULT_CONFIG_FILE}, restart, and hand out keys with llmctl keys create")
    return Check("auth", "ok", detail)


def check_disk(a: Answers) -> Check:
    """Free space of the file system of the models (under the state directory) against the download margin."""
    disk = a.get("/api/system/status")["checks"]["disk"]
    path = disk["path"]
    if disk["status"] == "error" or "free_bytes" not in disk:
        return Check("disk", "fail", f"{path}: {disk.get('message', 'unreadable')}",
                     f"make {path} exist and readable by llmd's user")
    free, margin = disk["free_bytes"], disk["margin_bytes"]
    used = _disk_used_percent(a)
    detail = f"{human_size(free)} free under {path} (margin {human_size(margin)}), {used:.0f} % used"
    fix = f"free space under {path}: remove models with llmctl rm, or raise the disk"
    if free < margin:
        return Check("disk", "fail", detail, fix)
    if used > 90:
        return Check("disk", "warn", detail, fix)
    return Check("disk", "ok", detail)


def _disk_used_percent(a: Answers) -> float:
    # As df counts it, used / (used + free): /api/system/status's disk_percent is used / total, which
    # leaves out the blocks reserved for root and so reads low on ext4 (and on some overlays, much lower).
    try:
        disk = a.get("/api/system/resources")["data"]["disk"]
        if disk["used_gb"] + disk["free_gb"] > 0:
            return 100 * disk["used_gb"] / (disk["used_gb"] + disk["free_gb"])
    except (CliError, KeyError, TypeError):
        pass
    return float(a.get("/api/system/status")["resources"]["disk_percent"])


def _ram(a: Answers) -> tuple[int, int]:
    """The box's RAM and how much is available, in bytes."""
    if a.local:
        vm = psutil.virtual_memory()  # llmctl runs on the daemon's box: exact figures, no request
        return vm.total, vm.available
    mem = a.get("/api/system/resources")["data"]["memory"]
    return int(mem["total_gb"] * GIB), int(mem["available_gb"] * GIB)


def check_memory(a: Answers) -> Check:
    """The deployments' memory against the memory budget, the RAM and the memory available."""
    health = a.status["health"]
    deployments = health["deployments"]
    # memory_bytes is what the budget counts for each: the larger of its estimate and its measurement
    need = sum(d.get("memory_bytes") or 0 for d in deployments)
    total, available = _ram(a)
    budget_mb = int(a.setting("deployments.memory_budget_mb") or 0)
    # The daemon says what its budget is (derived from the RAM when the setting is 0); an older one does not
    budget = health.get("memory_budget_bytes") or (budget_mb * MIB if budget_mb > 0 else int(total * 0.8))
    source = "deployments.memory_budget_mb" if budget_mb > 0 else "derived from the RAM"
    count = len(deployments)
    detail = (f"{count} deployment{'s need' if count != 1 else ' needs'} {human_size(need) if need else '0 B'} of "
              f"{human_size(budget)} ({source}, {_percent(need, budget)}); RAM {human_size(total)}, "
              f"{human_size(available)} available")
    if need > total:
        return Check("memory", "fail", detail, "the models need more than the RAM there is: stop some "
                     "(llmctl stop MODEL), or use smaller quantizations or contexts")
    if budget_mb > 0 and budget > total:
        return Check("memory", "warn", detail, "deployments.memory_budget_mb is more than the RAM: lower it, "
                     "or set 0 to derive it from the RAM (llmctl config set deployments.memory_budget_mb 0; restart)")
    if need > 0.9 * budget:
        return Check("memory", "warn", detail, "the models fill the memory budget: a new one will evict others; "
                     "stop unused ones (llmctl stop MODEL) or raise deployments.memory_budget_mb")
    if total and available < 0.1 * total:
        return Check("memory", "warn", detail, "little RAM is left to the box: other processes compete "
                     "with the models (see top); stop unused models or what else runs here")
    return Check("memory", "ok", detail)


def check_models(a: Answers) -> Check:
    """The default model is loaded; a deployment in error is reported with its error."""
    health = a.status["health"]
    default = health.get("default_model") or ""
    deployments = health["deployments"]
    dep = next((d for d in deployments if d["model"] == default), None)
    broken = [d for d in deployments if d["state"] == "error" and d is not dep]
    if health.get("shutting_down"):
        return Check("models", "warn", "the daemon is shutting down", "wait for systemd to restart it, "
                     "or sudo systemctl start llmd")
    if health.get("store") == "error":
        return Check("models", "fail", "the database does not answer", "journalctl -u llmd -e; "
                     "is the state directory's disk full or read-only?")
    if dep is not None and dep["state"] == "error":
        return Check("models", "fail", f"{default}: error: {dep.get('error') or 'no message'}",
                     f"read llmctl logs {default}, fix the cause, then llmctl start {default}")
    if health["status"] == "error":
        return Check("models", "fail", f"health is error (default model {default or '-'})", "journalctl -u llmd -e")
    if not health["model_loaded"]:
        state = dep["state"] if dep is not None else "not deployed"
        return Check("models", "warn", f"default model {default or '(none)'} is {state}",
                     "still loading, or models.load_default is false: llmctl start " + (default or "MODEL"))
    detail = f"{default} loaded on {dep.get('device') or '-'}" if dep else f"{default} loaded"
    if len(deployments) > 1:
        detail += f"; {len(deployments)} deployments"
    if broken:
        names = ", ".join(d["model"] for d in broken)
        return Check("models", "warn", f"{detail}; in error: {names} ({broken[0].get('error') or 'no message'})",
                     f"read llmctl logs {broken[0]['model']}, fix the cause, then llmctl start {broken[0]['model']}")
    return Check("models", "ok", detail)


def check_gpu(a: Answers) -> Check:
    """The GPUs the daemon sees through NVML, and whether the driver sees some it does not."""
    gpu = a.get("/api/system/gpu")
    gpus = gpu.get("gpus") or []
    if gpus:
        names = ", ".join(f"{g.get('id')}: {g.get('name')} ({g.get('memory_total')} MiB)" for g in gpus)
        return Check("gpu", "ok", f"{names}; driver {gpu.get('driver_version') or '?'}, "
                                  f"CUDA {gpu.get('cuda_version') or '?'}")
    reason = gpu.get("reason") or "no reason given"
    if shutil.which("nvidia-smi") is not None:
        ran = run_command("nvidia-smi", "-L")
        listed = [line for line in (ran[1] if ran else "").splitlines() if line.startswith("GPU ")]
        # "No devices were found" is a box without a GPU; any other failure is a driver that is there but broken.
        if listed or (ran is not None and ran[0] != 0 and "No devices" not in ran[1]):
            seen = f"{len(listed)} GPU(s)" if listed else f"an error ({_first_line(ran[1]) if ran else '?'})"
            return Check("gpu", "warn", f"nvidia-smi lists {seen}, llmd sees none: {reason}",
                         "the driver is there but llmd sees no GPU: check the CUDA package and the unit's "
                         "device access")
    return Check("gpu", "ok", f"no NVIDIA GPU (CPU inference): {reason}")


def check_hub(a: Answers) -> Check:
    """The model hub the daemon downloads from answers from this box (never a failure: offline boxes are normal)."""
    # The daemon's setting; when empty the daemon reads its own $HF_ENDPOINT, which it does not report:
    # llmctl's environment is the nearest guess.
    endpoint = (a.setting("downloads.hf_endpoint") or os.environ.get("HF_ENDPOINT")
                or DEFAULT_HF_ENDPOINT).rstrip("/")
    host = urlsplit(endpoint).netloc or endpoint
    fix = f"the box cannot reach {host}: downloads will fail; models already here keep working"
    started = time.monotonic()
    try:
        # trust_env on (the default): the daemon's downloads go through the proxy of the environment too
        with httpx.Client(timeout=PROBE_TIMEOUT_S) as http:
            resp = http.head(endpoint)
    except (httpx.HTTPError, ValueError) as exc:
        return Check("hub", "warn", f"{endpoint} does not answer ({type(exc).__name__})", fix)
    took = time.monotonic() - started
    if resp.status_code >= 500:
        return Check("hub", "warn", f"{endpoint} answers HTTP {resp.status_code}", fix)
    return Check("hub", "ok", f"{endpoint} answers (HTTP {resp.status_code}, {took:.1f} s)")


def check_clock(probe: Probe) -> Check:
    """The daemon's clock (its Date header) against llmctl's, and NTP synchronization (timedatectl)."""
    notes: list[str] = []
    problems: list[str] = []
    try:
        when = email.utils.parsedate_to_datetime(probe.date) if probe.date else None
    except (TypeError, ValueError):
        when = None
    if when is None:
        notes.append(f"the daemon's Date header is {'unreadable' if probe.date else 'missing'}")
    else:
        # The Date header has whole seconds: a skew under 1 s is its rounding.
        skew = when.timestamp() - probe.local_time
        notes.append(f"the daemon's clock is {round(skew):+d} s from llmctl's")
        if abs(skew) > CLOCK_SKEW_S:
            problems.append("the daemon's and llmctl's clocks differ (different machines?): "
                            "enable systemd-timesyncd on both")
    if shutil.which("timedatectl") is not None:
        ran = run_command("timedatectl", "show", "-p", "NTPSynchronized", "--value")
        if ran is not None and ran[0] == 0 and ran[1] in ("yes", "no"):
            notes.append(f"NTP synchronized: {ran[1]}")
            if ran[1] == "no":
                problems.append("the clock is not synchronized: tokens and TLS checks may fail; "
                                "enable systemd-timesyncd")
        else:
            # e.g. a container without systemd: timedatectl cannot ask timedated; not a problem of the box
            notes.append(f"NTP state unknown (timedatectl {'exited ' + str(ran[0]) if ran else 'did not run'})")
    else:
        notes.append("NTP state unknown (no timedatectl)")
    return Check("clock", "warn" if problems else "ok", "; ".join(notes), "; ".join(problems) or None)


# -- the report ------------------------------------------------------------------------------------------------------

def guarded(name: str, check: Callable[[Answers], Check], a: Answers) -> Check:
    """Run one daemon-side check; a refused request or an answer of an unknown shape is that row's warning, so
    one check never takes the report down."""
    try:
        return check(a)
    except CliError as exc:
        return Check(name, "warn", f"the daemon did not answer this check: {exc}", "journalctl -u llmd -e")
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return Check(name, "warn", f"the daemon's answer has an unexpected shape ({type(exc).__name__}: {exc})",
                     "use llmctl of the same version as the daemon (llmctl --version, llmctl status)")


def run_checks(client: Client) -> list[Check]:
    """Every check, in the order of CHECKS."""
    probe = probe_socket(client)
    rows = [check_service(probe.answered), probe.check]
    if probe.status is None:
        return rows + [Check(name, "warn", SKIPPED) for name in CHECKS[2:]]
    a = Answers(client, probe.status)
    daemon_side: list[tuple[str, Callable[[Answers], Check]]] = [
        ("tcp", check_tcp), ("auth", check_auth), ("disk", check_disk), ("memory", check_memory),
        ("models", check_models), ("gpu", check_gpu), ("hub", check_hub)]
    rows += [guarded(name, check, a) for name, check in daemon_side]
    rows.append(check_clock(probe))
    return rows


def summary(checks: list[Check]) -> str:
    """The report's last line: ``all good``, or the problems (warnings and failures) and the checks skipped."""
    skipped = sum(1 for c in checks if c.detail == SKIPPED)
    problems = sum(1 for c in checks if c.status != "ok" and c.detail != SKIPPED)
    if not problems and not skipped:
        return "all good"
    line = f"{problems} problem{'s' if problems != 1 else ''}"
    return line + (f" ({skipped} checks skipped)" if skipped else "")


@cli.command("doctor")
@json_option
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check the box and the daemon, and say what to fix.

    Exits 1 when a check fails; warnings (an unreachable hub, a loopback-only
    listener's note, ...) leave it 0.
    """
    client = get_client(ctx)
    client.http.timeout = httpx.Timeout(DAEMON_TIMEOUT_S)
    checks = run_checks(client)
    failed = [c.name for c in checks if c.status == "fail"]
    if want_json(ctx, as_json):
        print_json({"checks": [dataclasses.asdict(c) for c in checks], "ok": not failed})
    else:
        table([[c.name, c.status, c.detail] for c in checks], ["CHECK", "STATUS", "DETAIL"])
        advice = [c for c in checks if c.fix]
        if advice:
            click.echo("")
            for c in advice:
                click.echo(f"{c.name}: {'note: ' if c.status == 'ok' else ''}{c.fix}")
        click.echo(summary(checks))
    if failed:
        # main() turns this into exit status 1 (ctx.exit would not: llmctl runs click outside standalone mode)
        raise CliError(f"{len(failed)} check{'s' if len(failed) != 1 else ''} failed: {', '.join(failed)}")
