"""The web console in headless Chromium against the real daemon (docs/console.md).

Debian's ``chromium`` and ``chromium-driver`` (``scripts/setup-browser``, run by ``make test``, installs
them as root) are driven by selenium. Where either is missing every test here is skipped, with a message
that names what to install. The browser runs with every host name but 127.0.0.1 made unresolvable, so
the console is exercised as on a box with its network cut off; the tests also read the browser's network
log and fail on any request that leaves the daemon's origin.

Screenshots of each page go to ``build/console-screenshots/`` (git-ignored; ``LLMD_BROWSER_ARTEFACTS``
moves it); with ``LLMD_UPDATE_DOCS_IMG=1`` (``make console-screenshots``) the chosen ones are copied to
``docs/img/console-*.png``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from consolebox import FILE, PASSWORD, REPO, USER, Box, Browser, find_binary
from fakehub import FakeHub
from runnable_gguf import write_random_llama_gguf

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def browser_binaries() -> tuple[str, str]:
    """(chromium, chromedriver), or the session's browser tests skip saying what is missing."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip("selenium is not installed (pip install -e '.[test]')")
    chromium = find_binary("LLMD_CHROMIUM", "chromium", "chromium-browser")
    driver = find_binary("LLMD_CHROMEDRIVER", "chromedriver")
    if chromium is None or driver is None:
        pytest.skip("no headless Chromium: apt-get install chromium chromium-driver "
                    "(scripts/setup-browser does it as root; make test runs it)")
    return chromium, driver


@pytest.fixture(scope="module")
def hub() -> Iterator[FakeHub]:
    """A local fake hub with one small llama model (random weights; it loads and streams), throttled so that
    a pull takes a few seconds."""
    src = Path(tempfile.mkdtemp(prefix="llmd-console-hub-"))
    model = write_random_llama_gguf(src / FILE, n_embd=64, n_layer=2, n_head=2, n_head_kv=1, n_ff=128,
                                    context_length=8192, name="tiny-llama")
    h = FakeHub(throttle_bps=max(1, model.stat().st_size // 4))  # about 4 s for the whole file
    h.add_repo(REPO, {FILE: model}, downloads=1234, likes=56)
    with h:
        yield h
    shutil.rmtree(src, ignore_errors=True)


@pytest.fixture(scope="module")
def box(hub: FakeHub, browser_binaries) -> Iterator[Box]:
    root = Path(tempfile.mkdtemp(prefix="llmd-console-"))
    b = Box(root, hub)
    try:
        b.wait_ready()
        with b.admin() as c:
            r = c.post("/llmd/v1/users", json={"username": USER, "password": PASSWORD, "scope": "admin"})
            assert r.status_code in (200, 201), r.text
        yield b
    finally:
        b.proc.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def browser(box: Box, browser_binaries) -> Iterator[Browser]:
    b = Browser(browser_binaries, box.url)
    try:
        yield b
    finally:
        b.quit()
