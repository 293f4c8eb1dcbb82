"""Settings changed while the daemon runs: ``PUT /api/config``, ``llmctl config set`` and ``SIGHUP``.

A change is validated like the config file (same types, same ranges), stored
in SQLite as an override that wins over the file, the environment and the
command line, and applied at once where the setting is read at use time
(:data:`RUNTIME`). Any other setting is stored and reported as needing a
restart: the daemon applies stored overrides before it builds the core, so it
takes effect at the next start. ``SIGHUP`` re-reads the file; stored overrides
still win over it.

Components hold the live :class:`~llmd.config.Config` sections, so applying a
change is setting the attribute on that section: whoever reads it next sees
the new value. Components that must act on a change (the sampler's timer, the
log level) register a listener with :meth:`Settings.on_change`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from llmd.config import SECRET_KEYS, Config, setting_type, with_values
from llmd.errors import ConfigError, ValidationError
from llmd.store.settings import SettingsRepo

log = logging.getLogger(__name__)

OVERRIDE = "override (PUT /api/config)"
# Settings read where they are used: a change applies at once. Sections end in ".*".
RUNTIME = ("monitor.*", "alerts.*", "responses.*", "sampling.*", "log.level", "deployments.max_running",
           "deployments.memory_budget_mb", "deployments.start_timeout_s", "deployments.stop_timeout_s",
           "deployments.health_check_interval_s",
           "deployments.keep_alive_s", "deployments.load_on_demand", "deployments.load_on_demand_wait_s",
           "engine.stall_timeout_s")
# Never changed at run time: the database that holds the overrides lives there.
FIXED = ("paths.*",)
Listener = Callable[[set[str]], None]


def _matches(key: str, patterns: tuple[str, ...]) -> bool:
    return any(key == p or (p.endswith(".*") and key.startswith(p[:-1])) for p in patterns)


def is_runtime(key: str) -> bool:
    """Whether a change of ``key`` applies without a restart."""
    return _matches(key, RUNTIME)


@dataclass(frozen=True)
class SettingView:
    """One setting as the admin sees it: the value in force, where it came from, and a stored value
    that waits for a restart (``pending``)."""

    key: str
    value: Any
    source: str
    runtime: bool
    pending: Any = None
    secret: bool = False


@dataclass(frozen=True)
class SettingsChange:
    """What a change did: settings applied now, settings stored that need a restart."""

    applied: list[str]
    restart_required: list[str]
    unchanged: list[str]
    settings: list[SettingView] = field(default_factory=list)  # every setting after the change


def apply_stored(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """``cfg`` with the stored overrides on top; one that no longer validates (an older version's key,
    a range that changed) is skipped with a warning rather than keeping the daemon from starting."""
    for key, value in overrides.items():
        if _matches(key, FIXED):
            continue
        try:
            cfg = with_values(cfg, {key: value}, OVERRIDE)
        except ConfigError as exc:
            log.warning("stored setting %s=%r ignored: %s", key, value, exc)
    return cfg


def _why(exc: ConfigError) -> str:
    """The reason in a ConfigError's message, without its origin and key ("must be >= 0")."""
    m = re.search(r"key '[^']+' (.*)", str(exc))
    return m.group(1) if m else str(exc)


