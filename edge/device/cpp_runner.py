"""The native ExecuTorch runner (apps/cpp ``matedge_runner``): built once with CMake, then cached.

It is built against the runtime the executorch wheel ships (headers, libraries and a CMake
config under ``site-packages/executorch``) and reused while its sources are unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

from edge.device.runners import ProfilerError

REPO = Path(__file__).resolve().parents[2]
CPP_DIR = REPO / "apps" / "cpp"
CPP_BUILD = CPP_DIR / "build"


def package_root(name: str, extra: str = "executorch") -> Path:
    """An installed package's folder (found without importing it)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ProfilerError(f"the ExecuTorch runner needs the Python package {name!r}: pip install 'matformer-edge[{extra}]'")
    return Path(list(spec.submodule_search_locations)[0])


@contextlib.contextmanager
def build_lock(build_dir: Path):
    """Hold an exclusive lock on ``build_dir`` (created if missing) while one process builds in it:
    two commands (or two test workers) that find the binary stale must not run CMake in one
    folder at once. The kernel drops the lock when the process dies, so none is ever left stale."""
    build_dir = Path(build_dir)
    build_dir.mkdir(parents=True, exist_ok=True)
    with open(build_dir / ".build.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


def ensure_cpp_runner(build_dir: Path = CPP_BUILD, rebuild: bool = False) -> Path:
    """Build ``matedge_runner`` with CMake once; reuse it while its sources are unchanged."""
    binary = Path(build_dir) / "matedge_runner"
    sources = [CPP_DIR / "runner.cpp", CPP_DIR / "CMakeLists.txt", *sorted(CPP_DIR.glob("*.hpp"))]

    def fresh() -> bool:
        return binary.is_file() and all(binary.stat().st_mtime >= s.stat().st_mtime for s in sources)

    if not rebuild and fresh():
        return binary
    if shutil.which("cmake") is None:
        raise ProfilerError("building the ExecuTorch runner needs cmake and a C++ compiler (apt-get install cmake g++)")
    # pytorch-tokenizers (a dependency of the executorch wheel) reads tokenizer.json in C++
    steps = [["cmake", "-S", str(CPP_DIR), "-B", str(build_dir), f"-DEXECUTORCH_ROOT={package_root('executorch')}",
              f"-DPYTORCH_TOKENIZERS_ROOT={package_root('pytorch_tokenizers')}",
              f"-DPython3_EXECUTABLE={sys.executable}", "-DCMAKE_BUILD_TYPE=Release"],
             ["cmake", "--build", str(build_dir), "-j2"]]
    with build_lock(build_dir):
        if not rebuild and fresh():  # another process built it while this one waited
            return binary
        for step in steps:
            r = subprocess.run(step, capture_output=True, text=True)
            if r.returncode != 0:
                tail = " | ".join((r.stdout + r.stderr).strip().splitlines()[-3:])
                raise ProfilerError(f"building apps/cpp failed ({' '.join(step[:2])}): {tail}")
    return binary
