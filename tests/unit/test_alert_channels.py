"""Alert channels against real receivers on 127.0.0.1: a webhook (JSON, HMAC, retries), SMTP (plain and
STARTTLS, with AUTH), and the journal's log records."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import logging
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from llmd.config import AlertsConfig
from llmd.core.alert_channels import Channels
from llmd.core.alerts import AlertEvent

T0 = 1_800_000_000.5  # 2027-01-15T08:00:00.500Z
SECRET = "s3cret-key"


def an_event(state: str = "firing", severity: str = "warning") -> AlertEvent:
    return AlertEvent(7, "alert-3", "CPU hot", severity, state, "cpu_percent > 90 for 5m", 97.2,
                      "cpu_percent is 97.2 (> 90 for 5m)", T0)


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- webhook ------------------------------------------------------------------------
@dataclass
class Receiver:
    """A tiny HTTP/1.1 server: answers each POST with the next of ``statuses`` (then 200); None: never answers."""

    statuses: list[int | None] = field(default_factory=list)
    requests: list[tuple[str, str, dict[str, str], bytes]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    url: str = ""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in head[1:] if h)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append((method, target, headers, body))
            status = self.statuses.pop(0) if self.statuses else 200
            if status is None:
                await self.release.wait()
                return
            writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".encode())
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def receiver():
    rec = Receiver()
    server = await asyncio.start_server(rec.handle, "127.0.0.1", 0)
    rec.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks/llmd?token=abc"
    yield rec
    rec.release.set()
    server.close()
    await server.wait_closed()


def webhook_channels(url: str, **kw) -> Channels:
    cfg = AlertsConfig(**{"webhook_url": url, "webhook_timeout_s": 2.0, "webhook_retries": 3, **kw})
    return Channels(cfg, retry_base_s=0.01)


async def test_the_webhook_gets_the_event_as_signed_json(receiver):
    ch = webhook_channels(receiver.url, webhook_secret=SECRET)
    assert await ch.send("webhook", an_event()) is True
    ((method, target, headers, body),) = receiver.requests
    assert (method, target, headers["content-type"]) == ("POST", "/hooks/llmd?token=abc", "application/json")
    assert json.loads(body) == {
        "alert_id": "alert-3", "event_id": 7, "rule_name": "CPU hot", "severity": "warning", "state": "firing",
        "condition": "cpu_percent > 90 for 5m", "value": 97.2, "message": "cpu_percent is 97.2 (> 90 for 5m)",
        "timestamp": "2027-01-15T08:00:00.500Z", "host": socket.gethostname()}
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-llmd-signature"], expected)
    assert int(headers["x-llmd-timestamp"]) > T0 - 10 * 365 * 86400
    forged = "sha256=" + hmac.new(b"another", body, hashlib.sha256).hexdigest()
    assert headers["x-llmd-signature"] != forged
    assert ch.counters.sent == {"webhook": 1} and ch.counters.failed == {}


async def test_without_a_secret_the_webhook_is_not_signed(receiver):
    assert await webhook_channels(receiver.url).send("webhook", an_event("resolved")) is True
    ((_, _, headers, body),) = receiver.requests
    assert "x-llmd-signature" not in headers and "x-llmd-timestamp" not in headers
    assert json.loads(body)["state"] == "resolved"


async def test_the_webhook_is_retried_after_errors_until_it_answers_2xx(receiver):
    receiver.statuses = [500, 500, 200]
    ch = webhook_channels(receiver.url, webhook_secret=SECRET)
    assert await ch.send("webhook", an_event()) is True
    assert len(receiver.requests) == 3
    assert len({r[3] for r in receiver.requests}) == 1  # the same body each time


async def test_the_webhook_fails_once_its_retries_are_spent(receiver, caplog):
    receiver.statuses = [503, 500, 502]
    ch = webhook_channels(receiver.url, webhook_retries=2)
    with caplog.at_level(logging.WARNING, logger="llmd.core.alert_channels"):
        assert await ch.send("webhook", an_event()) is False
    assert len(receiver.requests) == 3
    assert ch.counters.failed == {"webhook": 1} and ch.counters.sent == {}
    (record,) = [r for r in caplog.records if r.name == "llmd.core.alert_channels"]
    assert "HTTP 502 from 127.0.0.1 after 3 attempt(s)" in record.getMessage()
    assert "token=abc" not in record.getMessage() and record.exc_info is None


async def test_an_unreachable_webhook_returns_false_and_counts_a_failure(caplog):
    ch = webhook_channels(f"http://127.0.0.1:{free_port()}/hook", webhook_retries=1)
    with caplog.at_level(logging.WARNING, logger="llmd.core.alert_channels"):
        assert await ch.send("webhook", an_event()) is False
    assert ch.counters.failed == {"webhook": 1}
    assert any("ConnectError from 127.0.0.1 after 2 attempt(s)" in r.getMessage() for r in caplog.records)


async def test_a_webhook_that_never_answers_times_out(receiver):
    receiver.statuses = [None]
    ch = Channels(AlertsConfig(webhook_url=receiver.url, webhook_timeout_s=0.2, webhook_retries=0))
    assert await asyncio.wait_for(ch.send("webhook", an_event()), 5) is False
    assert ch.counters.failed == {"webhook": 1}


async def test_a_webhook_without_a_url_is_not_configured(caplog):
    ch = Channels(AlertsConfig(webhook_url=""))
    with caplog.at_level(logging.WARNING, logger="llmd.core.alert_channels"):
        assert await ch.send("webhook", an_event()) is False
    (record,) = [r for r in caplog.records if r.name == "llmd.core.alert_channels"]
    assert "not configured" in record.getMessage()
    assert ch.counters.failed == {"webhook": 1}


async def test_settings_are_read_at_send_time(receiver):
    cfg = AlertsConfig(webhook_url="", webhook_retries=0)
    ch = Channels(cfg)
    assert await ch.send("webhook", an_event()) is False
    cfg.webhook_url = receiver.url  # PUT /api/config
    assert await ch.send("webhook", an_event()) is True
    assert len(receiver.requests) == 1


async def test_an_unknown_channel_fails_without_raising():
    ch = Channels(AlertsConfig())
    assert await ch.send("pager", an_event()) is False
    assert ch.counters.failed == {"pager": 1}


# -- journal ------------------------------------------------------------------------
async def test_the_journal_logs_firing_as_warning_critical_as_error_and_resolved_as_info(caplog):
    ch = Channels(AlertsConfig())
    with caplog.at_level(logging.DEBUG, logger="llmd.alerts"):
        assert await ch.send("journal", an_event()) is True
        assert await ch.send("journal", an_event(severity="critical")) is True
        assert await ch.send("journal", an_event("resolved", severity="critical")) is True
    records = [r for r in caplog.records if r.name == "llmd.alerts"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.ERROR, logging.INFO]
    assert records[0].getMessage() == "alert alert-3 firing [warning] CPU hot: cpu_percent is 97.2 (> 90 for 5m)"
    assert ch.counters.sent == {"journal": 3}


# -- email --------------------------------------------------------------------------
class Mailbox:
    """An aiosmtpd handler that keeps every message, and an authenticator that knows one user."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []
        self.logins: list[tuple[str, bool]] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        msg = email.message_from_bytes(envelope.original_content or envelope.content, policy=email.policy.default)
        self.messages.append((list(envelope.rcpt_tos), msg))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (b"llmd", b"pw")
        self.logins.append((mechanism, ok))
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 235 or 535 itself


