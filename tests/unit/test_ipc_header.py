"""The null counts of a record batch message, read from its header: one per field node, children included."""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipeline import ipc_header


def test_null_counts_are_read_per_field_node_children_included() -> None:
    schema = pa.schema([pa.field("links", pa.list_(pa.string()), nullable=False),
                        pa.field("packets", pa.uint64(), nullable=False)])
    batch = pa.record_batch([pa.array([["a", None], None, ["b"]], pa.list_(pa.string())),
                             pa.array([1, None, None], pa.uint64())], schema=schema)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, schema) as writer:
        writer.write_batch(batch)
    reader = pa.BufferReader(sink.getvalue())
    assert pa.ipc.read_message(reader).type == "schema"
    message = pa.ipc.read_message(reader)
    assert ipc_header.null_counts(message.metadata) == (1, 1, 2)  # links, its strings, packets
    assert [ipc_header.node_count(field.type) for field in schema] == [2, 1]


def test_a_header_cut_short_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cut short"):
        ipc_header.null_counts(pa.py_buffer(b"\x08\x00"))
