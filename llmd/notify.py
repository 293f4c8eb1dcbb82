"""systemd notifications: READY, STATUS, WATCHDOG and STOPPING.

Thin wrapper over ``sdnotify``; every call is a no-op outside systemd.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Callable

import sdnotify

log = logging.getLogger(__name__)


class Notifier:
    """Sends sd_notify messages when ``NOTIFY_SOCKET`` is set."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ if env is None else env)
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._sd = sdnotify.SystemdNotifier() if self.enabled else None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        owned = pid is None or pid == str(os.getpid())
        self.watchdog_interval = int(usec) / 1e6 / 2 if usec and usec.isdigit() and owned else None

    def send(self, message: str) -> None:
        """Send one message (several lines allowed)."""
        if self._sd is not None:
            self._sd.notify(message)
        log.debug("sd_notify: %s", message.replace("\n", " | "))

    def status(self, text: str) -> None:
        """A free-form STATUS= line, shown by ``systemctl status``."""
        self.send(f"STATUS={text}")

    async def watchdog(self, check: Callable[[], str | None] | None = None) -> None:
        """Ping the watchdog from the event loop, so a stalled loop stops the pings; ``check`` says what
        else must stop them (an engine stuck inside one decode step), and systemd then restarts llmd."""
        if self.watchdog_interval is None:
            return
        reported: str | None = None
        while True:
            problem = check() if check is not None else None
            if problem is None:
                self.send("WATCHDOG=1")
                reported = None
            elif problem != reported:
                log.error("no longer feeding systemd's watchdog, so that llmd is restarted: %s", problem)
                self.status(f"stalled: {problem}")
                reported = problem
            await asyncio.sleep(self.watchdog_interval)
