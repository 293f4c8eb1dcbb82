"""The daemon's lifecycle: config, store, core, Hypercorn on TCP and a Unix socket, signals.

Order of start-up: open the store, start the core (the default model loads in
the background), create the listening sockets, serve. ``READY=1`` goes to
systemd only after a real HTTP request to ``/health`` has been answered on
both sockets. On SIGTERM: ``STOPPING=1``, open streams get a final event,
Hypercorn stops accepting and drains within the grace period, the store is
closed cleanly. On SIGHUP: ``RELOADING=1``, the config file is read again and
what changed is applied (stored overrides still win; see
:mod:`llmd.core.settings`), then ``READY=1``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from typing import Callable

from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.utils import wrap_app

from llmd import __version__
from llmd.config import Config, load_config, render_config
from llmd.core import Core, memory
from llmd.core.backups import pending_restore
from llmd.core.settings import apply_stored
from llmd.daemon.listeners import PortListeners
from llmd.daemon.sockets import ListenError, PeerCheckedSocket, open_tcp, open_unix, probe_host, probe_http
from llmd.errors import ConfigError
from llmd.http import create_app
from llmd.http.port_app import PortApp
from llmd.notify import Notifier
from llmd.store import Store
from llmd.store.backup import apply_restore
from llmd.store.settings import read_overrides

log = logging.getLogger("llmd")
# The exit status of a stop that asks to be started again (EX_TEMPFAIL): under systemd, Restart=on-failure
# brings the daemon back; by hand, start it again.
RESTART_EXIT = 75


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line flags; each maps onto one config key."""
    p = argparse.ArgumentParser(prog="llmd", description="LLM daemon for edge boxes.")
    p.add_argument("--config", help="config file (default /etc/llmd/llmd.toml if present)")
    p.add_argument("--host", help="TCP address to listen on (server.host)")
    p.add_argument("--port", type=int, help="TCP port (server.port)")
    p.add_argument("--socket", help="Unix socket path, or 'none' (server.unix_socket)")
    p.add_argument("--state-dir", help="state directory: database and models (paths.state_dir)")
    p.add_argument("--runtime-dir", help="runtime directory: the Unix socket (paths.runtime_dir)")
    p.add_argument("--model", help="default model name or alias (models.default)")
    p.add_argument("--no-load", action="store_true", help="do not load the default model at start")
    p.add_argument("--log-level", help="debug, info, warning or error (log.level)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="set any config key; may repeat")
    p.add_argument("--print-config", action="store_true", help="print the effective config and exit")
    p.add_argument("--version", action="version", version=f"llmd {__version__}")
    return p.parse_args(argv)


def flags_from_args(args: argparse.Namespace) -> dict[str, object]:
    """Map parsed flags to ``section.key`` overrides."""
    flags: dict[str, object] = {
        "server.host": args.host, "server.port": args.port, "server.unix_socket": args.socket,
        "paths.state_dir": args.state_dir, "paths.runtime_dir": args.runtime_dir,
        "models.default": args.model, "log.level": args.log_level,
        "models.load_default": False if args.no_load else None,
    }
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"command line: --set needs SECTION.KEY=VALUE, got {item!r}")
        flags[key.strip()] = value
    return flags


