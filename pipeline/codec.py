"""Kafka message bodies: a batch of records as Arrow IPC streams, ≤1 MiB each, keyed by link (events by incident).

One message is one self-describing Arrow IPC stream (schema + record batches, buffers compressed) of a
single table, so a consumer needs nothing but the bytes and records.py to check it. Rows are grouped by
their key column (`link`, or `job` for tables without one; `event_id` for events) so that every row of a
link, or of an incident, lands in one Kafka partition, in order.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import arrow_columns, ipc_header, records
from pipeline.errors import DecodeError

MAX_MESSAGE_BYTES = 1 << 20
# An incident's rows share one key whatever link each names, so they stay in order on one partition.
KEY_COLUMNS = ("event_id", "link", "job")
_SCHEMA_MARGIN = 1.25
_SAMPLE_ROWS = 1024
# Messages of this many rows and more: Arrow compresses each column buffer with zstd (built into pyarrow;
# Kafka's zstd needs a library kafka-python lacks here), whose ratio then pays (a flood of distinct flows:
# 32 bytes a flow row) and whose context per buffer (~1 ms a message) is spread over the rows; the sink hands
# these bodies to ClickHouse still compressed. Smaller messages (a link's second of link bins, a few flow
# rows per link at every pause) go plain: a context per column buffer cost each more than its rows (200
# link bins decoded in 135 µs with lz4, 17 µs plain), and Kafka's lz4 (pipeline.bus) compresses a producer
# batch of them at once, to fewer bytes than each alone (those link bins: 18 bytes a row against 50).
_ZSTD_MIN_ROWS = 1024
_ZSTD_IPC_OPTIONS = pa.ipc.IpcWriteOptions(compression=pa.Codec("zstd", 1))
_PLAIN_IPC_OPTIONS = pa.ipc.IpcWriteOptions()

Batch: TypeAlias = Mapping[str, np.ndarray] | pa.Table


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka message: `key` routes rows of one link to one partition, `value` is an Arrow IPC stream."""

    key: bytes
    value: bytes
    rows: int


def key_column(table: str) -> str | None:
    """The column whose value is a message's key, None for a table without one."""
    names = records.column_names(table)
    return next((name for name in KEY_COLUMNS if name in names), None)


@functools.cache
def _buffer_dtypes(table: str) -> dict[str, np.dtype]:
    """The table's fixed-width columns and the numpy dtype of their values in an Arrow buffer."""
    return {column.name: np.dtype(column.numpy) for column in records.TABLES[table] if column.numpy != "object"}


