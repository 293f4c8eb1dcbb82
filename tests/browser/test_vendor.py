"""The vendored front-end files are what console/package-lock.json builds (scripts/console-vendor --check).

It needs npm and the npm registry (``npm ci`` in ~/.cache/llmd-console); where either is missing it
skips, saying so. A difference (a hand-edited or stale copy, a lock file changed without running
``scripts/console-vendor``) fails. tests/api/test_console_api.py checks the files against their
manifest without npm.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NPM_FAILED = 3  # scripts/console-vendor's status when npm cannot install


def test_vendored_files_match_the_lock_file():
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: the vendored files cannot be rebuilt to compare (apt-get install npm)")
    run = subprocess.run([sys.executable, str(ROOT / "scripts" / "console-vendor"), "--check"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    if run.returncode == NPM_FAILED:
        pytest.skip(f"npm could not install the locked packages (no registry?): {run.stderr.strip()[-300:]}")
    assert run.returncode == 0, run.stdout + run.stderr