class Daemon:
    """One run of the daemon."""

    def __init__(self, config: Config, notifier: Notifier | None = None,
                 reread: Callable[[], Config] | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.reread = reread  # the file, environment and flags read again (SIGHUP)
        self.stop_event = asyncio.Event()
        self.exit_code = 0
        self.store = Store(config.db_path)
        self.core: Core | None = None

    async def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        cfg = self.config
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        cfg.models_dir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop, sig)
        loop.add_signal_handler(signal.SIGHUP, self.request_reload)

        try:
            tcp = open_tcp(cfg.server.host, cfg.server.port)
            unix = open_unix(cfg.socket_path, int(cfg.server.socket_mode, 8)) if cfg.socket_path else None
        except ListenError as exc:
            log.error("%s", exc)
            return 1
        port = tcp.getsockname()[1]

        pending = pending_restore(cfg.state_dir)
        if pending.exists():
            # A restore staged by POST /llmd/v1/restore/commit: the database in use is kept under backups/.
            saved = await asyncio.to_thread(apply_restore, cfg.db_path, pending, cfg.state_dir / "backups")
            log.warning("restored the database from a backup%s", f"; the one replaced is {saved}" if saved else "")
        self.notifier.status("opening the store")
        try:
            await self.store.open()
        except ConfigError as exc:  # a database from a newer llmd: nothing is touched
            log.error("%s", exc)
            self.notifier.status(f"cannot start: {exc}")
            return 2
        from llmd.core.engine.llama_cpp import LlamaCppEngine  # the real engine, imported lazily

        self.core = Core(cfg, self.store, LlamaCppEngine(), on_status=self.notifier.status, reread=self.reread,
                         on_restart=self.request_restart)
        await self.core.start()
        await self.core.auth.start()  # the token signing key, made on first start
        log.info("auth %s: %s", "on" if self.core.auth.enabled else "off", self.core.auth.reason)
        if unix is not None:
            # Peers are checked at accept (SO_PEERCRED); only then may the app trust the socket's requests.
            unix = PeerCheckedSocket(unix, self.core.auth.peers.allowed)
            self.core.auth.unix_peers_verified = True
        app = create_app(self.core)
        # Port-bound deployments (docs/deployments.md): the same app, wrapped to serve one model's OpenAI API.
        self.core.fleet.ports.listeners = PortListeners(
            lambda model: PortApp(app, model, cfg.server.max_body_bytes), cfg)
        await self.core.fleet.restore()

        hc = HypercornConfig()
        hc.graceful_timeout = cfg.server.graceful_timeout
        # A connection with no request in progress is closed after keep_alive_timeout: this also
        # bounds a client that trickles its request headers. A trickling body is cut by Quart's
        # BODY_TIMEOUT (limits.read_timeout_s). Hypercorn's read_timeout is left unset on purpose:
        # it counts silence from the client, which is normal while an SSE answer streams to it.
        hc.keep_alive_timeout = cfg.server.keep_alive_timeout
        hc.websocket_max_message_size = cfg.server.max_body_bytes
        hc.accesslog = None
        hc.errorlog = logging.getLogger("hypercorn.error")
        hc.include_server_header = False

        log.info("llmd %s listening on %s:%d%s", __version__, cfg.server.host, port,
                 f" and {cfg.socket_path}" if unix else "")
        ready = asyncio.ensure_future(self._announce_ready(port))
        try:
            sockets = Sockets(secure_sockets=[], insecure_sockets=[tcp] + ([unix] if unix else []), quic_sockets=[])
            await worker_serve(wrap_app(app, hc.wsgi_max_body_size, "asgi"), hc, sockets=sockets,
                               shutdown_trigger=self._shutdown_trigger)
        finally:
            ready.cancel()
            await self.store.close()
            for s in (tcp, unix):
                if s is not None:
                    s.close()  # asyncio's servers closed them already; this is a no-op then
            if unix is not None and cfg.socket_path is not None:
                try:
                    cfg.socket_path.unlink()
                except FileNotFoundError:
                    pass
        log.info("llmd stopped")
        return self.exit_code

    async def _announce_ready(self, port: int) -> None:
        """READY=1 once both sockets answer a real request; then keep the watchdog fed."""
        host = probe_host(self.config.server.host)
        sock_path = self.config.socket_path
        while not self.stop_event.is_set():
            tcp_ok = await probe_http(lambda: asyncio.open_connection(host, port))
            unix_ok = sock_path is None or await probe_http(lambda: asyncio.open_unix_connection(str(sock_path)))
            if tcp_ok and unix_ok:
                break
            await asyncio.sleep(0.05)
        else:
            return
        self.notifier.send("READY=1")
        log.info("ready")
        core = self.core
        await self.notifier.watchdog(
            lambda: core.fleet.stall(self.config.engine.stall_timeout_s) if core is not None else None)

    def request_reload(self) -> None:
        """SIGHUP: re-read the config file in the background (signal handler)."""
        if self.core is None or self.reread is None or self.stop_event.is_set():
            log.info("SIGHUP ignored: %s", "stopping" if self.stop_event.is_set() else "not started yet")
            return
        self.core.background.spawn(self.reload())

    async def reload(self) -> None:
        """Re-read the file and apply what changed; systemd sees RELOADING=1, then READY=1 again."""
        assert self.core is not None and self.reread is not None
        self.notifier.send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
        try:
            fresh = await asyncio.to_thread(self.reread)
            change = await self.core.settings.reload(fresh)
            self.notifier.status(f"reloaded: {len(change.applied)} applied, "
                                 f"{len(change.restart_required)} wait for a restart")
            if change.restart_required:
                log.warning("changed settings that need a restart: %s", ", ".join(change.restart_required))
        except ConfigError as exc:
            log.error("reload refused, the running settings stay: %s", exc)
            self.notifier.status(f"reload refused: {exc}")
        finally:
            self.notifier.send("READY=1")

    def request_restart(self) -> None:
        """Stop with RESTART_EXIT, which systemd's Restart=on-failure restarts (a staged restore)."""
        self.exit_code = RESTART_EXIT
        log.warning("stopping so that the restored database is put in place at the next start")
        self.request_stop()

    def request_stop(self, sig: int | None = None) -> None:
        """Begin a graceful stop (signal handler)."""
        if self.stop_event.is_set():
            return
        log.info("received %s, stopping", signal.Signals(sig).name if sig else "stop request")
        self.notifier.send("STOPPING=1")
        self.notifier.status("stopping")
        self.stop_event.set()

    async def _shutdown_trigger(self) -> None:
        await self.stop_event.wait()
        if self.core is not None:
            # End open streams with a final event before Hypercorn drains them.
            try:
                await asyncio.wait_for(self.core.shutdown(), self.config.server.graceful_timeout)
            except TimeoutError:
                log.warning("generations did not stop within the grace period")


def setup_logging(level: str) -> None:
    """Log to stderr; under systemd the journal adds timestamps itself."""
    fmt = "%(levelname)s %(name)s: %(message)s" if os.environ.get("JOURNAL_STREAM") else \
        "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level.upper(), format=fmt, stream=sys.stderr, force=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``llmd``."""
    args = parse_args(argv)

    def reread() -> Config:
        return load_config(args.config, flags=flags_from_args(args))

    try:
        config = reread()
    except ConfigError as exc:
        sys.stderr.write(f"llmd: config error: {exc}\n")  # one line, before logging exists
        return 2
    # Settings changed at run time (PUT /api/config) win over the file, here as in the daemon.
    config = apply_stored(config, read_overrides(config.db_path))
    if args.print_config:
        budget = memory.budget(config.deployments.memory_budget_mb)
        sys.stdout.write(render_config(config, {"deployments.memory_budget_mb": f"budget in force: {budget.reason}"}))
        return 0
    setup_logging(config.log.level)
    try:
        return asyncio.run(Daemon(config, reread=reread).run())
    except KeyboardInterrupt:
        return 130