class Settings:
    """The live configuration: read, change, persist, reload."""

    def __init__(self, config: Config, repo: SettingsRepo, reread: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.repo = repo
        # The file, environment and flags read again (the daemon's; None: the built-in defaults stand in).
        self.reread = reread
        self.pending: dict[str, Any] = {}  # stored values of restart-only settings, not yet in force
        self._listeners: list[Listener] = []

    def on_change(self, listener: Listener) -> None:
        """Call ``listener(keys)`` after settings were applied."""
        self._listeners.append(listener)

    def value(self, key: str) -> Any:
        """The value in force of ``section.key``."""
        section, _, name = key.partition(".")
        return getattr(getattr(self.config, section), name)

    def view(self) -> list[SettingView]:
        """Every setting, in schema order."""
        return [SettingView(key, value, source, is_runtime(key), self.pending.get(key), key in SECRET_KEYS)
                for key, value, source in self.config.items()]

    async def load(self) -> None:
        """Note stored overrides of restart-only settings that are not in force (stored while running)."""
        for key, value in (await self.repo.all()).items():
            try:
                kind = setting_type(key)
            except ConfigError:
                continue
            if not is_runtime(key) and self.value(key) != value and isinstance(value, kind):
                self.pending[key] = value

    async def change(self, values: Mapping[str, Any], *, reset: list[str] | tuple[str, ...] = (),
                     names: Mapping[str, str] | None = None) -> SettingsChange:
        """Drop the overrides of ``reset``, then :meth:`update` with ``values`` (a PUT /api/config); ``values``
        are checked first, so a refused change drops nothing."""
        if values:
            self._validated(values, names or {})
        dropped = await self.reset(list(reset)) if reset else SettingsChange([], [], [])
        change = await self.update(values, names) if values else SettingsChange([], [], [])
        return SettingsChange(dropped.applied + change.applied, dropped.restart_required + change.restart_required,
                              dropped.unchanged + change.unchanged, self.view())

    async def update(self, values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> SettingsChange:
        """Validate, store and apply ``section.key -> value``; all or nothing.

        ``names`` maps a key to the name the caller gave it, so a 400 names
        the caller's field (``gpu_monitor_interval``, not ``monitor.interval_s``).
        """
        candidate = self._validated(values, names or {})
        coerced = {key: getattr(getattr(candidate, key.partition(".")[0]), key.partition(".")[2]) for key in values}
        await self.repo.put(coerced)
        return self._apply(candidate, coerced)

    def _validated(self, values: Mapping[str, Any], names: Mapping[str, str]) -> Config:
        """The config with ``values`` applied, or a ValidationError naming the first bad one."""
        for key in values:
            if _matches(key, FIXED):
                raise ValidationError(f"{names.get(key, key)} cannot be changed at run time (the database lives "
                                      "there): set it in the config file", field=names.get(key, key))
            try:
                setting_type(key)
            except ConfigError:
                raise ValidationError(f"unknown setting '{names.get(key, key)}'", field=names.get(key, key)) from None
        try:
            return with_values(self.config, values, OVERRIDE)
        except ConfigError as exc:
            field = names.get(exc.key or "", exc.key or "settings")
            raise ValidationError(f"{field} {_why(exc)}", field=field) from None

    async def reset(self, keys: list[str]) -> SettingsChange:
        """Drop stored overrides: the value of the file, the environment or the flags (else the default)
        is in force again, at once for a runtime setting, after a restart for the others."""
        for key in keys:
            try:
                setting_type(key)
            except ConfigError:
                raise ValidationError(f"unknown setting '{key}'", field=key) from None
            if _matches(key, FIXED):
                raise ValidationError(f"{key} is never stored as an override: set it in the config file", field=key)
        try:
            base = await asyncio.to_thread(self.reread) if self.reread is not None else Config()
        except ConfigError as exc:
            raise ValidationError(f"the config file cannot be read, so nothing was reset: {exc}",
                                  field="reset") from None
        await self.repo.remove(keys)
        for key in keys:
            self.pending.pop(key, None)
        values = {key: getattr(getattr(base, key.partition(".")[0]), key.partition(".")[2]) for key in keys}
        return self._apply(base, values, {key: base.sources.get(key, "default") for key in keys})

    async def reload(self, fresh: Config) -> SettingsChange:
        """``SIGHUP``: ``fresh`` is the file, environment and flags read again; stored overrides go on top.
        Runtime settings that changed are applied; others are noted as waiting for a restart."""
        candidate = apply_stored(fresh, await self.repo.all())
        changed = {key: value for key, value, _ in candidate.items()
                   if value != self.value(key) and not _matches(key, FIXED)}
        sources = {key: candidate.sources.get(key, "default") for key in changed}
        change = self._apply(candidate, changed, sources)
        log.info("configuration reloaded%s: %d applied, %d need a restart",
                 f" from {fresh.config_file}" if fresh.config_file else "", len(change.applied),
                 len(change.restart_required))
        return change

    def _apply(self, candidate: Config, values: Mapping[str, Any],
               sources: Mapping[str, str] | None = None) -> SettingsChange:
        applied, restart, unchanged = [], [], []
        for key, value in values.items():
            section, _, name = key.partition(".")
            live = getattr(self.config, section)
            if getattr(live, name) == value:
                self.pending.pop(key, None)
                unchanged.append(key)
                self.config.sources[key] = (sources or {}).get(key, candidate.sources.get(key, OVERRIDE))
            elif is_runtime(key):
                setattr(live, name, value)
                self.config.sources[key] = (sources or {}).get(key, candidate.sources.get(key, OVERRIDE))
                applied.append(key)
            else:
                self.pending[key] = value
                restart.append(key)
        if applied:
            for listener in self._listeners:
                try:
                    listener(set(applied))
                except Exception:  # noqa: BLE001 - one listener's bug must not undo a stored change
                    log.exception("settings listener failed")
        return SettingsChange(applied, restart, unchanged)

