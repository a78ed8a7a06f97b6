"""The package layers stay visible: core -> exporters -> device -> plan -> cli (pyproject's
import-linter contract), and bench/ scripts use the library, never the CLI's helpers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_is_kept():
    """A lower layer importing a higher one (e.g. edge.device importing edge.plan) fails here.

    In its own process: import-linter configures logging with ``dictConfig``, which disables
    every logger that exists at that moment, and later tests in this process check log records."""
    r = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                        f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}))"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_bench_scripts_import_the_library_not_the_cli():
    offenders = {p.name: sorted(m for m in _imports(p) if m == "edge.cli" or m.startswith("edge.cli."))
                 for p in sorted((ROOT / "bench").glob("*.py"))}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_every_module_is_in_a_layer():
    """A new module of edge/ must be placed in the contract, or the contract would not see it."""
    import tomllib

    layers = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"][0]["layers"]
    named = {m.strip() for layer in layers for part in layer.split("|") for m in part.split(":")}
    edge = ROOT / "edge"
    modules = {f"edge.{p.stem}" for p in edge.glob("*.py") if p.stem != "__init__"}
    modules |= {f"edge.{p.name}" for p in edge.iterdir() if (p / "__init__.py").is_file()}
    assert modules - named == set()
