"""The flow table's radix sort gives numpy's order for any 64-bit words: empty, one, all equal, the extremes,
random words and the flow table's packed words (hash prefix, interval, row index)."""

from __future__ import annotations

import numpy as np
import pytest

from collectors.radix import sorted_words

RNG = np.random.default_rng(17)
TOP = np.iinfo(np.uint64).max


@pytest.mark.parametrize("words", [
    np.zeros(0, dtype=np.uint64),
    np.array([5], dtype=np.uint64),
    np.full(1000, 42, dtype=np.uint64),
    np.array([TOP, 0, TOP - 1, 1, 1 << 63, (1 << 63) - 1], dtype=np.uint64),
    RNG.integers(0, TOP, 70_000, dtype=np.uint64, endpoint=True),
    RNG.integers(0, 1 << 20, 5_000, dtype=np.uint64),  # only the low digits differ
    (RNG.integers(0, 3_000, 65_536, dtype=np.uint64) << np.uint64(40)) | np.arange(65_536, dtype=np.uint64),
], ids=["empty", "one", "equal", "extremes", "random", "low", "packed"])
def test_sorted_words_are_numpys_sort(words: np.ndarray) -> None:
    before = words.copy()
    assert np.array_equal(sorted_words(words), np.sort(words))
    assert np.array_equal(words, before)  # a sorted copy: the input is left as it was
