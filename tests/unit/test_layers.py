"""The architecture's rules (docs/architecture.md), checked on the source.

- The import layers are import-linter contracts in pyproject.toml; this test
  runs them, so a violation fails the suite as well as ``make lint``.
- Every route handler calls at most one core method, and only through the
  core's components (fleet, inference, models, sessions, downloads, hub,
  monitor, auth): no handler touches the store, the registry, the event
  broker or the logs directly.
- Deployments share one contract: nothing asks which kind a deployment is
  by probing its attributes.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HTTP = ROOT / "llmd" / "http"
# What a handler may call on the core: its components' methods. ``streams`` and ``config`` are read,
# not called (an SSE response counts itself in ``core.streams``).
COMPONENTS = {"fleet", "inference", "models", "sessions", "downloads", "hub", "monitor", "auth", "history",
              "settings", "alerts", "backups", "responses"}
READ_ONLY = {"streams", "config"}


def test_import_contracts_hold():
    lint_imports = Path(sys.executable).with_name("lint-imports")
    if not lint_imports.exists():
        pytest.skip("import-linter is not installed in this environment")
    run = subprocess.run([str(lint_imports)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "broken" in run.stdout and " 0 broken" in run.stdout, run.stdout


def _core_attribute(node: ast.AST) -> tuple[str, str | None] | None:
    """``core.X`` -> ("X", None); ``core.X.Y`` -> ("X", "Y"); anything else None."""
    if isinstance(node, ast.Attribute):
        inner = node.value
        if isinstance(inner, ast.Name) and inner.id == "core":
            return node.attr, None
        if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and inner.value.id == "core":
            return inner.attr, node.attr
    return None


def _route_handlers(tree: ast.AST) -> list[ast.AsyncFunctionDef]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncFunctionDef):
            for deco in node.decorator_list:
                call = deco if isinstance(deco, ast.Call) else None
                func = call.func if call is not None else None
                if isinstance(func, ast.Attribute) and func.attr in ("route", "websocket"):
                    out.append(node)
    return out


def _api_modules() -> list[Path]:
    return [p for p in HTTP.rglob("*.py") if p.parent != HTTP]


def test_handlers_reach_the_core_only_through_its_components():
    problems = []
    for path in _api_modules():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            found = _core_attribute(node)
            if found is None:
                continue
            component, _ = found
            if component not in COMPONENTS | READ_ONLY:
                problems.append(f"{path.relative_to(ROOT)}:{node.lineno}: core.{component}")
    assert not problems, "handlers reach past the core's components:\n" + "\n".join(problems)


def _calls(node: ast.AST) -> set[str]:
    """The core methods called anywhere inside ``node``."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            found = _core_attribute(sub.func)
            if found is not None and found[0] in COMPONENTS and found[1] is not None:
                out.add(f"{found[0]}.{found[1]}")
    return out


def _paths(stmts: list[ast.stmt]) -> list[tuple[frozenset[str], bool]]:
    """Each way through ``stmts``: the core methods it calls, and whether it returned (an ``if`` forks)."""
    paths: list[tuple[frozenset[str], bool]] = [(frozenset(), False)]
    for stmt in stmts:
        nxt: list[tuple[frozenset[str], bool]] = []
        for calls, done in paths:
            if done:
                nxt.append((calls, done))
            elif isinstance(stmt, ast.If):
                test = calls | _calls(stmt.test)
                for branch in (stmt.body, stmt.orelse):
                    nxt.extend((test | c, d) for c, d in _paths(branch))
            else:
                nxt.append((calls | _calls(stmt), isinstance(stmt, (ast.Return, ast.Raise))))
        paths = nxt
    return paths


def test_each_handler_calls_at_most_one_core_method():
    problems, handlers = [], 0
    for path in _api_modules():
        tree = ast.parse(path.read_text(), str(path))
        for fn in _route_handlers(tree):
            handlers += 1
            for calls, _ in _paths(fn.body):
                if len(calls) > 1:
                    problems.append(f"{path.relative_to(ROOT)}:{fn.lineno} {fn.name}: {sorted(calls)}")
                    break
    assert handlers > 60, handlers  # the walk found the routes
    assert not problems, "handlers that orchestrate (call more than one core method):\n" + "\n".join(problems)


def test_no_code_asks_which_kind_of_deployment_it_has():
    problems = []
    for path in (ROOT / "llmd").rglob("*.py"):
        text = path.read_text()
        for needle in ('getattr(dep, "external"', "getattr(dep, 'external'", '"external", False', "setattr(dep,"):
            if needle in text:
                problems.append(f"{path.relative_to(ROOT)}: {needle}")
    assert not problems, problems
