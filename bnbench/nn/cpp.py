"""The C++ CPU kernels of bnbench's own BN (`kernel="cpp"`, source: csrc/batchnorm.cpp), built on
first use with torch's extension builder (a C++ compiler and ninja, ~20-40 s once), then cached by
torch under $TORCH_EXTENSIONS_DIR (default ~/.cache/torch_extensions/) keyed by the source, so
later runs, and the other jobs of a study, load it in well under a second.

Where it cannot be built (no compiler, no ninja, headers missing) `kernel()` warns once, naming
the cause, and returns None: the layer then runs kernel="fast", as "compiled" does when
torch.compile cannot build.
"""

from __future__ import annotations

import contextlib
import hashlib
import platform
import threading
import warnings
from pathlib import Path

SOURCE = Path(__file__).parent / "csrc" / "batchnorm.cpp"
NAME = "bnbench_batchnorm_cpu"

_lock = threading.Lock()
_state: dict = {}  # "module": the loaded extension, or None after a failed build


def _cpu_tag() -> str:
    """Built with -march=native, a build is only for CPUs like this one: its name carries a hash of
    the CPU's model and instruction-set flags, so a cache shared between machines (a cluster's
    home directory) holds one build per kind of CPU instead of handing one a build it cannot run."""
    info = ""
    with contextlib.suppress(OSError):
        info = "\n".join(sorted({line for line in Path("/proc/cpuinfo").read_text().splitlines()
                                 if line.startswith(("model name", "flags"))}))
    return hashlib.sha256(f"{platform.machine()}\n{info}".encode()).hexdigest()[:10]


def kernel():
    """The extension module (`bn_train`, `bn_eval`, `channel_affine`), built and loaded once per process;
    None where it cannot be built (after one warning)."""
    if "module" in _state:
        return _state["module"]
    with _lock:
        if "module" not in _state:
            try:
                from torch.utils.cpp_extension import load

                _state["module"] = load(f"{NAME}_{_cpu_tag()}", [str(SOURCE)], verbose=False,
                                        extra_cflags=["-O3", "-march=native", "-fopenmp-simd"])
            except Exception as err:  # any build failure: compiler, ninja, headers
                reason = " ".join(str(err).split())[:300]
                warnings.warn(f"BatchNorm kernel='cpp' could not be built ({type(err).__name__}: {reason}); "
                              f"running kernel='fast' instead", RuntimeWarning, stacklevel=3)
                _state["module"] = None
    return _state["module"]
