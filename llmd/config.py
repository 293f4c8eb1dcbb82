"""Typed settings of llmd.

Precedence, lowest first: built-in defaults < the config file
(``/etc/llmd/llmd.toml`` or ``--config``) < ``LLMD_<SECTION>_<KEY>``
environment variables < command-line flags. :class:`Config` remembers where
every value came from so that ``llmd --print-config`` can show it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from llmd.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("/etc/llmd/llmd.toml")
# Settings shown as "********" (when set) by --print-config and GET /api/config.
SECRET_KEYS = ("alerts.smtp_password", "alerts.webhook_secret")
# The KV-cache precisions a deployment may use (engine.kv_cache_type, a start's kv_cache_type).
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")


@dataclass
class ServerConfig:
    """Where and how the HTTP server listens."""

    host: str = "127.0.0.1"
    port: int = 8000
    # Empty means <runtime_dir>/llmd.sock; "none" disables the Unix socket.
    unix_socket: str = ""
    socket_mode: str = "0660"
    graceful_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_body_bytes: int = 4 * 1024 * 1024
    # Most requests in one POST /api/v1/batch/generate; more is a 400.
    max_batch_size: int = 16


@dataclass
class PathsConfig:
    """Directories; empty values follow systemd's variables, then XDG."""

    state_dir: str = ""
    runtime_dir: str = ""


@dataclass
class EngineConfig:
    """llama.cpp settings applied to every deployment unless a model overrides them."""

    n_ctx: int = 4096  # tokens per slot (one request); 0 means the model's own training context
    n_threads: int = 0  # 0 means one per physical core
    n_batch: int = 512  # most tokens in one decode step, all slots together
    parallel: int = 4  # sequence slots: requests generated at the same time
    prefill_chunk: int = 256  # prompt tokens of one request per step, so long prompts never stall others
    kv_unified: bool = False  # one KV buffer shared by all slots (False: one per slot, faster here)
    ngram_draft_tokens: int = 0  # n-gram speculation for a lone stream: draft tokens per step (0: off)
    kv_cache_type: str = "f16"  # f16, q8_0 or q4_0: K and V cache precision (quantized: less memory per slot)
    # Layers on the GPU: -2 decides per start (all when a GPU build finds a GPU whose free memory holds the
    # model, else none), -1 all, 0 none (CPU), N the first N.
    n_gpu_layers: int = -2
    queue_size: int = 16  # requests waiting per deployment before 503 + Retry-After
    load_wait_s: float = 0.0  # how long a request waits for a model that is loading
    # A decode step that takes longer stops the systemd watchdog pings (the daemon is restarted); 0: never.
    stall_timeout_s: float = 120.0


@dataclass
class ModelsConfig:
    """Which model is served by default and how models are found."""

    default: str = "smollm2-135m-instruct"
    load_default: bool = True
    discover_bundled: bool = True


@dataclass
class SamplingConfig:
    """Default sampling values, used where a request leaves a field out."""

    max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.9
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.1


@dataclass
class RateLimitConfig:
    """Per-client token buckets on ``/api/v1/*`` and ``/v1/*`` (see ``llmd.core.ratelimit``)."""

    # "auto": on unless server.host is a loopback address; "on"; "off".
    enabled: str = "auto"
    requests_per_minute: int = 300  # refill rate of each client's bucket
    burst: int = 100  # bucket size: requests a client may make at once


@dataclass
class AuthConfig:
    """Who may call what (see ``llmd.core.auth`` and docs/security.md)."""

    # "auto": off when every TCP listener is a loopback address, else on; "on"; "off".
    mode: str = "auto"
    token_ttl_s: int = 3600  # lifetime of a JWT from POST /api/auth/token
    public_docs: bool = True  # /docs, /redoc and /openapi.json need no credentials
    # /metrics without credentials: "loopback" (only from 127.0.0.1/::1), "on" or "off".
    public_metrics: str = "loopback"
    unix_group: str = "llmd"  # members of this group are admin over the Unix socket
    # Failed logins and refused credentials are answered after a delay that doubles per
    # failure from the same source (0.1 s, 0.2 s, ...) up to this many seconds.
    max_failure_delay_s: float = 5.0


