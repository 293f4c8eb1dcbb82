"""Where alert notifications go: the journal, a webhook, email.

:meth:`Channels.send` never raises: a channel that fails is logged (without a
traceback: the reason is one line) and counted, and the caller gets False.
Every setting is read from the ``[alerts]`` section at send time, since
``PUT /api/config`` changes it while the daemon runs. The alerts component
calls :meth:`Channels.send` in background tasks, so a slow webhook or SMTP
server delays only its own notification.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import smtplib
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any

import httpx

from llmd.config import AlertsConfig

if TYPE_CHECKING:
    from llmd.core.alerts import AlertEvent

log = logging.getLogger(__name__)


class ChannelError(Exception):
    """A notification was not delivered; the message says why, in one line."""


@dataclass
class NotificationCounters:
    """Notifications per channel: delivered and failed (for the Prometheus text)."""

    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)

    def record(self, channel: str, ok: bool) -> None:
        """Count one notification of ``channel``."""
        into = self.sent if ok else self.failed
        into[channel] = into.get(channel, 0) + 1


def iso_utc(ts: float) -> str:
    """A Unix time as ISO 8601 in UTC with a ``Z``: ``2026-01-02T03:04:05.678Z``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def webhook_payload(event: AlertEvent, host: str) -> dict[str, Any]:
    """The JSON a webhook receives for ``event``."""
    return {
        "alert_id": event.rule_id,
        "event_id": event.id,
        "rule_name": event.rule_name,
        "severity": event.severity,
        "state": event.state,
        "condition": event.condition,
        "value": event.value,
        "message": event.message,
        "timestamp": iso_utc(event.ts),
        "host": host,
    }