def smtp_server(mailbox: Mailbox, **kw) -> tuple[Controller, int]:
    port = free_port()
    ctl = Controller(mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate, **kw)
    ctl.start()
    return ctl, port


def email_config(port: int, **kw) -> AlertsConfig:
    base = {"smtp_host": "127.0.0.1", "smtp_port": port, "smtp_starttls": False, "smtp_username": "llmd",
            "smtp_password": "pw", "email_from": "llmd@box.example", "email_to": "ops@example.com, oncall@example.com"}
    return AlertsConfig(**{**base, **kw})


async def test_email_is_sent_with_login_on_a_plain_server():
    box = Mailbox()
    ctl, port = smtp_server(box, auth_require_tls=False)
    try:
        ch = Channels(email_config(port))
        assert await ch.send("email", an_event(severity="critical")) is True
        ((rcpts, msg),) = box.messages
        assert rcpts == ["ops@example.com", "oncall@example.com"]
        assert msg["Subject"] == "[llmd] CRITICAL CPU hot: firing"
        assert (msg["From"], msg["To"]) == ("llmd@box.example", "ops@example.com, oncall@example.com")
        text = msg.get_content()
        assert "cpu_percent is 97.2 (> 90 for 5m)" in text and "alert-3" in text and "2027-01-15T08:00:00.500Z" in text
        assert box.logins and box.logins[-1][1] is True and box.logins[-1][0] in ("LOGIN", "PLAIN")

        wrong = Channels(email_config(port, smtp_password="nope"))
        assert await wrong.send("email", an_event("resolved")) is False
        assert wrong.counters.failed == {"email": 1} and len(box.messages) == 1
    finally:
        ctl.stop()