def to_arrow(table: str, batch: Batch) -> pa.Table:
    """The batch as an Arrow table in records.py's schema; IPv6 columns may be (n, 16) uint8 arrays or V16 values.

    Raises ValueError naming the column when a column is missing or cannot take the declared type: a
    malformed batch is a bug in the stage that built it, not bad user input.
    """
    schema = records.arrow_schema(table)
    if isinstance(batch, pa.Table):
        try:
            return batch.select(schema.names).cast(schema)
        except (KeyError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"{table}: {exc}") from exc
    arrays = []
    dtypes = _buffer_dtypes(table)
    for field in schema:
        if field.name not in batch:
            raise ValueError(f"{table}.{field.name}: column missing from the batch")
        try:
            arrays.append(arrow_columns.column(np.asarray(batch[field.name]), field, dtypes.get(field.name)))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise ValueError(f"{table}.{field.name}: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=schema)


def _ipc_bytes(rows: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = _ZSTD_IPC_OPTIONS if rows.num_rows >= _ZSTD_MIN_ROWS else _PLAIN_IPC_OPTIONS
    with pa.ipc.new_stream(sink, rows.schema, options=options) as writer:
        writer.write_table(rows)
    return sink.getvalue().to_pybytes()


def _row_bytes(rows: pa.Table, max_bytes: int) -> float:
    """Mean bytes a row takes in a message, once per batch. A batch whose Arrow size fits in a message goes
    whole whatever it encodes to, so its Arrow size is estimate enough (a replay at --speed 1 sends such
    batches at every pause). Otherwise from the batch's first rows encoded (the stream's schema counted in,
    so it errs large): compressed, a flow row takes a tenth of its Arrow size, and messages sized by the
    latter held a tenth of the rows they may, each paying its own encode and decode of every column buffer."""
    arrow_bytes = rows.nbytes
    if arrow_bytes * _SCHEMA_MARGIN <= max_bytes:
        return max(1.0, arrow_bytes / max(1, rows.num_rows))
    sample = rows.slice(0, _SAMPLE_ROWS)
    return max(1.0, len(_ipc_bytes(sample)) / max(1, sample.num_rows))


def _chunks(rows: pa.Table, key: bytes, max_bytes: int, per_row: float) -> list[Message]:
    """Split rows into messages of at most max_bytes, halving a chunk whenever the estimate was short."""
    step = max(1, int(max_bytes / _SCHEMA_MARGIN / per_row))
    messages: list[Message] = []
    start = 0
    while start < rows.num_rows:
        chunk = rows.slice(start, step)
        value = _ipc_bytes(chunk)
        if len(value) > max_bytes:
            if step == 1:
                raise ValueError(f"one row encodes to {len(value)} bytes, more than the {max_bytes} allowed")
            step = max(1, step // 2)
            continue
        messages.append(Message(key=key, value=value, rows=chunk.num_rows))
        start += chunk.num_rows
    return messages


def encode(table: str, batch: Batch, *, max_bytes: int = MAX_MESSAGE_BYTES) -> list[Message]:
    """Messages for a batch: rows grouped by key, each message one Arrow IPC stream ≤ max_bytes."""
    column = key_column(table)
    if column is None:
        rows = to_arrow(table, batch)
        return _chunks(rows, b"", max_bytes, _row_bytes(rows, max_bytes)) if rows.num_rows else []
    keys = pc.dictionary_encode(_key_array(batch, column))
    codes = arrow_columns.numpy_values(keys.indices, np.dtype(np.int32))  # dictionary_encode: int32 indices
    order = np.argsort(codes, kind="stable")
    # Arrow's take over the built columns: half the time of reordering numpy's (object arrays of str most of all)
    rows = to_arrow(table, batch).take(arrow_columns.indices(order))
    if rows.num_rows == 0:
        return []
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.diff(sorted_codes)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(sorted_codes)]))
    per_row = _row_bytes(rows, max_bytes)
    messages: list[Message] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        key = str(keys.dictionary[sorted_codes[start]].as_py()).encode()
        messages.extend(_chunks(rows.slice(start, end - start), key, max_bytes, per_row))
    return messages


def _key_array(batch: Batch, column: str) -> pa.Array:
    if isinstance(batch, pa.Table):
        return batch.column(column).combine_chunks()
    if column not in batch:
        raise ValueError(f"{column}: column missing from the batch")
    return arrow_columns.column(np.asarray(batch[column]), pa.field(column, pa.string()), None)


def decode(table: str, value: bytes) -> pa.Table:
    """The rows of one message, checked against records.py; DecodeError says what is wrong.

    A consumer decodes every message, and a busy fabric sends one per link and table every export: its
    fixed cost bounds a consumer before its rows do. So the schema message is checked once per distinct
    bytes (a producer sends the same schema every time), the null counts come from each batch's header, and
    the batches are read against records.py's schema itself (its metadata included)."""
    reader = pa.BufferReader(pa.py_buffer(value))
    expected = records.arrow_schema(table)
    batches = []
    try:
        _check_schema(table, pa.ipc.read_message(reader))
        while (message := _next_message(reader)) is not None:
            if message.type != "record batch":
                raise DecodeError(f"a {message.type} message where record batches belong")
            nulls = ipc_header.null_counts(message.metadata)
            for node, index in _not_nullable_nodes(table):
                if node >= len(nulls) or nulls[node]:
                    raise DecodeError(f"column {expected.field(index).name}: nulls in a non-nullable column")
            batches.append(pa.ipc.read_record_batch(message, expected))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, EOFError, ValueError) as exc:
        raise DecodeError(f"not an Arrow IPC stream: {exc}") from exc
    return pa.Table.from_batches(batches, schema=expected)


