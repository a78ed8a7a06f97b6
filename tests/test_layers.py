"""The package layers stay visible: core -> exporters -> device -> plan -> cli (pyproject's
import-linter contract), and bench/ scripts use the library, never the CLI's helpers."""

from __future__ import annotations

import ast
from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_is_kept():
    """A lower layer importing a higher one (e.g. edge.device importing edge.plan) fails here."""
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0



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
