"""numpy's OpenBLAS held to one thread, once at the start of a command, before numpy is imported.

fabricscope multiplies no matrices, but OpenBLAS starts a thread per core when numpy loads and they spin
while the process starts: an empty `replay` took 0.45-0.52 s of CPU with them, 0.35 s without, and every
forked worker and service process paid the same. An operator's own OPENBLAS_NUM_THREADS is kept.
"""

from __future__ import annotations

import os


def one_blas_thread() -> None:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
