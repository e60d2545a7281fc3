"""glibc's allocator told to give freed memory back, once at the start of a command.

The collector allocates and frees large numpy columns all the time (a batch's groups, the flow table's
growth, DFI's window). glibc raises its mmap threshold after every large free, so later columns come from
the heap, where the freed space stays resident; and each thread (the sink, the producer, the inserts) gets
an arena of its own. A fixed threshold and two arenas cut a 1M-flow flood's peak RSS by ~70 MB in the
embedded store (bench.flow_memory). A process that decodes packets raises the threshold above a batch's
columns at its first batch (collectors.heap). Elsewhere than glibc this does nothing.

Arrow's buffers (the sink's insert blocks, Parquet output) come from its own pool, mimalloc by default, which
keeps what a 250,000-row insert freed: the embedded store's process held ~280 MB more at a 1M-flow flood's
peak with it than with Arrow's system pool, which is glibc under the settings above. An operator's own
ARROW_DEFAULT_MEMORY_POOL is kept.
"""

from __future__ import annotations

import os

from collectors.heap import M_ARENA_MAX, M_MMAP_THRESHOLD, mallopt

MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value, kept: fixed from here on (no dynamic raising)
ARENAS = 2


def return_freed_memory() -> None:
    """Set the mmap threshold and the arena count (before threads start, so they share the arenas), and
    Arrow's pool (read when pyarrow is first imported)."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallopt(M_ARENA_MAX, ARENAS)
