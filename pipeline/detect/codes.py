"""Text columns (link, direction, job) as small integer codes: a batch of a million flow rows is looked at once
per distinct value, by hashing (pandas.factorize), never converted to a Unicode string per row."""

from __future__ import annotations

import numpy as np
import pandas as pd


def intern(table: dict[str, int], column: np.ndarray) -> np.ndarray:
    """Each row's code in `table`, a value not in it yet getting the next code (`table` keeps them all)."""
    rows, names = pd.factorize(column)
    codes = np.array([table.setdefault(str(name), len(table)) for name in names], dtype=np.int32)
    return codes[rows]


def intern_pairs(table: dict[tuple[str, str], int], first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """As `intern`, for each row's pair of values (a link and a direction)."""
    first_rows, first_names = pd.factorize(first)
    second_rows, second_names = pd.factorize(second)
    width = max(len(second_names), 1)
    pairs, rows = pd.factorize(first_rows.astype(np.int64) * width + second_rows)
    codes = [table.setdefault((str(first_names[pair // width]), str(second_names[pair % width])), len(table))
             for pair in rows.tolist()]
    return np.array(codes, dtype=np.int32)[pairs]
