"""Record batches written to a file instead of Kafka (`replay --out`): Parquet or JSON lines by suffix.

Every batch goes to the file as it comes (a Parquet row group, or JSON lines), so the file grows during the
run and the writer holds nothing between batches; JSON lines are built JSON_CHUNK_ROWS at a time, because a
Python object per value of a whole batch would cost more memory than the batch itself. Addresses and times
are turned into text a column at a time (an `ipaddress` object and a `datetime` per value made JSON lines
five times slower than Parquet): addresses as ClickHouse prints them (IPv4 as ::ffff:a.b.c.d), times as
`datetime.isoformat` writes them, with Z.
"""

from __future__ import annotations

import json
import math
from json.encoder import encode_basestring_ascii
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import addresses, arrow_columns, codec, records
from pipeline.errors import InputError

SUFFIXES = (".parquet", ".jsonl", ".json")
JSON_CHUNK_ROWS = 8192
_ADDRESS_BYTES = 16
_US_PER_S = 1_000_000
_SECONDS_CHARS = len("2026-01-01T00:00:00")


def json_column(column: pa.ChunkedArray) -> list[Any]:
    """A column's values as JSON-ready Python values: IPv6 addresses as text (IPv4 as ::ffff:a.b.c.d), times as
    ISO 8601 with Z (no fraction on a whole second, as `isoformat` writes), anything else as Arrow gives it."""
    kind = column.type
    if not column.null_count:
        if pa.types.is_fixed_size_binary(kind) and kind.byte_width == _ADDRESS_BYTES:
            return _address_texts(column)
        if pa.types.is_timestamp(kind) and kind.tz == "UTC":
            return _utc_texts(column)
    values = column.to_pylist()
    if any(test(kind) for test in (pa.types.is_integer, pa.types.is_floating, pa.types.is_string, pa.types.is_boolean)):
        return values
    return [_json_value(value) for value in values]


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes) and len(value) == _ADDRESS_BYTES:
        return addresses.to_texts(np.frombuffer(value, dtype=np.uint8).reshape(1, _ADDRESS_BYTES))[0]
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _address_texts(column: pa.ChunkedArray) -> list[str]:
    raw = arrow_columns.numpy_values(column, np.dtype(f"V{_ADDRESS_BYTES}"))
    return addresses.to_texts(raw.view(np.uint8).reshape(-1, _ADDRESS_BYTES))


def _utc_texts(column: pa.ChunkedArray) -> list[str]:
    micros = arrow_columns.numpy_values(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), np.dtype(np.int64))
    texts = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    whole = micros % _US_PER_S == 0  # to the second, where `isoformat` writes no fraction
    return list(np.char.add(np.where(whole, texts.astype(f"U{_SECONDS_CHARS}"), texts), "Z").tolist())


def _json_texts(column: pa.ChunkedArray) -> list[str]:
    """Each value of a column as `json.dumps` writes it. Integers, text and finite floats, nearly every value,
    a column at a time (a json.dumps of a dict per row took a tenth of a replay's time); anything else value
    by value."""
    values = json_column(column)
    if values and not column.null_count:  # every value has the type of the first
        if type(values[0]) is int:
            return list(map(int.__repr__, values))
        if type(values[0]) is str:
            return list(map(encode_basestring_ascii, values))
        if type(values[0]) is float and all(map(math.isfinite, values)):  # json.dumps spells NaN and inf itself
            return list(map(float.__repr__, values))
    return list(map(json.dumps, values))


def _line_template(names: list[str]) -> str:
    """A JSON line with a %s per value, laid out as json.dumps lays out a dict of `names`."""
    keys = (encode_basestring_ascii(name).replace("%", "%%") for name in names)
    return "{" + ", ".join(f"{key}: %s" for key in keys) + "}\n"


class RecordFileWriter:
    """Appends batches of one table to a Parquet or JSONL file; `rows` counts what was written."""

    def __init__(self, path: str | Path, table: str) -> None:
        self.path = Path(path)
        self.table = table
        self.rows = 0
        if self.path.suffix not in SUFFIXES:
            raise InputError(str(path), f"unknown output format; use one of {', '.join(SUFFIXES)}")
        self._parquet: pq.ParquetWriter | None = None
        self._text: IO[str] | None = None
        try:
            if self.path.suffix == ".parquet":
                self._parquet = pq.ParquetWriter(self.path, records.arrow_schema(table))
            else:
                self._text = self.path.open("w", encoding="utf-8")
        except OSError as exc:
            raise InputError(str(path), f"cannot write: {exc.strerror or exc}") from exc

    def write(self, batch: codec.Batch) -> None:
        rows = codec.to_arrow(self.table, batch)
        if rows.num_rows == 0:
            return
        if self._parquet is not None:
            self._parquet.write_table(rows)
        elif self._text is not None:
            self._write_json(rows)
        self.rows += rows.num_rows

    def _write_json(self, rows: pa.Table) -> None:
        assert self._text is not None
        line = _line_template(rows.schema.names)
        for start in range(0, rows.num_rows, JSON_CHUNK_ROWS):
            chunk = rows.slice(start, JSON_CHUNK_ROWS)
            self._text.write("".join(map(line.__mod__, zip(*map(_json_texts, chunk.columns), strict=True))))
        self._text.flush()

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
        if self._text is not None:
            self._text.close()

    def __enter__(self) -> RecordFileWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