def sign(secret: str, body: bytes) -> str:
    """The ``X-Llmd-Signature`` value of a body: ``sha256=<hex HMAC-SHA256 of the body with the secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _recipients(text: str) -> list[str]:
    return [a.strip() for a in text.split(",") if a.strip()]


class Channels:
    """Sends alert events to the journal, a webhook or email; counts what was delivered and what failed.

    ``retry_base_s`` is the first webhook retry's delay (it doubles after each); ``tls_context`` verifies
    the SMTP server's certificate on STARTTLS (default: the system's trusted CAs).
    """

    NAMES = ("journal", "webhook", "email")

    def __init__(self, config: AlertsConfig, *, retry_base_s: float = 1.0,
                 tls_context: ssl.SSLContext | None = None) -> None:
        self.config = config  # read at every send: the settings change at run time
        self.retry_base_s = retry_base_s
        self.tls_context = tls_context
        self.counters = NotificationCounters()
        # The journal channel's logger: its name is what an admin filters on (journalctl -t / log config).
        self.journal = logging.getLogger("llmd.alerts")
        # An alert chosen for the journal is written whatever log.level says (the root logger's level does
        # not filter a logger that has its own).
        self.journal.setLevel(logging.INFO)

    async def send(self, channel: str, event: AlertEvent) -> bool:
        """Notify ``channel`` of ``event``; True when delivered. Never raises: a failure is logged and counted."""
        try:
            if channel == "journal":
                self._journal(event)
            elif channel == "webhook":
                await self._webhook(event)
            elif channel == "email":
                await self._email(event)
            else:
                raise ChannelError(f"unknown channel {channel!r}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a failed notification must never reach the caller
            # ChannelError already says why; anything else is named by its type, so that a message
            # holding a secret (an SMTP reply echoing credentials, a URL with a password) stays short.
            reason = str(exc) if isinstance(exc, ChannelError) else f"{type(exc).__name__}: {exc}"
            log.warning("alert %s (%s): %s notification failed: %s", event.rule_id, event.state, channel, reason)
            self.counters.record(channel, False)
            return False
        self.counters.record(channel, True)
        return True

    # -- journal ---------------------------------------------------------
    def _journal(self, event: AlertEvent) -> None:
        if event.state == "resolved":
            level = logging.INFO
        else:
            level = logging.ERROR if event.severity == "critical" else logging.WARNING
        self.journal.log(level, "alert %s %s [%s] %s: %s", event.rule_id, event.state, event.severity,
                         event.rule_name, event.message)

    # -- webhook ---------------------------------------------------------
    async def _webhook(self, event: AlertEvent) -> None:
        c = self.config
        url = c.webhook_url.strip()
        if not url:
            raise ChannelError("not configured (alerts.webhook_url is empty)")
        body = json.dumps(webhook_payload(event, socket.gethostname()), ensure_ascii=False,
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "llmd-alerts"}
        if c.webhook_secret:
            # The signature covers the exact bytes sent, which carry the event's own timestamp and event_id:
            # those are what a receiver can trust to refuse a replay. X-Llmd-Timestamp (when this POST was
            # made, e.g. after retries) is informative only: it is not signed.
            headers["X-Llmd-Signature"] = sign(c.webhook_secret, body)
            headers["X-Llmd-Timestamp"] = str(int(time.time()))
        # Only the host is logged: a webhook URL may carry a token in its path or query.
        target = httpx.URL(url).host or "?"
        attempts = 1 + max(0, int(c.webhook_retries))
        last = ""
        async with httpx.AsyncClient(timeout=c.webhook_timeout_s) as client:
            for attempt in range(attempts):
                if attempt:
                    await asyncio.sleep(self.retry_base_s * 2 ** (attempt - 1))
                try:
                    resp = await client.post(url, content=body, headers=headers)
                except httpx.HTTPError as exc:
                    last = f"{type(exc).__name__} from {target}"
                else:
                    if 200 <= resp.status_code < 300:
                        return
                    last = f"HTTP {resp.status_code} from {target}"
                log.debug("alert %s: webhook attempt %d of %d failed: %s", event.rule_id, attempt + 1, attempts,
                          last)
        raise ChannelError(f"{last} after {attempts} attempt(s)")

    # -- email -----------------------------------------------------------
    def _message(self, event: AlertEvent) -> EmailMessage:
        c = self.config
        msg = EmailMessage()
        msg["Subject"] = f"[llmd] {event.severity.upper()} {event.rule_name}: {event.state}"
        msg["From"] = c.email_from
        msg["To"] = ", ".join(_recipients(c.email_to))
        value = "no data" if event.value is None else f"{event.value:g}"
        msg.set_content(
            f"{event.message}\n\n"
            f"rule:      {event.rule_name} ({event.rule_id})\n"
            f"condition: {event.condition}\n"
            f"severity:  {event.severity}\n"
            f"state:     {event.state}\n"
            f"value:     {value}\n"
            f"time:      {iso_utc(event.ts)}\n"
            f"host:      {socket.gethostname()}\n")
        return msg

    async def _email(self, event: AlertEvent) -> None:
        c = self.config
        if not c.smtp_host.strip() or not _recipients(c.email_to):
            raise ChannelError("not configured (alerts.smtp_host or alerts.email_to is empty)")
        msg = self._message(event)
        # smtplib blocks: on a thread, so the event loop (and the watchdog it feeds) never waits on SMTP
        await asyncio.to_thread(self._smtp_send, c.smtp_host.strip(), c.smtp_port, c.smtp_starttls,
                                c.smtp_username, c.smtp_password, msg)

    def _smtp_send(self, host: str, port: int, starttls: bool, username: str, password: str,
                   msg: EmailMessage) -> None:
        """Deliver ``msg`` (blocking)."""
        with smtplib.SMTP(host, port, timeout=10) as smtp:
            smtp.ehlo()
            if starttls:
                if not smtp.has_extn("starttls"):
                    # Refuse rather than fall back to clear text: the credentials (and the alert) would
                    # cross the network readable by anyone on the path.
                    raise ChannelError(f"STARTTLS is configured but {host}:{port} does not offer it")
                smtp.starttls(context=self.tls_context or ssl.create_default_context())
                smtp.ehlo()
            if username:
                smtp.login(username, password)
            smtp.send_message(msg)
