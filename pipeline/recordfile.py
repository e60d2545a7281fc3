"""Record batches written to a file instead of Kafka (`replay --out`): Parquet or JSON lines by suffix.

Every batch goes to the file as it comes (a Parquet row group, or JSON lines), so the file grows during the
run and the writer holds nothing between batches; JSON lines are built JSON_CHUNK_ROWS at a time, because a
Python object per value of a whole batch would cost more memory than the batch itself.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import codec, records
from pipeline.errors import InputError

SUFFIXES = (".parquet", ".jsonl", ".json")
JSON_CHUNK_ROWS = 8192


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes) and len(value) == 16:
        return str(ipaddress.IPv6Address(value))
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return value


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
        names = rows.schema.names
        for start in range(0, rows.num_rows, JSON_CHUNK_ROWS):
            chunk = rows.slice(start, JSON_CHUNK_ROWS)
            lines = [
                json.dumps({n: _json_value(v) for n, v in zip(names, row, strict=True)}) + "\n"
                for row in zip(*(column.to_pylist() for column in chunk.columns), strict=True)
            ]
            self._text.write("".join(lines))
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
