"""End-to-end fixtures: the real daemon as a subprocess, with the real bundled model.

Every daemon listens on 127.0.0.1 (a free port) and on a Unix socket in a
temporary directory, and is stopped (SIGTERM, then SIGKILL) by the fixture.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from daemonproc import DaemonProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short temporary directory (Unix socket paths must stay under 108 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def daemon() -> Iterator[DaemonProcess]:
    """One real daemon on the bundled model, shared by the session's e2e tests."""
    root = Path(tempfile.mkdtemp(prefix="llmd-e2e-"))
    d = DaemonProcess(root).start()
    try:
        d.wait_loaded()
        yield d
    finally:
        d.stop()
        shutil.rmtree(root, ignore_errors=True)
