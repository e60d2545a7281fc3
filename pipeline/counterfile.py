"""Switch counters from a JSONL file (the scenario generator's, or any exporter's) as `counters` batches.

One JSON object per line with every `counters` column of records.py; `ts` is ISO 8601 (Z or an offset).
A bad line is bad input: InputError names the file, the line and the field. A number must fit its column
(uint64 counters, `oper_up` 0 or 1) and a time ClickHouse's DateTime64 range, so nothing overflows later.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import records
from pipeline.errors import InputError
from pipeline.jsonlines import json_lines, json_value

DEFAULT_BATCH_ROWS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_YEAR, LAST_YEAR = 1900, 2299  # what ClickHouse's DateTime64 holds
_HIGHEST = {"oper_up": 1}  # columns narrower than their dtype


def _microseconds(value: Any) -> int:
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 time, got {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if not FIRST_YEAR <= moment.year <= LAST_YEAR:
        raise ValueError(f"year {moment.year} is outside {FIRST_YEAR}..{LAST_YEAR}")
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _value(column: records.Column, value: Any) -> Any:
    if column.numpy == "datetime64[us]":
        try:
            return _microseconds(value)
        except ValueError as exc:
            raise ValueError(f"{column.name}: {exc}") from exc
    if column.numpy == "object":
        if not isinstance(value, str):
            raise ValueError(f"{column.name}: expected a string")
        return value
    highest = _HIGHEST.get(column.name, int(np.iinfo(column.numpy).max))
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= highest:
        raise ValueError(f"{column.name}: expected an integer in 0..{highest}")
    return value


def _row(line: bytes) -> list[Any]:
    """The line's values in column order; KeyError names a missing field, ValueError a bad one."""
    item = json_value(line)
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    return [_value(column, item[column.name]) for column in records.COUNTERS]


def _batch(rows: list[list[Any]]) -> dict[str, np.ndarray]:
    batch: dict[str, np.ndarray] = {}
    for index, column in enumerate(records.COUNTERS):
        values = [row[index] for row in rows]
        if column.numpy == "datetime64[us]":
            batch[column.name] = np.array(values, dtype=np.int64).astype("datetime64[us]")
        elif column.numpy == "object":
            batch[column.name] = np.array(values, dtype=object)
        else:
            batch[column.name] = np.array(values, dtype=column.numpy)
    return batch


def read_counters(path: str | Path, *, batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[dict[str, np.ndarray]]:
    """Batches of counter records from a JSONL file, in file order; blank lines are skipped."""
    source = str(path)
    rows: list[list[Any]] = []
    for number, line in json_lines(path):
        try:
            rows.append(_row(line))
        except KeyError as exc:
            raise InputError(source, f"missing field {exc.args[0]}", line=number) from exc
        except ValueError as exc:
            raise InputError(source, str(exc), line=number) from exc
        if len(rows) >= batch_rows:
            yield _batch(rows)
            rows = []
    if rows:
        yield _batch(rows)
