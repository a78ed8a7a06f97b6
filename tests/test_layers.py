"""The package layers stay visible: core -> exporters -> device -> plan -> cli (pyproject's
import-linter contract, run here so that a lower layer importing a higher one fails the tests)."""

from __future__ import annotations

from pathlib import Path

from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_is_kept():
    """A lower layer importing a higher one (e.g. edge.device importing edge.plan) fails here."""
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0

