"""The web console's routes (llmd/http/console/), without a browser: files, headers, the redirect of `/`,
the vendored files against their manifest, and the metrics history's raw samples and disk figures that
the dashboard reads. tests/browser/ drives the console itself in Chromium."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from pathlib import Path

import pytest

from llmd.http import create_app
from llmd.http.console.assets import STATIC

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z


@pytest.fixture
async def client(core_factory):
    core = await core_factory(**{"auth.mode": "on"})  # the console's files need no credential
    return create_app(core).test_client()


async def test_the_page_with_its_security_headers(client):
    r = await client.get("/console/")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    csp = r.headers["Content-Security-Policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "frame-ancestors 'none'", "base-uri 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Frame-Options"] == "DENY" and r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert r.headers["Cache-Control"] == "no-cache" and r.headers["ETag"]
    page = await r.get_data(as_text=True)
    # No inline script or style: every script is a file of the console, every style a stylesheet.
    for tag in re.findall(r"<script\b[^>]*>", page):
        assert "src=" in tag, tag
    assert all(not body.strip() for body in re.findall(r"<script\b[^>]*>(.*?)</script>", page, re.S))
    assert "<style" not in page and " style=" not in page
    assert "http://" not in page and "https://" not in page  # nothing from another origin


async def test_every_file_the_page_names_is_served(client):
    page = await (await client.get("/console/")).get_data(as_text=True)
    names = re.findall(r'(?:href|src)="([^"/#][^"]*)"', page)
    assert "js/main.js" in names and "vendor/uPlot.min.css" in names
    for name in names:
        r = await client.get(f"/console/{name}")
        assert r.status_code == 200, name
        assert r.headers["Content-Security-Policy"]


async def test_modules_import_only_files_of_the_console(client):
    """Relative imports between the console's modules resolve to files it serves; no bare specifier
    (that would need an import map, an inline script) and no other origin."""
    for path in sorted(STATIC.rglob("*.js")) + sorted(STATIC.rglob("*.mjs")):
        text = path.read_text()
        for spec in re.findall(r"""(?:^|[;\s}])(?:import|export)\b[^"';]*?from\s*["']([^"']+)["']""", text, re.M):
            assert spec.startswith("./") or spec.startswith("../"), f"{path.name}: {spec}"
            target = (path.parent / spec).resolve()
            assert target.is_file() and STATIC in target.parents, f"{path.name}: {spec}"
            r = await client.get("/console/" + target.relative_to(STATIC).as_posix())
            assert r.status_code == 200


def test_no_script_evaluates_strings():
    """The CSP forbids eval; none of the console's scripts (vendored ones included) relies on it."""
    for path in list(STATIC.rglob("*.js")) + list(STATIC.rglob("*.mjs")):
        text = path.read_text()
        assert "eval(" not in text and "new Function" not in text, path.name
    own = [p for p in STATIC.rglob("*.js") if "vendor" not in p.parts]
    for path in own:
        assert "innerHTML" not in path.read_text(), path.name