async def test_email_logs_in_with_auth_login_when_plain_is_not_offered():
    box = Mailbox()
    ctl, port = smtp_server(box, auth_require_tls=False, auth_exclude_mechanism=["PLAIN"])
    try:
        assert await Channels(email_config(port)).send("email", an_event()) is True
        assert box.logins == [("LOGIN", True)] and len(box.messages) == 1
    finally:
        ctl.stop()


async def test_email_without_starttls_on_offer_is_refused_rather_than_sent_in_clear():
    box = Mailbox()
    ctl, port = smtp_server(box, auth_require_tls=False)
    try:
        ch = Channels(email_config(port, smtp_starttls=True))
        assert await ch.send("email", an_event()) is False
        assert box.messages == [] and box.logins == []  # not even the credentials went out
        assert ch.counters.failed == {"email": 1}
    finally:
        ctl.stop()


async def test_email_that_is_not_configured_fails():
    for cfg in (AlertsConfig(smtp_host="", email_to="ops@example.com"), AlertsConfig(smtp_host="x", email_to=" , ")):
        assert await Channels(cfg).send("email", an_event()) is False


async def test_an_unreachable_smtp_server_fails():
    assert await Channels(email_config(free_port())).send("email", an_event()) is False


def self_signed(tmp: Path) -> tuple[Path, Path] | None:
    """A certificate for 127.0.0.1 and localhost, and its key: with cryptography if installed, else openssl."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        if shutil.which("openssl") is None:
            return None
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                        "-out", str(cert), "-days", "1", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        return cert, key
    import ipaddress

    pk = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    crt = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(pk.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
           .not_valid_after(now + datetime.timedelta(days=1))
           .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                       x509.DNSName("localhost")]), critical=False)
           .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
           .sign(pk, hashes.SHA256()))
    cert.write_bytes(crt.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(pk.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    return cert, key


async def test_email_over_starttls_with_a_verified_certificate(tmp_path: Path):
    pair = self_signed(tmp_path)
    if pair is None:
        pytest.skip("neither the cryptography package nor the openssl command is here to make a certificate")
    cert, key = pair
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    box = Mailbox()
    ctl, port = smtp_server(box, tls_context=server_tls, require_starttls=True, auth_require_tls=True)
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        ch = Channels(email_config(port, smtp_starttls=True), tls_context=trusting)
        assert await ch.send("email", an_event("resolved")) is True
        ((_, msg),) = box.messages
        assert msg["Subject"] == "[llmd] WARNING CPU hot: resolved"
        assert box.logins == [(box.logins[0][0], True)]

        # the same server with the system's CAs: the self-signed certificate is refused, nothing is sent
        strict = Channels(email_config(port, smtp_starttls=True))
        assert await strict.send("email", an_event()) is False
        assert len(box.messages) == 1
    finally:
        ctl.stop()
