"""numpy's BLAS starts no threads in a fabricscope process."""

from __future__ import annotations

import os
import subprocess
import sys

THREADS_AFTER_NUMPY = ("from fabricscope.blas import one_blas_thread; one_blas_thread(); import os, numpy; "
                       "print(len(os.listdir('/proc/self/task')), os.environ['OPENBLAS_NUM_THREADS'])")


def _threads(environment: dict[str, str]) -> list[str]:
    """The threads of a fresh interpreter once numpy is loaded, and the BLAS setting it ran with."""
    run = subprocess.run([sys.executable, "-c", THREADS_AFTER_NUMPY], env=environment, capture_output=True,
                         text=True, check=True)
    return run.stdout.split()


def test_numpy_loads_without_blas_threads() -> None:
    """OpenBLAS would start one per core (each spinning at start-up): the process keeps its one thread."""
    environment = {name: value for name, value in os.environ.items() if name != "OPENBLAS_NUM_THREADS"}
    assert _threads(environment) == ["1", "1"]


def test_an_operators_blas_threads_are_kept() -> None:
    assert _threads({**os.environ, "OPENBLAS_NUM_THREADS": "2"})[1] == "2"