@dataclass
class LimitsConfig:
    """Per-request and per-client limits; each breach is a 4xx in the dialect's envelope."""

    max_tokens: int = 4096  # the largest max_tokens a request may ask for
    max_n: int = 8  # the most choices (OpenAI's n) one request may ask for; each takes a slot
    max_streams_per_client: int = 8  # open SSE responses and WebSockets per client
    read_timeout_s: float = 60.0  # a request body that trickles slower than this is dropped


@dataclass
class DownloadsConfig:
    """Model downloads from Hugging Face and Ollama registries."""

    max_concurrent: int = 2  # downloads transferring at once; the rest wait as pending
    # Which GGUF file of a repository to take when the request names none, best first.
    quantization_preference: str = "Q4_K_M,Q4_0,Q8_0"
    disk_margin_mb: int = 512  # free space that must remain after a download
    retries: int = 5  # network errors retried (with backoff) before a download fails
    # Hugging Face endpoint; empty means $HF_ENDPOINT, else https://huggingface.co.
    hf_endpoint: str = ""
    ollama_registry: str = "https://registry.ollama.ai"
    retry_backoff_s: float = 1.0  # first wait after a network error; doubles per retry, at most 30 s
    progress_interval_s: float = 0.25  # least time between two progress events of one task


@dataclass
class HubConfig:
    """Model search: the catalogue cache behind /api/models/search and friends."""

    cache_ttl_s: int = 3600  # cached answers younger than this are served without asking the hub
    timeout_s: float = 10.0  # per request to the hub
    search_limit: int = 100  # most models one search asks the hub for (pages are cut from these)
    sync_limit: int = 500  # most models POST /api/models/sync caches per source
    gguf_only: bool = True  # search, trending and sync list only repositories tagged gguf


@dataclass
class DeploymentsConfig:
    """How many models may be loaded at once, and for how long they stay idle."""

    # Memory that loaded models may use together, in MiB; 0 derives it from the RAM, leaving 20% (at least
    # 1 GiB) to the system (docs/deployments.md). GPUs always keep 10% (at least 512 MiB) of their own.
    memory_budget_mb: int = 0
    keep_alive_s: float = 1800.0  # an idle deployment is unloaded after this; 0 means never
    pin_default: bool = True  # the default model is pinned: never evicted or unloaded for idleness
    restore: bool = True  # deployments that served when the daemon stopped start again at the next start
    # A request for a registered model that is not loaded loads it (evicting idle deployments as a start
    # does), waiting up to load_on_demand_wait_s; past that it is a 503 with Retry-After and the load goes on.
    load_on_demand: bool = True
    load_on_demand_wait_s: float = 120.0
    # Command line that starts an external vLLM server; {model}, {port}, {max_model_len}
    # and {gpu_memory_utilization} are filled in.
    vllm_command: str = (
        "vllm serve {model} --host 127.0.0.1 --port {port} --max-model-len {max_model_len}"
        " --gpu-memory-utilization {gpu_memory_utilization}")
    external_start_timeout_s: float = 600.0  # how long an external engine may take to answer /health
    # Deployments that may run at once (the LLM Inference Service API's max_concurrent_models); 0: only
    # the memory budget bounds them. A start beyond it evicts the least recently used idle one, or fails.
    max_running: int = 0
    # What a start and a stop of the LLM Inference Service API wait when the request names no timeout
    # (its default_model_timeout, and the document's defaults).
    start_timeout_s: float = 300.0
    stop_timeout_s: float = 60.0
    # How often running deployments are checked (an external engine's /health; a state change is a
    # model_status_update on /ws/monitor): the document's health_check_interval.
    health_check_interval_s: float = 60.0


