"""The compiled search behind PrefixTable.lookup, imported only where it runs (numba's import is a tenth of a
second no dashboard or detector needs).

Each address goes through the prefix lengths in turn, masked and binary-searched among that length's sorted
networks, and stops at the first that holds it (the prefixes are disjoint): one pass over the addresses,
where the same search as numpy column operations took a dozen passes per prefix length — with the two ends
of every packet, a tenth of a collector's time on issue 17's capture.
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
        out[i] = -1
        for group in range(len(mask_hi)):
            if mask_lo[group] != 0:
                if (hi[i] & mask_hi[group]) != fixed_hi[group]:
                    continue
                word = lo[i] & mask_lo[group]
            else:
                word = hi[i] & mask_hi[group]
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
                out[i] = values[low]
                break