async def test_types_gzip_and_conditional_requests(client):
    r = await client.get("/console/vendor/uPlot.esm.js", headers={"Accept-Encoding": "gzip, deflate"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/javascript")
    assert r.headers["Content-Encoding"] == "gzip"
    body = gzip.decompress(await r.get_data())
    assert body == (STATIC / "vendor" / "uPlot.esm.js").read_bytes()
    again = await client.get("/console/vendor/uPlot.esm.js", headers={"If-None-Match": r.headers["ETag"]})
    assert again.status_code == 304 and await again.get_data() == b""
    css = await client.get("/console/console.css")
    assert css.headers["Content-Type"].startswith("text/css") and "Content-Encoding" not in css.headers


@pytest.mark.parametrize("path", ["/console/nope.js", "/console/../pyproject.toml", "/console/%2e%2e/app.py",
                                  "/console/js/../../routes.py", "/console/vendor/", "/console/x\ny"])
async def test_unknown_files_are_404_in_the_fallback_envelope(client, path):
    r = await client.get(path)
    assert r.status_code == 404
    body = json.loads(await r.get_data(as_text=True))
    assert set(body) == {"detail"}


async def test_console_without_a_slash_and_browsers_at_the_root(client):
    r = await client.get("/console")
    assert r.status_code == 308 and r.headers["Location"].endswith("/console/")
    r = await client.get("/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/console/")
    # Ollama's clients (no text/html in Accept) keep their probe's answer.
    r = await client.get("/")
    assert r.status_code == 200 and await r.get_data(as_text=True) == "Ollama is running"
    r = await client.get("/", headers={"Accept": "application/json"})
    assert await r.get_data(as_text=True) == "Ollama is running"


def test_the_vendored_files_match_their_manifest():
    """vendor.json (written by scripts/console-vendor) names each package, its version, licence and the
    sha256 of every file copied; the files and the licence texts are all there."""
    vendor = STATIC / "vendor"
    manifest = json.loads((vendor / "vendor.json").read_text())
    assert set(manifest) == {"preact", "htm", "uplot"}
    lock = json.loads((Path(__file__).resolve().parents[2] / "console" / "package-lock.json").read_text())
    for package, entry in manifest.items():
        assert entry["version"] == lock["packages"][f"node_modules/{package}"]["version"]
        assert entry["license"] and (vendor / entry["license_file"]).stat().st_size > 500
        for name, f in entry["files"].items():
            assert hashlib.sha256((vendor / name).read_bytes()).hexdigest() == f["sha256"], name


def test_the_package_data_carries_the_static_files():
    """pyproject.toml's package data matches every file of static/ (an installed llmd and the .deb serve
    them)."""
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"llmd.http.console" = ["static/*", "static/**/*"]' in text
    assert (STATIC / "index.html").is_file()


# -- what the dashboard reads: raw samples and the disk ----------------------------------------------

@pytest.fixture
async def sampled(core_factory):
    core = await core_factory(**{"monitor.interval_s": 0})
    for dt in (0, 1, 2, 30):
        await core.history.sample_once(now=T0 + dt)
    return create_app(core).test_client()


async def test_raw_samples_and_the_disk(sampled):
    r = await sampled.get("/api/monitoring/metrics?start_time=2027-01-15T08:00:00Z&end_time=2027-01-15T08:10:00Z"
                          "&interval=raw&metric_type=disk")
    body = json.loads(await r.get_data(as_text=True))
    assert r.status_code == 200, body
    assert [m["timestamp"] for m in body["metrics"]] == ["2027-01-15T08:00:00Z", "2027-01-15T08:00:01Z",
                                                         "2027-01-15T08:00:02Z", "2027-01-15T08:00:30Z"]
    first = body["metrics"][0]
    assert set(first) == {"timestamp", "disk_percent", "disk_used"}
    assert 0 < first["disk_percent"] <= 100 and first["disk_used"] > 1  # MiB
    assert body["interval"] == "raw" and body["summary"]["max_disk_percent"] >= body["summary"]["avg_disk_percent"]
    # The default types, raw: each sample of cpu, memory and gpu.
    r = await sampled.get("/api/monitoring/metrics?start_time=2027-01-15T08:00:00Z&end_time=2027-01-15T08:10:00Z"
                          "&interval=raw")
    body = json.loads(await r.get_data(as_text=True))
    assert len(body["metrics"]) == 4 and "cpu_percent" in body["metrics"][0]


async def test_raw_samples_over_more_than_two_hours_are_refused(sampled):
    r = await sampled.get("/api/monitoring/metrics?start_time=2027-01-15T05:00:00Z&end_time=2027-01-15T08:00:00Z"
                          "&interval=raw")
    body = json.loads(await r.get_data(as_text=True))
    assert r.status_code == 400 and body["error"]["details"]["field"] == "interval", body
