"""Key boundaries in a given order equal numpy's gather-and-compare of every key column: empty, one packet,
keys that differ in one column only (each dtype the flow key has), random orders and the extremes."""

from __future__ import annotations

import numpy as np
import pytest

from collectors.flows import KEY_FIELDS
from collectors.key_runs import same_as_previous

RNG = np.random.default_rng(23)


def columns_of(n: int, distinct: int) -> tuple[np.ndarray, ...]:
    """The flow key's columns, each of its dtype, with `distinct` values per column."""
    return tuple(RNG.integers(0, distinct, n).astype(dtype) for _, dtype in KEY_FIELDS)


def numpy_same(columns: tuple[np.ndarray, ...], order: np.ndarray) -> np.ndarray:
    same = np.ones(max(len(order) - 1, 0), dtype=np.bool_)
    for column in columns:
        ordered = column[order]
        same &= ordered[1:] == ordered[:-1]
    return same


@pytest.mark.parametrize(("n", "distinct"), [(0, 1), (1, 1), (2, 1), (1_000, 1), (5_000, 2), (65_536, 3)])
def test_boundaries_equal_numpys_gather_and_compare(n: int, distinct: int) -> None:
    columns = columns_of(n, distinct)
    for order in (np.arange(n), RNG.permutation(n), np.lexsort(columns[::-1]) if n else np.arange(0)):
        assert np.array_equal(same_as_previous(columns, order), numpy_same(columns, order))


@pytest.mark.parametrize("position", range(len(KEY_FIELDS)), ids=[name for name, _ in KEY_FIELDS])
def test_a_difference_in_any_one_column_is_a_boundary(position: int) -> None:
    columns = tuple(np.zeros(4, dtype=dtype) for _, dtype in KEY_FIELDS)
    kind = np.dtype(KEY_FIELDS[position][1])
    columns[position][2:] = np.iinfo(kind).max  # the extreme of its dtype: no narrowing may hide it
    assert same_as_previous(columns, np.arange(4)).tolist() == [True, False, True]


def test_the_columns_are_left_as_they_were() -> None:
    columns = columns_of(1_000, 5)
    before = tuple(column.copy() for column in columns)
    same_as_previous(columns, RNG.permutation(1_000))
    assert all(np.array_equal(a, b) for a, b in zip(columns, before, strict=True))
