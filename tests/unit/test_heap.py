"""A packet-decoding process's heap: batch columns come from it, and freed memory past the limit goes back."""

from __future__ import annotations

import json
import subprocess
import sys

# In a fresh interpreter with fabricscope's allocator settings (128 KB threshold): 100 MB of 512 KB columns,
# all freed but the last (which pins the heap's top, so glibc cannot simply shrink it); before_batch with a
# limit no heap reaches takes the batch threshold first, when asked to.
FLOOD = """
import json, os, sys
import numpy as np
from fabricscope.allocator import return_freed_memory
return_freed_memory()
from collectors.heap import before_batch, freed_bytes

def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

if sys.argv[2] == "decoding":
    before_batch(1 << 62)
columns = [np.ones(65_536, dtype=np.int64) for _ in range(200)]
del columns[:-1]
before_free, before_rss = freed_bytes(), resident()
before_batch(int(sys.argv[1]), every_s=float(sys.argv[3]))
print(json.dumps([before_free, before_rss, freed_bytes(), resident()]))
"""


def _flood(limit_bytes: int, process: str = "decoding", every_s: float = 0.0) -> list[int]:
    run = subprocess.run([sys.executable, "-c", FLOOD, str(limit_bytes), process, str(every_s)], capture_output=True,
                         text=True, check=True)
    return json.loads(run.stdout)


def test_batch_columns_come_from_the_heap_only_where_packets_are_decoded() -> None:
    assert _flood(1 << 62)[0] > 90e6  # freed, and lying in the heap for the next batch
    assert _flood(1 << 62, "other")[0] < 10e6  # mapped and unmapped one by one


def test_freed_memory_past_the_limit_is_returned() -> None:
    before_free, before_rss, after_free, after_rss = _flood(64 * 1024 * 1024)
    assert before_free > 90e6
    assert before_rss - after_rss > 80e6
    assert after_free > 90e6  # still the heap's free space, no longer resident


def test_freed_memory_below_the_limit_stays_for_the_next_batch() -> None:
    before_free, before_rss, _, after_rss = _flood(256 * 1024 * 1024)
    assert before_free > 90e6
    assert abs(before_rss - after_rss) < 4e6


def test_the_free_bytes_are_looked_at_once_in_every_s_at_most() -> None:
    """The flood comes right after the first batch: within `every_s` of it, nothing is looked at or returned."""
    before_free, before_rss, _, after_rss = _flood(64 * 1024 * 1024, every_s=3600.0)
    assert before_free > 90e6
    assert abs(before_rss - after_rss) < 4e6
