"""A short schemathesis run against a real daemon with auth on (``make fuzz`` runs the long one).

Each run takes a new random seed, so that every CI run explores new cases;
``FUZZ_SEED=N`` pins one (``FUZZ_SEED=N make test`` replays a failure). The
seed is printed when the test starts and named in the failure message.
"""

from __future__ import annotations

import copy
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis

from llmd.http import create_app

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CASES = 300
# Coverage is left to `make fuzz`: it sends every case the schema defines whatever the budget.
PHASES = "examples,fuzzing,stateful"


def fuzz_seed() -> int:
    """``FUZZ_SEED`` if set, else a new random seed."""
    env = os.environ.get("FUZZ_SEED", "").strip()
    return int(env) if env else random.SystemRandom().randrange(1, 2**31)


def test_short_fuzz_has_no_server_errors_and_no_schema_violations(tmp_path, capsys):
    seed = fuzz_seed()
    replay = f"FUZZ_SEED={seed} make test PYTEST_ARGS='-k test_short_fuzz'"
    with capsys.disabled():
        print(f"\nfuzz: seed {seed} (replay: {replay})", flush=True)
    report = tmp_path / "junit.xml"
    # Its own session, so that a timeout also ends the daemon and schemathesis it started.
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "fuzz"), "--seed", str(seed),
                             "--cases", str(CASES), "--phases", PHASES, "--report", str(report), "--tail", "6000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=840)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the fuzz run (seed {seed}) did not finish in 840 s; replay: {replay}\n"
                    + out[-4000:] + err[-2000:])
    assert proc.returncode == 0, f"fuzz seed {seed} failed; replay: {replay}\n" + out[-6000:] + err[-2000:]
    assert "operations" in out and report.exists(), f"seed {seed}:\n{out[-2000:]}"
    text = report.read_text()
    assert "<testcase" in text, f"schemathesis ran no test cases (seed {seed})"


async def test_the_documents_links_make_a_state_machine(fake_core):
    """Every OpenAPI link resolves for schemathesis (an operation or expression it cannot read would stop
    the stateful phase), and the workflows of docs/api.md are linked: a model's life, a key's, a
    download's."""
    r = await create_app(fake_core).test_client().get("/openapi.json")
    spec = json.loads(await r.get_data(as_text=True))
    # (on a copy: schemathesis adds the links it infers to the document it is given)
    schemathesis.openapi.from_dict(copy.deepcopy(spec)).as_state_machine()  # raises on a link it cannot follow
    ops = {f"{m.upper()} {p}": op for p, item in spec["paths"].items() for m, op in item.items()}
    ids = {op["operationId"]: key for key, op in ops.items()}

    def targets(source: str) -> set[str]:
        return {ids[link["operationId"]] for link in ops[source]["responses"]["2XX"]["links"].values()}

    assert {"GET /api/models/{model_id}", "POST /api/models/{model_id}/start", "POST /api/models/{model_id}/stop",
            "DELETE /api/models/{model_id}"} <= targets("POST /api/models")
    assert "DELETE /llmd/v1/keys/{key_ref}" in targets("POST /llmd/v1/keys")
    assert {"PUT /api/downloads/task_{task_key}/pause", "PUT /api/downloads/task_{task_key}/resume",
            "PUT /api/downloads/task_{task_key}/cancel"} <= targets("POST /api/downloads/start")
    assert "GET /api/tasks/{task_id}" in targets("POST /api/models/{model_id}/start")
