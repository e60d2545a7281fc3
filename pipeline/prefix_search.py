"""The compiled search behind PrefixTable.lookup, imported only where it runs (numba's import is a tenth of a
second no dashboard or detector needs).

Each address goes through the prefix lengths in turn, masked and binary-searched among that length's sorted
networks, and stops at the first that holds it (the prefixes are disjoint): one pass over the addresses,
where the same search as numpy column operations took a dozen passes per prefix length — with the two ends
of every packet, a tenth of a collector's time on issue 17's capture. `directions` searches the two ends of
each packet only as far as its direction on its link needs, in the same pass that decides it.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def lookup(hi: np.ndarray, lo: np.ndarray, mask_hi: np.ndarray, mask_lo: np.ndarray, fixed_hi: np.ndarray,
           starts: np.ndarray, keys: np.ndarray, values: np.ndarray, out: np.ndarray) -> None:
    """out[i]: the value of the prefix holding address i, -1 where none does. Length g's networks are
    keys[starts[g]:starts[g + 1]], sorted; from /64 on, those sharing the high word fixed_hi[g]."""
    for i in range(len(hi)):
        out[i] = _value(hi[i], lo[i], mask_hi, mask_lo, fixed_hi, starts, keys, values)


@numba.njit(cache=True, nogil=True)
def directions(link: np.ndarray, link_leaf: np.ndarray, src_hi: np.ndarray, src_lo: np.ndarray,
               dst_hi: np.ndarray, dst_lo: np.ndarray, mask_hi: np.ndarray, mask_lo: np.ndarray,
               fixed_hi: np.ndarray, starts: np.ndarray, keys: np.ndarray, values: np.ndarray,
               codes: tuple[int, int, int], out: np.ndarray) -> None:
    """out[i]: codes' (unknown, up, down) for packet i on link[i] (-1: none), whose leaf is link_leaf[link[i]]:
    down where the destination sits behind that leaf, else up where the source does (the values of the
    prefix table are leaf indices). An address is searched only when its answer is needed."""
    unknown, up, down = codes
    for i in range(len(link)):
        out[i] = unknown
        if link[i] < 0:
            continue
        leaf = link_leaf[link[i]]
        if _value(dst_hi[i], dst_lo[i], mask_hi, mask_lo, fixed_hi, starts, keys, values) == leaf:
            out[i] = down
        elif _value(src_hi[i], src_lo[i], mask_hi, mask_lo, fixed_hi, starts, keys, values) == leaf:
            out[i] = up


@numba.njit(cache=True, nogil=True, inline="always")
def _value(hi: np.uint64, lo: np.uint64, mask_hi: np.ndarray, mask_lo: np.ndarray, fixed_hi: np.ndarray,
           starts: np.ndarray, keys: np.ndarray, values: np.ndarray) -> int:
    for group in range(len(mask_hi)):
        if mask_lo[group] != 0:
            if (hi & mask_hi[group]) != fixed_hi[group]:
                continue
            word = lo & mask_lo[group]
        else:
            word = hi & mask_hi[group]
        first, stop = starts[group], starts[group + 1]
        if word < keys[first] or word > keys[stop - 1]:
            continue
        low, high = first, stop
        while low < high:
            middle = (low + high) // 2
            if keys[middle] < word:
                low = middle + 1
            else:
                high = middle
        if keys[low] == word:
            return values[low]
    return -1
