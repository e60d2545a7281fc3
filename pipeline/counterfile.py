"""Switch counters from a JSONL file (the scenario generator's, or any exporter's) as `counters` batches.

One JSON object per line with every `counters` column of records.py; `ts` is ISO 8601 (Z or an offset).
A bad line is bad input: InputError names the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import records
from pipeline.errors import InputError

DEFAULT_BATCH_ROWS = 10_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _microseconds(value: Any) -> int:
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
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
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{column.name}: expected a non-negative integer")
    return value


def _row(line: str) -> list[Any]:
    """The line's values in column order; KeyError names a missing field, ValueError a bad one."""
    item = json.loads(line)
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
    try:
        handle = Path(path).open(encoding="utf-8")  # noqa: SIM115 - closed by the `with` below
    except OSError as exc:
        raise InputError(source, f"cannot read: {exc.strerror or exc}") from exc
    with handle:
        rows: list[list[Any]] = []
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                rows.append(_row(line))
            except json.JSONDecodeError as exc:
                raise InputError(source, f"not JSON: {exc.msg}", line=number) from exc
            except KeyError as exc:
                raise InputError(source, f"missing field {exc.args[0]}", line=number) from exc
            except ValueError as exc:
                raise InputError(source, str(exc), line=number) from exc
            if len(rows) >= batch_rows:
                yield _batch(rows)
                rows = []
        if rows:
            yield _batch(rows)
