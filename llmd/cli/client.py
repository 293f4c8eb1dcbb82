"""The HTTP client of llmctl: httpx over the daemon's Unix socket (or a TCP URL)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx

from llmd.config import load_config, unknown_env
from llmd.errors import ConfigError

FALLBACK_SOCKET = Path("/run/llmd/llmd.sock")


class CliError(Exception):
    """A failure to report in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def default_socket(warn: Callable[[str], None] | None = None) -> Path:
    """The socket the daemon would use with the same config and environment.

    A variable or a config file that the daemon would refuse is named in a
    warning (``warn``, stderr by default) and left out, rather than making
    llmctl look for the daemon in the wrong place and report it not running.
    """
    if os.environ.get("LLMCTL_SOCKET"):
        return Path(os.environ["LLMCTL_SOCKET"])
    warn = warn or (lambda text: print(text, file=sys.stderr))
    env = dict(os.environ)
    for name in unknown_env(env):
        warn(f"llmctl: ignoring {name}: it names no llmd setting (the daemon would refuse to start with it)")
        del env[name]
    try:
        path = load_config(env=env).socket_path
    except ConfigError as exc:
        warn(f"llmctl: cannot read llmd's configuration ({exc}); trying {FALLBACK_SOCKET}")
        path = None
    if path is not None and _exists(path):
        return path
    return FALLBACK_SOCKET if _exists(FALLBACK_SOCKET) or path is None else path


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; a directory this user may not search (/run/llmd is 0750) counts as yes:
    the connection then fails with the permission message, not a traceback."""
    try:
        return path.exists()
    except PermissionError:
        return True


class Client:
    """Talks to one daemon."""

    def __init__(self, socket_path: Path | None = None, url: str | None = None, timeout: float = 600) -> None:
        self.socket_path = socket_path
        self.url = url
        # Over TCP with auth on, llmctl needs a credential; over the Unix socket the kernel vouches for the user.
        key = os.environ.get("LLMCTL_API_KEY", "").strip()
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if url:
            self.http = httpx.Client(base_url=url, timeout=timeout, headers=headers)
        else:
            self.socket_path = socket_path or default_socket()
            self.http = httpx.Client(transport=httpx.HTTPTransport(uds=str(self.socket_path)),
                                     base_url="http://llmd", timeout=timeout, headers=headers)

    def _not_running(self) -> CliError:
        if self.url is None and self.socket_path is not None and _exists(self.socket_path) \
                and not os.access(self.socket_path, os.R_OK | os.W_OK):
            return CliError(f"permission denied on {self.socket_path}: run llmctl as root, as llmd's user, "
                            f"or as a member of its group (auth.unix_group)")
        where = self.url or f"no daemon answers on {self.socket_path}"
        return CliError(f"llmd is not running ({where}); start it with 'sudo systemctl start llmd' "
                        f"or 'make run' in a checkout")

    @staticmethod
    def _error_text(resp: httpx.Response) -> str:
        try:
            body = resp.json()
        except ValueError:
            return f"HTTP {resp.status_code}"
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return str(err.get("message") or err)
        if isinstance(err, str):  # the LLM Manager API's {"success": false, "message", "error": "CODE"}
            return str(body.get("message") or err)
        if isinstance(body, dict) and "detail" in body:
            return str(body["detail"])
        return f"HTTP {resp.status_code}: {body}"

    def request(self, method: str, path: str, **kw: Any) -> Any:
        """One JSON request; raises :class:`CliError` with the daemon's message on failure."""
        try:
            resp = self.http.request(method, path, **kw)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError, PermissionError):
            raise self._not_running() from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to llmd failed: {exc}") from None
        if resp.status_code >= 400:
            raise CliError(self._error_text(resp))
        return resp.json()

    def download(self, path: str, dest: Path) -> int:
        """GET ``path`` into ``dest`` (written as ``dest.partial``, renamed once whole); returns its size."""
        partial = dest.with_name(dest.name + ".partial")
        try:
            with self.http.stream("GET", path) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise CliError(self._error_text(resp))
                with partial.open("wb") as fh:
                    for chunk in resp.iter_bytes():
                        fh.write(chunk)
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError, PermissionError):
            partial.unlink(missing_ok=True)
            raise self._not_running() from None
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            raise CliError(f"request to llmd failed: {exc}") from None
        partial.replace(dest)
        return dest.stat().st_size

    def stream(self, path: str, body: dict[str, Any] | None = None, *, method: str = "POST",
               params: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Send one request and yield the JSON of each SSE ``data:`` event until ``[DONE]``."""
        try:
            with self.http.stream(method, path, json=body, params=params) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise CliError(self._error_text(resp))
                for line in resp.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    data = line[6:]
                    if data == "[DONE]":
                        return
                    event = json.loads(data)
                    if "error" in event:
                        raise CliError(str(event["error"].get("message", event["error"])))
                    yield event
        except (httpx.ConnectError, FileNotFoundError, ConnectionRefusedError, PermissionError):
            raise self._not_running() from None
        except httpx.HTTPError as exc:
            raise CliError(f"request to llmd failed: {exc}") from None