def _next_message(reader: pa.BufferReader) -> pa.ipc.Message | None:
    """The stream's next message, None at its end (the end-of-stream marker or the last byte)."""
    try:
        return pa.ipc.read_message(reader)
    except EOFError:
        return None


# Per table, the schema message bytes last found to match records.py.
_ACCEPTED_SCHEMAS: dict[str, bytes] = {}


def _check_schema(table: str, message: pa.ipc.Message) -> None:
    """The stream's schema message is `table`'s schema of this version, or DecodeError."""
    if message.type != "schema":
        raise DecodeError(f"the stream starts with a {message.type} message, not its schema")
    header = message.metadata.to_pybytes()
    if _ACCEPTED_SCHEMAS.get(table) == header:
        return
    schema = pa.ipc.read_schema(message)
    metadata = schema.metadata or {}
    named = metadata.get(b"fabricscope.table", b"").decode(errors="replace")
    if named != table:
        raise DecodeError(f"message holds table {named!r}, expected {table!r}")
    version = metadata.get(b"fabricscope.version", b"").decode(errors="replace")
    if version != str(records.SCHEMA_VERSION):
        raise DecodeError(f"schema version {version!r}, expected {records.SCHEMA_VERSION}")
    expected = records.arrow_schema(table)
    if not schema.equals(expected):
        if schema.names != expected.names:
            raise DecodeError(f"columns {schema.names} differ from {expected.names}")
        for field in expected:
            got = schema.field(field.name)
            if got.type != field.type:
                raise DecodeError(f"column {field.name}: type {got.type}, expected {field.type}")
    _ACCEPTED_SCHEMAS[table] = header  # names and types match: the batches read as records.py's schema


def record_batches(value: bytes) -> Iterator[pa.ipc.Message]:
    """The record batch messages of a message `decode` accepted, as they are (bodies still compressed): the
    sink hands them to ClickHouse, which decodes them itself, instead of decoding every message twice."""
    reader = pa.BufferReader(pa.py_buffer(value))
    while True:
        try:
            message = pa.ipc.read_message(reader)
        except EOFError:
            return
        if message.type == "record batch":
            yield message


@functools.cache
def _not_nullable_nodes(table: str) -> tuple[tuple[int, int], ...]:
    """(field node, column) of the table's non-nullable columns: a nested column's children take nodes too."""
    nodes, node = [], 0
    for index, field in enumerate(records.arrow_schema(table)):
        if not field.nullable:
            nodes.append((node, index))
        node += ipc_header.node_count(field.type)
    return tuple(nodes)


def to_columns(rows: pa.Table) -> dict[str, np.ndarray]:
    """A decoded table as numpy columns the way collectors build them: times as datetime64[us], strings,
    addresses (16-byte bytes) and lists as object arrays — the shape detectors take."""
    columns: dict[str, np.ndarray] = {}
    for field, column in zip(rows.schema, rows.columns, strict=True):
        if pa.types.is_timestamp(field.type):
            columns[field.name] = column.cast(pa.int64()).to_numpy().astype("datetime64[us]")
        elif pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            columns[field.name] = column.to_numpy(zero_copy_only=False)
        elif pa.types.is_string(field.type) or pa.types.is_fixed_size_binary(field.type):
            columns[field.name] = column.to_numpy(zero_copy_only=False)  # objects, without a Python list between
        else:
            columns[field.name] = np.array(column.to_pylist(), dtype=object)
    return columns
