"""The browser tests' helpers: the daemon under test and a headless Chromium on its console.

Constants and classes shared by ``conftest.py`` (the fixtures) and the tests; see conftest.py for how the
browser is found and kept offline.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))

from daemonproc import DaemonProcess  # noqa: E402
from fakehub import FakeHub  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ARTEFACTS = Path(os.environ.get("LLMD_BROWSER_ARTEFACTS", ROOT / "build" / "console-screenshots"))
DOCS_IMG = ROOT / "docs" / "img"
REPO = "testorg/tiny-llama-GGUF"
FILE = "tiny-llama.Q8_0.gguf"
USER, PASSWORD = "console-admin", "correct horse battery staple"


def find_binary(env: str, *names: str) -> str | None:
    """``$env``, else the first of ``names`` on PATH, else None."""
    if os.environ.get(env):
        return os.environ[env]
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


class Box:
    """The daemon under test: auth on, an admin user, sampling every second, the fake hub as its hub."""

    def __init__(self, root: Path, hub: FakeHub) -> None:
        (root / "llmd.toml").write_text(
            "[auth]\nmode = \"on\"\nmax_failure_delay_s = 0.0\ntoken_ttl_s = 900\n"
            "[monitor]\ninterval_s = 1\n"
            "[deployments]\nkeep_alive_s = 0\n")
        self.proc = DaemonProcess(root, env={"HF_ENDPOINT": hub.url}).start()
        self.url = self.proc.url

    def admin(self) -> httpx.Client:
        """The local admin, over the Unix socket (no credential needed there)."""
        return httpx.Client(transport=httpx.HTTPTransport(uds=str(self.proc.socket_path)), base_url="http://llmd",
                            timeout=60)

    def wait_ready(self) -> Box:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.proc.poll() is None, self.proc.log()
            try:
                if self.proc.socket_path.exists() and self.admin().get("/health").json().get("model_loaded"):
                    return self
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.2)
        raise AssertionError(f"the daemon did not load its model:\n{self.proc.log()}")


class Browser:
    """A headless Chromium on the console, with helpers to wait, find and photograph."""

    def __init__(self, binaries: tuple[str, str], origin: str) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        opts = webdriver.ChromeOptions()
        opts.binary_location = binaries[0]
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,900", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-default-apps",
                    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
                    # The network cut off: no name but the daemon's address resolves.
                    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        self.driver = webdriver.Chrome(service=Service(binaries[1]), options=opts)
        self.driver.set_page_load_timeout(30)
        self.origin = origin
        self.requests: list[str] = []  # every URL the page asked for (HTTP and WebSocket)
        self.console: list[dict[str, Any]] = []  # the browser's console messages

    def drain_logs(self) -> None:
        """Move the browser's network and console logs into ``requests`` and ``console``."""
        for entry in self.driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] == "Network.requestWillBeSent":
                self.requests.append(msg["params"]["request"]["url"])
            elif msg["method"] == "Network.webSocketCreated":
                self.requests.append(msg["params"]["url"])
        self.console.extend(self.driver.get_log("browser"))

    def open(self, fragment: str = "") -> None:
        self.driver.get(f"{self.origin}/console/{fragment}")

    def wait(self, condition: Callable[[], Any], timeout: float = 20, what: str = "") -> Any:
        """Poll ``condition`` until it returns something truthy (exceptions count as not yet)."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = condition()
                if value:
                    return value
            except Exception as exc:  # noqa: BLE001 - an element not there yet
                last = exc
            time.sleep(0.1)
        self.shot(f"timeout-{what or 'wait'}")
        raise AssertionError(f"timed out waiting for {what or condition}: {last}")

    def css(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, selector)

    def button(self, text: str, within: Any = None):
        """The visible button whose text is ``text``."""
        from selenium.webdriver.common.by import By

        scope = within or self.driver
        for b in scope.find_elements(By.TAG_NAME, "button"):
            if b.text.strip() == text and b.is_displayed():
                return b
        raise LookupError(f"no button {text!r}")

    def type_into(self, selector: str, text: str) -> None:
        """Replace the field's text as a person does (select all, type), so that every keystroke is an input
        event; WebDriver's clear() is not one, and a re-render would put the old value back."""
        from selenium.webdriver.common.keys import Keys

        el = self.css(selector)
        el.send_keys(Keys.CONTROL, "a")
        el.send_keys(Keys.DELETE)
        el.send_keys(text)
        value = el.get_attribute("value")
        assert value == text, f"{selector}: typed {text!r}, the field holds {value!r}"

    def shot(self, name: str) -> Path:
        """A screenshot of the page from its top, notices dismissed, in ``ARTEFACTS``."""
        self.driver.execute_script("window.scrollTo(0, 0);"
                                   "document.querySelectorAll('.notices button').forEach((b) => b.click())")
        time.sleep(0.2)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        self.driver.quit()


def publish(path: Path, name: str) -> None:
    """With LLMD_UPDATE_DOCS_IMG=1, copy a screenshot to docs/img/console-<name>.png (docs/console.md)."""
    if os.environ.get("LLMD_UPDATE_DOCS_IMG") == "1":
        DOCS_IMG.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_IMG / f"console-{name}.png")