@dataclass
class MonitorConfig:
    """The metrics history: how often the box is sampled, and how long each resolution is kept."""

    interval_s: float = 30.0  # seconds between samples (CPU, memory, disk, load, GPUs, deployments); 0: none
    keep_raw_h: float = 24.0  # raw samples, hours
    keep_1m_d: float = 7.0  # 1-minute buckets, days
    keep_5m_d: float = 30.0  # 5-minute buckets, days
    keep_1h_d: float = 365.0  # 1-hour buckets, days
    keep_1d_d: float = 0.0  # 1-day buckets, days; 0 keeps them forever


@dataclass
class AlertsConfig:
    """Alert notifications, and the built-in threshold rules (the document's alert_thresholds).

    A threshold of 0 turns its built-in rule off. Channels are ``journal``, ``webhook`` and ``email``.
    """

    gpu_utilization_high: float = 90.0  # percent, on the busiest GPU
    gpu_temperature_high: float = 80.0  # degrees Celsius, on the hottest GPU
    response_time_high: float = 2.0  # seconds, mean over the last 5 minutes of requests
    error_rate_high: float = 0.05  # failed over all requests of the last 5 minutes
    threshold_channels: str = "journal"  # comma-separated channels of the built-in rules
    repeat_interval_s: float = 3600.0  # a rule that stays firing is notified again after this; 0: never
    webhook_url: str = ""  # where the webhook channel POSTs its JSON
    webhook_secret: str = ""  # when set, each POST carries X-Llmd-Signature: sha256=<HMAC of the body>
    webhook_timeout_s: float = 5.0
    webhook_retries: int = 3  # retries after a failed POST, with a doubling backoff from 1 s
    smtp_host: str = ""  # the email channel's SMTP server; empty: no email
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: str = ""
    email_from: str = "llmd@localhost"
    email_to: str = ""  # comma-separated recipients
    keep_history_d: float = 365.0  # alert history (firing and resolved events), days; 0 keeps it forever


@dataclass
class ResponsesConfig:
    """The OpenAI Responses API's stored responses (``store: true``, the default)."""

    keep_days: float = 30.0  # stored responses older than this are pruned (hourly, with the metrics); 0: forever


@dataclass
class LogConfig:
    """Logging."""

    level: str = "info"


