"""The heap of a process that decodes packets: a batch's columns come from it, and what a flood's step left
free there goes back to the system.

fabricscope.allocator fixes glibc's mmap threshold at 128 KB for every process, so each numpy column above it
is mapped afresh and unmapped when freed: a 4M-packet ERSPAN replay took 1.3M page faults and 1.2 s of system
time in its 3.95 s. Where packets are decoded, the threshold is raised just above a batch's widest column
(65,536 rows of 16 bytes) and the heap keeps up to FREED_LIMIT_BYTES free at its top, so each batch reuses
the pages the last one freed: 80-100k page faults, 0.1-0.15 s of system time, 2.7 s in all. The flow table,
DFI's window and anything else larger are still mapped and given back whole. Only those processes take it
(at their first batch): the parent that merges workers' steps and runs the sink kept ~60 MB more of the
sink's freed buffers resident with it in a 5M-flow flood.

This module is where the project talks to glibc's allocator (fabricscope.allocator sets its start-up
values through `mallopt` here). Ordinary traffic leaves ~20 MB free in the heap between batches; a flood's
steps (a full flow table exporting, DFI's window of its rows) may leave more, which glibc returns only when
asked: past FREED_LIMIT_BYTES it is, before the next batch, looked at once a second at most (asking glibc
what lies free walks its arenas: ~0.3-0.5 ms, 5% of a paced replay's main thread at 4,096-packet batches).
"""

from __future__ import annotations

import ctypes
import time

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # malloc.h
BATCH_THRESHOLD_BYTES = 1024 * 1024 + 4096
FREED_LIMIT_BYTES = 32 * 1024 * 1024
CHECK_EVERY_S = 1.0


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has mallopt), else None: elsewhere these settings do nothing. Looked
    up among the symbols the interpreter already has, which include its C library's: `ctypes.util.find_library`
    runs ldconfig, 26 ms of every command's start."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallopt"):
        return None
    if hasattr(libc, "mallinfo2"):  # glibc 2.33+
        libc.mallinfo2.restype = _MallInfo2
    return libc


_LIBC = _glibc()
_threshold_raised = False
_checked_at = float("-inf")  # monotonic time the free bytes were last looked at


def mallopt(parameter: int, value: int) -> None:
    """glibc's `mallopt` (fabricscope.allocator's settings at a command's start, and the batch threshold)."""
    if _LIBC is not None:
        _LIBC.mallopt(parameter, value)


def freed_bytes() -> int:
    """Bytes lying free in the heap's arenas (0 where that cannot be asked: not glibc 2.33+)."""
    return int(_LIBC.mallinfo2().fordblks) if _LIBC is not None and hasattr(_LIBC, "mallinfo2") else 0


def before_batch(limit_bytes: int = FREED_LIMIT_BYTES, every_s: float = CHECK_EVERY_S) -> None:
    """Batch columns from the heap from this process's first batch on, and the heap's free pages returned to
    the system if more than `limit_bytes` lie free (looked at if `every_s` have passed since the last look).
    The threshold once only: mallopt consolidates the heap, after which glibc trims its top, and a call every
    batch doubled the page faults."""
    global _threshold_raised, _checked_at
    if not _threshold_raised:
        mallopt(M_MMAP_THRESHOLD, BATCH_THRESHOLD_BYTES)
        mallopt(M_TRIM_THRESHOLD, FREED_LIMIT_BYTES)
        _threshold_raised = True
    now = time.monotonic()
    if _LIBC is not None and now - _checked_at >= every_s:
        _checked_at = now
        if freed_bytes() > limit_bytes:
            _LIBC.malloc_trim(0)
