"""The big-endian (network order) byte readers every decoder shares: compiled ones for the numba walks (over
a buffer, or over one packet's row of header blocks) and whole-column ones for numpy over rows of bytes
(row k = byte k of every packet's header).

The compiled readers widen each byte to int64 before shifting: numba would make int() of a uint8 unsigned,
and unsigned mixed with signed a float.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def be16(buf: np.ndarray, at: int) -> int:
    return int((np.int64(buf[at]) << 8) | np.int64(buf[at + 1]))


@numba.njit(cache=True, inline="always")
def be24(buf: np.ndarray, at: int) -> int:
    return int((np.int64(buf[at]) << 16) | (np.int64(buf[at + 1]) << 8) | np.int64(buf[at + 2]))


@numba.njit(cache=True, inline="always")
def be32(buf: np.ndarray, at: int) -> int:
    return int((np.int64(buf[at]) << 24) | (np.int64(buf[at + 1]) << 16) | (np.int64(buf[at + 2]) << 8)
               | np.int64(buf[at + 3]))


@numba.njit(cache=True, inline="always")
def row16(rows: np.ndarray, i: int, at: int) -> np.int64:
    """The 16-bit field at byte `at` of packet `i`'s header block (row i of `rows`)."""
    return (np.int64(rows[i, at]) << 8) | np.int64(rows[i, at + 1])


@numba.njit(cache=True, inline="always")
def row24(rows: np.ndarray, i: int, at: int) -> np.int64:
    return (row16(rows, i, at) << 8) | np.int64(rows[i, at + 2])


@numba.njit(cache=True, inline="always")
def row32(rows: np.ndarray, i: int, at: int) -> np.int64:
    return (row16(rows, i, at) << 16) | row16(rows, i, at + 2)


@numba.njit(cache=True, inline="always")
def row64(rows: np.ndarray, i: int, at: int) -> np.uint64:
    return (np.uint64(row32(rows, i, at)) << np.uint64(32)) | np.uint64(row32(rows, i, at + 4))


def column16(rows: np.ndarray, at: int) -> np.ndarray:
    """The 16-bit field at byte `at` of every column of `rows` (uint32)."""
    return (rows[at].astype(np.uint32) << 8) | rows[at + 1]


def column24(rows: np.ndarray, at: int) -> np.ndarray:
    return (column16(rows, at) << 8) | rows[at + 2]


def column32(rows: np.ndarray, at: int) -> np.ndarray:
    return (column16(rows, at) << 16) | column16(rows, at + 2)
