"""The backend registry: one ``Backend`` record per backend, registered in ``BACKENDS``.

Everything the rest of the project needs to know about a backend is a field here, so that no
module outside ``exporters/`` compares a backend's name: the profile loader reads
``precisions``, the CLI ``default_precision``, the roofline estimate ``bytes_per_weight``, the
profiler ``runner`` and ``libraries``. The record imports nothing heavy; ``Backend.exporter()``
imports the backend's module (``export``, ``load_runner``, ``check``) when it is used.

Adding a backend: write ``exporters/<name>.py`` (see ``exporters.base`` for what it exposes) and
add one ``Backend(...)`` to ``BACKENDS`` below.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable

from exporters.base import ExportError, require
from exporters.logs import install_log_filters, runtime_logs_hidden


def _always() -> bool:
    return True


@dataclass(frozen=True)
class Backend:
    """What one backend writes, needs and runs with."""
    name: str
    module: str  # the exporter module, e.g. "exporters.executorch" (imported lazily)
    suffix: str  # ".pte", ".tflite", ".mlpackage"
    precisions: tuple[str, ...]  # what it can write; the first is its float precision
    default_precision: str
    extra: str  # the pyproject extra that installs its libraries
    probe: str  # the module its export needs (imported to give an install hint early)
    bytes_per_weight: dict[str, float]  # stored bytes of one weight at each precision (roofline estimate)
    libraries: tuple[str, ...]  # distributions whose versions a cost table records
    # How its artifacts are timed on a device: a runner name in edge.device.runners
    # ("matedge_runner": the apps/cpp binary; "runner_litert": a Python script), or None when this
    # project has no runner for it (measure in the sample app and import the table).
    runner: str | None = None
    runs_here: Callable[[], bool] = field(default=_always)  # its own runtime runs on this machine
    # The module writing its elastic artifact (several members, weights once, one KV cache):
    # ``export_elastic(model, members, out_path, context=, default=, precision=)`` and
    # ``load_runner(path, members)``; None when the backend writes none.
    elastic: str | None = None
    # Graph variants its exporter can write (`matedge export --ops`); the first is the default.
    ops: tuple[str, ...] = ()
    # Stored copies of a tied embedding/head table (roofline estimate): a .pte holds two, the
    # lookup's constant and XNNPACK's packed head (exporters/executorch.py _quantize); a .tflite
    # and an .mlpackage one (tests/exporters/test_quantized_table.py checks each file).
    table_copies: int = 1
    # What its timings depend on beyond the library versions: the graph the exporter writes and
    # how the runner calls it. A cost table records it; one measured under another method is
    # stale (edge/device/table_source.py) and is measured again. Change it when either changes.
    cost_method: str = "1"
    # Precisions whose activations are quantized at run time (dynamic int8): their exports smooth
    # activation outliers into the weights first (exporters/smoothing.py).
    smoothed: tuple[str, ...] = ()

    def exporter(self) -> ModuleType:
        """The backend module; ExportError naming the pip extra when its library is missing."""
        module = importlib.import_module(self.module)
        install_log_filters()  # before its libraries are first imported: they log on import
        with runtime_logs_hidden(kind="import"):  # litert-torch's TensorFlow parts print absl/oneDNN notices
            require(self.probe, self.extra, f"the {self.name} exporter")
        return module

    def elastic_exporter(self) -> ModuleType:
        """The module writing this backend's elastic artifact; ExportError when it has none."""
        if self.elastic is None:
            able = ", ".join(b.name for b in BACKENDS.values() if b.elastic)
            raise ExportError(f"backend {self.name!r} writes no elastic artifact (backends that do: {able})")
        self.exporter()  # the same install hint and log filters as a plain export
        return importlib.import_module(self.elastic)

    def check_precision(self, precision: str) -> None:
        """ExportError unless this backend writes ``precision`` (and who does, if another one)."""
        if precision not in self.precisions:
            others = [b.name for b in BACKENDS.values() if precision in b.precisions]
            hint = f"; {precision!r} is written by {', '.join(others)}" if others else ""
            raise ExportError(f"backend {self.name!r} cannot write precision {precision!r} "
                              f"(allowed: {', '.join(self.precisions)}){hint}")

    def check_ops(self, ops: str | None) -> None:
        """ExportError unless ``ops`` is None (the default graph) or one this backend writes."""
        if ops is None or ops in self.ops:
            return
        if not self.ops:
            others = [b.name for b in BACKENDS.values() if ops in b.ops]
            raise ExportError(f"backend {self.name!r} has no choice of ops (--ops {ops!r} is for "
                              f"{', '.join(others) or 'no backend'})")
        raise ExportError(f"backend {self.name!r} has no ops {ops!r} (allowed: {', '.join(self.ops)})")


def _on_macos() -> bool:
    return platform.system() == "Darwin"


BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend(name="executorch", module="exporters.executorch", suffix=".pte", precisions=("fp32", "int8", "8da4w"),
            default_precision="fp32", extra="executorch", probe="executorch.exir",
            bytes_per_weight={"fp32": 4.0, "int8": 1.0, "8da4w": 0.5},
            libraries=("executorch", "torch"), runner="matedge_runner", elastic="exporters.elastic", ops=("llama", "aten"),
            table_copies=2, cost_method="llama-ops", smoothed=("int8",)),
    Backend(name="litert", module="exporters.litert", suffix=".tflite", precisions=("fp32", "int8"),
            default_precision="fp32", extra="litert", probe="litert_torch",
            bytes_per_weight={"fp32": 4.0, "int8": 1.0},
            libraries=("ai-edge-litert", "litert-torch"), runner="runner_litert",
            elastic="exporters.elastic_litert", cost_method="decode-windows, caches in place", smoothed=("int8",)),
    Backend(name="coreml", module="exporters.coreml", suffix=".mlpackage", precisions=("fp16", "int8", "pal4"),
            default_precision="fp16", extra="coreml", probe="coremltools",
            bytes_per_weight={"fp16": 2.0, "int8": 1.0, "pal4": 0.5},
            libraries=("coremltools",), runner=None, runs_here=_on_macos, elastic="exporters.elastic_coreml"),
)}


def get_backend(name: str) -> Backend:
    """The record of ``name``; ExportError listing the known backends otherwise."""
    if name not in BACKENDS:
        raise ExportError(f"unknown backend {name!r} (allowed: {', '.join(BACKENDS)})")
    return BACKENDS[name]
