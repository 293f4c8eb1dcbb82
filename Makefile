# llmd developer entry points. `make run` and `make test` set everything up first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.llmd-installed
HOST   ?= 127.0.0.1
PORT   ?= 8000

# FUZZ_SEED empty: a new random seed each run (printed); FUZZ_SEED=N replays one (`make test` too).
FUZZ_SEED  ?=
FUZZ_CASES ?= 5000

.PHONY: setup run lint test test-fast bench fuzz clean

$(STAMP): pyproject.toml scripts/setup-venv
	PYTHON=$(PYTHON) scripts/setup-venv $(VENV)
	@touch $@

setup: $(STAMP)

# Foreground daemon on the bundled model; Ctrl-C stops it.
run: $(STAMP)
	$(BIN)/llmd --host $(HOST) --port $(PORT)

# Style (ruff) and the layers of docs/architecture.md (import-linter contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check llmd tests scripts/bench scripts/fuzz scripts/console-vendor
	$(BIN)/lint-imports

# The lint, then the whole suite: unit (FakeEngine), API (Quart test client), e2e (real daemon, real model),
# browser (the web console in headless Chromium, installed from Debian's packages when root can).
test: lint
	scripts/setup-browser
	$(BIN)/python -m pytest -q -ra $(PYTEST_ARGS)

# Everything except the end-to-end tests.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e" $(PYTEST_ARGS)

# llmd against llama-server and llama-cpp-python's server (scripts/bench --help;
# BENCH_ARGS="--quick" for a smoke run). llama-server is built once with
# scripts/build-llama-server and cached in ~/.cache/llmd-bench; without it the
# bench skips that peer.
bench: $(STAMP)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python scripts/bench $(BENCH_ARGS)

# schemathesis against a real daemon (auth on, an admin key) from its own /openapi.json: 0 server
# errors and 0 responses off their declared schema. `make test` runs a short budget
# (tests/e2e/test_fuzz.py); this is the long one. Both print their seed ("fuzz: seed N").
fuzz: $(STAMP)
	FUZZ_SEED=$(FUZZ_SEED) $(BIN)/python scripts/fuzz --cases $(FUZZ_CASES)

# The web console's vendored front-end packages (console/package-lock.json -> llmd/http/console/static/vendor/,
# committed; docs/console.md). `make test` checks them where npm reaches the registry (tests/browser/test_vendor.py).
.PHONY: console console-screenshots
console:
	scripts/console-vendor

# The browser tests, and their screenshots copied to docs/img/console-*.png for docs/console.md.
console-screenshots: $(STAMP)
	scripts/setup-browser
	LLMD_UPDATE_DOCS_IMG=1 $(BIN)/python -m pytest -q tests/browser $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Debian 12 packages (llmd, llmd-model-smollm2) in ~/.cache/llmd-deb/out/: scripts/build-deb --help.
deb:
	scripts/build-deb $(DEB_ARGS)

# The packages end to end on a real systemd in a container (root; scripts/test-deb --help).
.PHONY: test-deb
test-deb: ; scripts/test-deb
