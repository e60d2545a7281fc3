"""Record batches written to a file instead of Kafka (`replay --out`): Parquet or JSON lines by suffix.

Every batch goes to the file as it comes (a Parquet row group, or JSON lines), so the file grows during the
run and the writer holds nothing between batches. JSON lines are the lines `json.dumps` writes for each row,
built JSON_CHUNK_ROWS at a time by Arrow: each column's values become JSON text a column at a time (integers
and booleans cast by Arrow; text, floats and addresses written once per distinct value), and Arrow joins
them with the keys into lines, so no Python object is made per value. (A line formatted per row in Python
was 15 µs, 8% of a 4M-packet replay.) Addresses are written as ClickHouse prints them (IPv4 as
::ffff:a.b.c.d), times as `datetime.isoformat` writes them, with Z.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from json.encoder import encode_basestring_ascii
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import addresses, arrow_columns, codec, records
from pipeline.errors import InputError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

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
            return [f"{text}Z" for text in _utc_texts(column).tolist()]
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


def _address_texts(column: pa.Array | pa.ChunkedArray) -> list[str]:
    raw = arrow_columns.numpy_values(column, np.dtype(f"V{_ADDRESS_BYTES}"))
    return addresses.to_texts(raw.view(np.uint8).reshape(-1, _ADDRESS_BYTES))


def _utc_texts(column: pa.ChunkedArray) -> np.ndarray:
    """ISO 8601 texts of UTC times, without the Z (numpy unicode)."""
    micros = arrow_columns.numpy_values(column.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()), np.dtype(np.int64))
    texts = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    whole = micros % _US_PER_S == 0  # to the second, where `isoformat` writes no fraction
    return np.where(whole, texts.astype(f"U{_SECONDS_CHARS}"), texts)


def _json_texts(column: pa.ChunkedArray) -> pa.Array:
    """Each value of a column as `json.dumps` writes it, as Arrow text."""
    kind = column.type
    if column.null_count:
        return _texts_of_each(column)
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind):
        return pc.cast(column.combine_chunks(), pa.string())  # as int.__repr__; true and false
    if pa.types.is_string(kind) or pa.types.is_floating(kind):
        return _texts_of_distinct(column, lambda values: [json.dumps(value) for value in values.to_pylist()])
    if pa.types.is_fixed_size_binary(kind) and kind.byte_width == _ADDRESS_BYTES:
        return _texts_of_distinct(column, lambda values: [f'"{text}"' for text in _address_texts(values)])
    if pa.types.is_timestamp(kind) and kind.tz == "UTC":
        return arrow_columns.strings([f'"{text}Z"' for text in _utc_texts(column).tolist()])
    return _texts_of_each(column)


def _texts_of_distinct(column: pa.ChunkedArray, texts: Callable[[pa.Array], list[str]]) -> pa.Array:
    """`texts` of each distinct value, taken for every row: a column holds few distinct names, confidences
    and hosts."""
    encoded = pc.dictionary_encode(column.combine_chunks())
    return arrow_columns.strings(texts(encoded.dictionary)).take(encoded.indices)


def _texts_of_each(column: pa.ChunkedArray) -> pa.Array:
    """json.dumps of each JSON-ready value: nulls, lists and the rarer types."""
    return arrow_columns.strings([json.dumps(value) for value in json_column(column)])


def _json_lines(rows: pa.Table) -> pa.Array:
    """One text per row, the line json.dumps writes for the row's dict, newline included."""
    *keys, end, nothing = _line_parts(tuple(rows.schema.names))
    parts = [part for key, column in zip(keys, rows.columns, strict=True) for part in (key, _json_texts(column))]
    return pc.binary_join_element_wise(*parts, end, nothing)


@functools.cache
def _line_parts(names: tuple[str, ...]) -> list[pa.Scalar]:
    """The text before each value ('{"key": ', then ', "key": '), the line's end and the empty separator, as
    Arrow scalars taken from an array: one made from a str imports pandas."""
    keys = [("{" if index == 0 else ", ") + encode_basestring_ascii(name) + ": " for index, name in enumerate(names)]
    return list(arrow_columns.strings([*keys, "}\n", ""]))


class RecordFileWriter:
    """Appends batches of one table to a Parquet or JSONL file; `rows` counts what was written."""

    def __init__(self, path: str | Path, table: str) -> None:
        self.path = Path(path)
        self.table = table
        self.rows = 0
        if self.path.suffix not in SUFFIXES:
            raise InputError(str(path), f"unknown output format; use one of {', '.join(SUFFIXES)}")
        self._parquet: pq.ParquetWriter | None = None
        self._text: IO[bytes] | None = None
        try:
            if self.path.suffix == ".parquet":
                import pyarrow.parquet as pq  # 10 ms of start-up, for the files that are Parquet

                self._parquet = pq.ParquetWriter(self.path, records.arrow_schema(table))
            else:
                self._text = self.path.open("wb")  # JSON lines are ASCII: json.dumps escapes the rest
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
        for start in range(0, rows.num_rows, JSON_CHUNK_ROWS):
            lines = _json_lines(rows.slice(start, JSON_CHUNK_ROWS))
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)  # string offsets: one Arrow buffer of text
            self._text.write(memoryview(lines.buffers()[2])[offsets[lines.offset] : offsets[lines.offset + len(lines)]])
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
