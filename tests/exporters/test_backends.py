"""The backend registry is the one place backend knowledge lives."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from exporters import EXPORTERS, PRECISIONS
from exporters.backends import BACKENDS, get_backend
from exporters.base import ExportError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", list(BACKENDS))
def test_record_matches_its_module(name):
    b = BACKENDS[name]
    module = importlib.import_module(b.module)  # cheap: no backend library is imported
    assert module.BACKEND is b and (module.PRECISIONS, module.SUFFIX, module.EXTRA) == (b.precisions, b.suffix, b.extra)
    assert b.default_precision in b.precisions and set(b.bytes_per_weight) == set(b.precisions)
    assert EXPORTERS[name] == b.module and PRECISIONS[name] == b.precisions
    assert callable(module.check) and callable(module.export) and callable(module.load_runner)


def test_unknown_backend_lists_the_registry():
    with pytest.raises(ExportError, match="unknown backend 'onnx' \\(allowed: executorch, litert, coreml\\)"):
        get_backend("onnx")


def _name_comparisons(path: Path) -> list[str]:
    """Places in ``path`` that compare a value with a backend's name or key a dict by one."""
    names, found = set(BACKENDS), []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Compare):
            consts = [c for c in (node.left, *node.comparators) if isinstance(c, ast.Constant)]
            consts += [e for c in node.comparators if isinstance(c, (ast.Tuple, ast.List, ast.Set)) for e in c.elts
                       if isinstance(e, ast.Constant)]
            if any(c.value in names for c in consts):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
        elif isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value in names for k in node.keys):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_no_backend_name_comparison_outside_exporters():
    files = [p for folder in ("edge", "bench") for p in sorted((ROOT / folder).rglob("*.py"))]
    assert [hit for p in files for hit in _name_comparisons(p)] == []
