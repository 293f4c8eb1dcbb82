"""A short, seeded schemathesis run against a real daemon with auth on (``make fuzz`` runs the long one)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_short_fuzz_has_no_server_errors_and_no_schema_violations(tmp_path):
    report = tmp_path / "junit.xml"
    # Its own session, so that a timeout also ends the daemon and schemathesis it started.
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "fuzz"), "--seed", "1", "--cases", "300",
                             "--phases", "examples,fuzzing", "--report", str(report), "--tail", "6000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail("the fuzz run did not finish in 840 s:\n" + out[-4000:] + err[-2000:])
    r = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "operations" in r.stdout and report.exists()
    text = report.read_text()
    assert "<testcase" in text, "schemathesis ran no test cases"
