"""A short, seeded schemathesis run against a real daemon with auth on (``make fuzz`` runs the long one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def test_short_fuzz_has_no_server_errors_and_no_schema_violations(tmp_path):
    report = tmp_path / "junit.xml"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "fuzz"), "--seed", "1", "--cases", "300",
                        "--phases", "examples,fuzzing", "--report", str(report), "--tail", "6000"],
                       capture_output=True, text=True, timeout=840, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert "operations" in r.stdout and report.exists()
    text = report.read_text()
    assert "<testcase" in text, "schemathesis ran no test cases"