@dataclass
class Config:
    """All settings, plus where each one came from."""

    server: ServerConfig = field(default_factory=ServerConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    downloads: DownloadsConfig = field(default_factory=DownloadsConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    deployments: DeploymentsConfig = field(default_factory=DeploymentsConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    responses: ResponsesConfig = field(default_factory=ResponsesConfig)
    log: LogConfig = field(default_factory=LogConfig)
    # "section.key" -> "default", "file <path>", "env LLMD_X" or "flag --x"
    sources: dict[str, str] = field(default_factory=dict, repr=False)
    config_file: str | None = None

    # -- derived paths -------------------------------------------------
    @property
    def state_dir(self) -> Path:
        """The state directory: SQLite file and downloaded models."""
        return Path(self.paths.state_dir).expanduser()

    @property
    def runtime_dir(self) -> Path:
        """The runtime directory: the Unix socket."""
        return Path(self.paths.runtime_dir).expanduser()

    @property
    def db_path(self) -> Path:
        """The SQLite database file."""
        return self.state_dir / "llmd.db"

    @property
    def models_dir(self) -> Path:
        """Where downloaded and copied models live."""
        return self.state_dir / "models"

    @property
    def socket_path(self) -> Path | None:
        """The Unix socket path, or ``None`` when disabled."""
        value = self.server.unix_socket
        if value.lower() == "none":
            return None
        return Path(value).expanduser() if value else self.runtime_dir / "llmd.sock"

    def items(self) -> list[tuple[str, Any, str]]:
        """Every ``(section.key, value, source)``, in schema order."""
        out = []
        for section in _sections():
            obj = getattr(self, section.name)
            for f in dataclasses.fields(obj):
                key = f"{section.name}.{f.name}"
                out.append((key, getattr(obj, f.name), self.sources.get(key, "default")))
        return out


def _sections() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(Config) if f.name not in ("sources", "config_file")]


def _schema() -> dict[str, dict[str, type]]:
    schema: dict[str, dict[str, type]] = {}
    for section in _sections():
        cls = section.default_factory  # type: ignore[misc]
        hints = {f.name: type(getattr(cls(), f.name)) for f in dataclasses.fields(cls)}
        schema[section.name] = hints
    return schema


def _coerce(value: Any, kind: type, key: str, origin: str) -> Any:
    """Turn ``value`` into ``kind`` or raise a one-line ConfigError."""
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                low = text.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                raise ValueError(text)
            return kind(text)
        except ValueError:
            raise ConfigError(
                f"{origin}: key '{key}' must be {_type_name(kind)}, got {value!r}"
            ) from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{origin}: key '{key}' must be {_type_name(kind)}, got {value!r}")
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{origin}: key '{key}' must be {_type_name(kind)}, got {value!r}")
    if not isinstance(value, kind):
        raise ConfigError(f"{origin}: key '{key}' must be {_type_name(kind)}, got {value!r}")
    return value


def _type_name(kind: type) -> str:
    return {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}[kind]


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def unknown_env(env: Mapping[str, str]) -> list[str]:
    """The ``LLMD_*`` variables of ``env`` that name no setting (``load_config`` refuses them)."""
    schema = _schema()
    out = []
    for name in env:
        if not name.startswith("LLMD_") or name == "LLMD_CONFIG":
            continue
        mapped = _env_key(name, schema)
        if mapped is None or mapped[1] not in schema[mapped[0]]:
            out.append(name)
    return sorted(out)


def _env_key(name: str, schema: dict[str, dict[str, type]]) -> tuple[str, str] | None:
    """Map ``LLMD_SERVER_UNIX_SOCKET`` to ``("server", "unix_socket")``."""
    rest = name[len("LLMD_"):].lower()
    for section in schema:
        if rest.startswith(section + "_"):
            return section, rest[len(section) + 1:]
    return None


def load_config(
    config_file: str | os.PathLike | None = None,
    env: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Config:
    """Build the effective configuration.

    ``config_file`` names the file to read; when it is ``None`` the default
    ``/etc/llmd/llmd.toml`` is read if it exists (``LLMD_CONFIG`` may point
    elsewhere). ``flags`` maps ``section.key`` to values given on the command
    line. Raises :class:`ConfigError` with one line naming the key and file.
    """
    env = os.environ if env is None else env
    schema = _schema()
    cfg = Config()
    values: dict[str, dict[str, Any]] = {s: {} for s in schema}

    explicit = config_file is not None or "LLMD_CONFIG" in env
    path = Path(config_file if config_file is not None else env.get("LLMD_CONFIG", DEFAULT_CONFIG_FILE))
    if explicit or path.exists():
        data = _read_file(path)
        cfg.config_file = str(path)
        for section, body in data.items():
            if section not in schema:
                raise ConfigError(f"{path}: unknown section '[{section}]'")
            if not isinstance(body, dict):
                raise ConfigError(f"{path}: '{section}' must be a table ([{section}])")
            for key, value in body.items():
                dotted = f"{section}.{key}"
                if key not in schema[section]:
                    raise ConfigError(f"{path}: unknown key '{dotted}'")
                values[section][key] = _coerce(value, schema[section][key], dotted, str(path))
                cfg.sources[dotted] = f"file {path}"

    for name, raw in env.items():
        if not name.startswith("LLMD_") or name == "LLMD_CONFIG":
            continue
        mapped = _env_key(name, schema)
        if mapped is None or mapped[1] not in schema[mapped[0]]:
            raise ConfigError(f"environment: unknown setting {name}")
        section, key = mapped
        dotted = f"{section}.{key}"
        values[section][key] = _coerce(raw, schema[section][key], dotted, f"environment {name}")
        cfg.sources[dotted] = f"env {name}"

    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        if section not in schema or key not in schema[section]:
            raise ConfigError(f"command line: unknown setting '{dotted}'")
        values[section][key] = _coerce(value, schema[section][key], dotted, "command line")
        cfg.sources[dotted] = f"flag --{dotted}"

    for section, body in values.items():
        setattr(cfg, section, type(getattr(cfg, section))(**{**dataclasses.asdict(getattr(cfg, section)), **body}))

    _resolve_dirs(cfg, env)
    _check(cfg)
    return cfg


def setting_type(key: str) -> type:
    """The type of setting ``section.key``; raises ConfigError (with ``key``) for an unknown one."""
    section, _, name = key.partition(".")
    kind = _schema().get(section, {}).get(name)
    if kind is None:
        raise ConfigError(f"unknown setting '{key}'", key=key)
    return kind


def with_values(cfg: Config, values: Mapping[str, Any], source: str) -> Config:
    """A copy of ``cfg`` with ``section.key -> value`` applied (coerced and range-checked) and their
    source set to ``source``; ``cfg`` itself is left as it was. Raises ConfigError naming the key."""
    out = dataclasses.replace(cfg, sources=dict(cfg.sources))
    for section in _sections():
        setattr(out, section.name, dataclasses.replace(getattr(cfg, section.name)))
    for key, value in values.items():
        kind = setting_type(key)
        section, _, name = key.partition(".")
        try:
            coerced = _coerce(value, kind, key, source)
        except ConfigError as exc:
            raise ConfigError(str(exc), key=key) from None
        setattr(getattr(out, section), name, coerced)
        out.sources[key] = source
    try:
        _check(out)
    except ConfigError as exc:
        if exc.key is None or exc.key in values:
            raise
        raise ConfigError(f"{source}: {exc}", key=next(iter(values), None)) from None
    return out


def _resolve_dirs(cfg: Config, env: Mapping[str, str]) -> None:
    """Fill empty directories from systemd's variables, then XDG."""
    if not cfg.paths.state_dir:
        if env.get("STATE_DIRECTORY"):
            # systemd may list several, separated by colons; the first is ours.
            cfg.paths.state_dir = env["STATE_DIRECTORY"].split(":")[0]
            cfg.sources["paths.state_dir"] = "env STATE_DIRECTORY"
        else:
            base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
            cfg.paths.state_dir = str(Path(base) / "llmd")
            cfg.sources["paths.state_dir"] = "default (XDG data dir)"
    if not cfg.paths.runtime_dir:
        if env.get("RUNTIME_DIRECTORY"):
            cfg.paths.runtime_dir = env["RUNTIME_DIRECTORY"].split(":")[0]
            cfg.sources["paths.runtime_dir"] = "env RUNTIME_DIRECTORY"
        elif env.get("XDG_RUNTIME_DIR"):
            cfg.paths.runtime_dir = str(Path(env["XDG_RUNTIME_DIR"]) / "llmd")
            cfg.sources["paths.runtime_dir"] = "default (XDG runtime dir)"
        else:
            cfg.paths.runtime_dir = cfg.paths.state_dir
            cfg.sources["paths.runtime_dir"] = "default (state dir: no XDG_RUNTIME_DIR)"


def _check(cfg: Config) -> None:
    """Range checks that a type check alone cannot do."""
    where = lambda key: cfg.sources.get(key, "default")  # noqa: E731
    checks = [
        ("server.port", 0 <= cfg.server.port <= 65535, "must be 0-65535"),
        ("server.graceful_timeout", cfg.server.graceful_timeout >= 0, "must be >= 0"),
        ("server.max_body_bytes", cfg.server.max_body_bytes > 0, "must be > 0"),
        ("server.max_batch_size", cfg.server.max_batch_size >= 1, "must be >= 1"),
        ("engine.queue_size", cfg.engine.queue_size >= 0, "must be >= 0"),
        ("engine.n_ctx", cfg.engine.n_ctx >= 0, "must be >= 0"),
        ("engine.n_threads", cfg.engine.n_threads >= 0, "must be >= 0"),
        ("engine.n_batch", cfg.engine.n_batch >= 1, "must be >= 1"),
        ("engine.parallel", 1 <= cfg.engine.parallel <= 256, "must be 1-256"),
        ("engine.prefill_chunk", cfg.engine.prefill_chunk >= 1, "must be >= 1"),
        ("engine.n_gpu_layers", cfg.engine.n_gpu_layers >= -2, "must be >= -2 (-2: auto, -1: all, 0: CPU)"),
        ("engine.stall_timeout_s", cfg.engine.stall_timeout_s >= 0, "must be >= 0 (0: never)"),
        ("monitor.interval_s", cfg.monitor.interval_s == 0 or cfg.monitor.interval_s >= 0.1, "must be 0 or >= 0.1"),
        *((f"monitor.{key}", getattr(cfg.monitor, key) >= 0, "must be >= 0")
          for key in ("keep_raw_h", "keep_1m_d", "keep_5m_d", "keep_1h_d", "keep_1d_d")),
        ("engine.ngram_draft_tokens", 0 <= cfg.engine.ngram_draft_tokens <= 64, "must be 0-64"),
        ("engine.kv_cache_type", cfg.engine.kv_cache_type in KV_CACHE_TYPES, "must be " + ", ".join(KV_CACHE_TYPES)),
        ("sampling.max_tokens", cfg.sampling.max_tokens >= 1, "must be >= 1"),
        ("sampling.temperature", 0 <= cfg.sampling.temperature <= 2, "must be 0-2"),
        ("sampling.top_p", 0 <= cfg.sampling.top_p <= 1, "must be 0-1"),
        ("ratelimit.enabled", cfg.ratelimit.enabled.lower() in ("auto", "on", "off"),
         "must be auto, on or off"),
        ("ratelimit.requests_per_minute", cfg.ratelimit.requests_per_minute >= 1, "must be >= 1"),
        ("auth.mode", cfg.auth.mode.lower() in ("auto", "on", "off"), "must be auto, on or off"),
        ("auth.public_metrics", cfg.auth.public_metrics.lower() in ("loopback", "on", "off"),
         "must be loopback, on or off"),
        ("auth.token_ttl_s", cfg.auth.token_ttl_s >= 60, "must be >= 60"),
        ("auth.max_failure_delay_s", cfg.auth.max_failure_delay_s >= 0, "must be >= 0"),
        ("limits.max_tokens", cfg.limits.max_tokens >= 1, "must be >= 1"),
        ("limits.max_n", 1 <= cfg.limits.max_n <= 128, "must be 1-128"),
        ("limits.max_streams_per_client", cfg.limits.max_streams_per_client >= 0, "must be >= 0 (0: no limit)"),
        ("limits.read_timeout_s", cfg.limits.read_timeout_s > 0, "must be > 0"),
        ("ratelimit.burst", cfg.ratelimit.burst >= 1, "must be >= 1"),
        ("downloads.max_concurrent", 1 <= cfg.downloads.max_concurrent <= 16, "must be 1-16"),
        ("downloads.disk_margin_mb", cfg.downloads.disk_margin_mb >= 0, "must be >= 0"),
        ("downloads.retries", cfg.downloads.retries >= 0, "must be >= 0"),
        ("downloads.retry_backoff_s", cfg.downloads.retry_backoff_s >= 0, "must be >= 0"),
        ("downloads.progress_interval_s", cfg.downloads.progress_interval_s > 0, "must be > 0"),
        ("hub.cache_ttl_s", cfg.hub.cache_ttl_s >= 0, "must be >= 0"),
        ("hub.timeout_s", cfg.hub.timeout_s > 0, "must be > 0"),
        ("hub.search_limit", 1 <= cfg.hub.search_limit <= 1000, "must be 1-1000"),
        ("hub.sync_limit", 1 <= cfg.hub.sync_limit <= 10000, "must be 1-10000"),
        ("deployments.max_running", cfg.deployments.max_running >= 0, "must be >= 0 (0: no count bound)"),
        ("deployments.start_timeout_s", cfg.deployments.start_timeout_s > 0, "must be > 0"),
        ("deployments.stop_timeout_s", cfg.deployments.stop_timeout_s > 0, "must be > 0"),
        ("deployments.health_check_interval_s", cfg.deployments.health_check_interval_s >= 1, "must be >= 1"),
        ("deployments.load_on_demand_wait_s", cfg.deployments.load_on_demand_wait_s >= 0, "must be >= 0"),
        *((f"alerts.{key}", getattr(cfg.alerts, key) >= 0, "must be >= 0")
          for key in ("gpu_utilization_high", "gpu_temperature_high", "response_time_high", "error_rate_high",
                      "repeat_interval_s", "webhook_retries", "keep_history_d")),
        ("alerts.webhook_timeout_s", cfg.alerts.webhook_timeout_s > 0, "must be > 0"),
        ("responses.keep_days", cfg.responses.keep_days >= 0, "must be >= 0 (0: forever)"),
        ("alerts.gpu_utilization_high", cfg.alerts.gpu_utilization_high <= 100, "must be 0-100 (percent)"),
        ("alerts.gpu_temperature_high", cfg.alerts.gpu_temperature_high <= 200, "must be 0-200 (degrees Celsius)"),
        ("alerts.error_rate_high", cfg.alerts.error_rate_high <= 1, "must be 0-1"),
        ("alerts.smtp_port", 1 <= cfg.alerts.smtp_port <= 65535, "must be 1-65535"),
        ("alerts.threshold_channels",
         all(c.strip() in ("journal", "webhook", "email") for c in cfg.alerts.threshold_channels.split(",")
             if c.strip()), "must list journal, webhook or email"),
        ("log.level", cfg.log.level.lower() in ("debug", "info", "warning", "error"),
         "must be debug, info, warning or error"),
    ]
    for key, ok, why in checks:
        if not ok:
            raise ConfigError(f"{where(key)}: key '{key}' {why}", key=key)
    try:
        int(cfg.server.socket_mode, 8)
    except ValueError:
        raise ConfigError(f"{where('server.socket_mode')}: key 'server.socket_mode' must be an octal mode "
                          "such as 0660") from None


def render_config(cfg: Config, notes: dict[str, str] | None = None) -> str:
    """The effective configuration as TOML-ish lines with their sources; ``notes`` adds a comment line under
    a key (what a value of 0 or "auto" comes to on this machine)."""
    lines = []
    if cfg.config_file:
        lines.append(f"# config file: {cfg.config_file}")
    else:
        lines.append(f"# config file: none ({DEFAULT_CONFIG_FILE} does not exist)")
    current = None
    for key, value, source in cfg.items():
        section, _, name = key.partition(".")
        if section != current:
            lines.append(f"\n[{section}]")
            current = section
        shown = str(value).lower() if isinstance(value, bool) else repr(value) if isinstance(value, str) else value
        if key in SECRET_KEYS and value:
            value = "********"
        if isinstance(value, str):
            shown = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
        lines.append(f"{name} = {shown}  # {source}")
        if notes and key in notes:
            lines.append(f"#   {notes[key]}")
    enabled, why = resolve_auth_mode(cfg)
    lines.append(f"\n# auth in force: {'on' if enabled else 'off'} ({why})")
    return "\n".join(lines) + "\n"


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (brackets allowed)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost" or h.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def resolve_auth_mode(cfg: Config) -> tuple[bool, str]:
    """Whether auth is in force under ``cfg``, and why, in words for ``--print-config`` and /health.

    The one place ``auth.mode = auto`` is resolved.
    """
    mode = cfg.auth.mode.lower()
    if mode == "on":
        return True, "auth.mode is on"
    if mode == "off":
        return False, "auth.mode is off"
    host = cfg.server.host
    if is_loopback(host):
        return False, f"auth.mode is auto and every TCP listener is loopback ({host})"
    return True, f"auth.mode is auto and the TCP listener {host} is not loopback"
