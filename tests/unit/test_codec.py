"""Arrow IPC message bodies: round trip, size bound, key per link, and reasons for undecodable messages."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from pipeline_rows import random_flows

from pipeline import codec, records
from pipeline.errors import DecodeError


def test_round_trip_keeps_every_row_and_value() -> None:
    batch = random_flows(5000, seed=1)
    messages = codec.encode("flows", batch)
    tables = [codec.decode("flows", m.value) for m in messages]
    assert sum(t.num_rows for t in tables) == 5000 == sum(m.rows for m in messages)
    decoded = pa.concat_tables(tables)
    assert decoded.schema.equals(records.arrow_schema("flows"))
    assert int(np.asarray(decoded["packets"]).sum()) == int(batch["packets"].sum())
    assert sorted(decoded["src_ip"].to_pylist()) == sorted(bytes(row) for row in batch["src_ip"])


def test_messages_are_bounded_and_keyed_by_their_rows_link() -> None:
    batch = random_flows(40_000, seed=2)
    messages = codec.encode("flows", batch, max_bytes=256 << 10)
    assert len(messages) > len(set(batch["link"]))
    for message in messages:
        assert len(message.value) <= 256 << 10
        links = set(codec.decode("flows", message.value)["link"].to_pylist())
        assert links == {message.key.decode()}


def test_messages_are_filled_by_their_compressed_size() -> None:
    """A key's rows fill messages up to the bound as encoded, not as their far larger Arrow size: every
    message but the last of its key holds at least half the bound."""
    batch = random_flows(40_000, seed=2)
    messages = codec.encode("flows", batch, max_bytes=64 << 10)
    by_key: dict[bytes, list[int]] = {}
    for message in messages:
        assert len(message.value) <= 64 << 10
        by_key.setdefault(message.key, []).append(len(message.value))
    assert all(size >= 32 << 10 for sizes in by_key.values() for size in sizes[:-1])
    assert max(len(sizes) for sizes in by_key.values()) > 1


def test_default_messages_fit_in_one_mebibyte() -> None:
    messages = codec.encode("flows", random_flows(60_000, seed=3))
    assert all(len(m.value) <= codec.MAX_MESSAGE_BYTES for m in messages)


def test_message_bodies_are_compressed() -> None:
    """The bodies carry their own compression (the embedded broker keeps every message for its whole run):
    together they are a fraction of the same rows' uncompressed stream, and read back whole."""
    batch = random_flows(20_000, seed=4)
    messages = codec.encode("flows", batch)
    plain = pa.BufferOutputStream()
    rows = codec.to_arrow("flows", batch)
    with pa.ipc.new_stream(plain, rows.schema) as writer:
        writer.write_table(rows)
    assert sum(len(m.value) for m in messages) < plain.getvalue().size / 2
    decoded = pa.concat_tables(codec.decode("flows", m.value) for m in messages)  # grouped by link
    assert decoded.sort_by("ts_start").equals(rows.sort_by("ts_start"))


def test_each_message_size_gets_its_compression() -> None:
    """A compression context per column buffer costs a message the same whatever its rows: up to 1,023 rows
    are sent plain (Kafka's lz4 compresses a producer batch of such messages at once), a message of 1,024
    rows and more with zstd, whose ratio then pays. Each is the very bytes of a stream written so."""
    batch = random_flows(1_500, seed=4)
    batch["link"] = np.full(1_500, "leaf1-spine1", dtype=object)  # one key, so one message each
    for size, compression in ((16, None), (1_023, None), (1_024, pa.Codec("zstd", 1))):
        rows = codec.to_arrow("flows", {name: values[:size] for name, values in batch.items()})
        written = pa.BufferOutputStream()
        with pa.ipc.new_stream(written, rows.schema, options=pa.ipc.IpcWriteOptions(compression=compression)) as w:
            w.write_table(rows)
        (message,) = codec.encode("flows", {name: values[:size] for name, values in batch.items()})
        assert codec.decode("flows", message.value).equals(rows)
        assert message.value == written.getvalue().to_pybytes(), (size, compression)


def test_each_table_has_the_key_that_keeps_its_order() -> None:
    assert codec.key_column("iterations") == "job"
    assert codec.key_column("counters") == "link"
    assert codec.key_column("events") == "event_id"


def test_an_arrow_table_is_accepted_as_a_batch() -> None:
    table = codec.to_arrow("flows", random_flows(10, seed=4))
    assert sum(m.rows for m in codec.encode("flows", table)) == 10


def test_a_missing_column_names_it() -> None:
    batch = random_flows(3)
    del batch["ecn_ce"]
    with pytest.raises(ValueError, match=r"flows\.ecn_ce"):
        codec.encode("flows", batch)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not arrow at all", "not an Arrow IPC stream"),
        (b"", "not an Arrow IPC stream"),
    ],
)
def test_garbage_is_refused_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode("flows", value)


def test_a_message_of_another_table_is_refused() -> None:
    message = codec.encode("flows", random_flows(3))[0]
    with pytest.raises(DecodeError, match="holds table 'flows', expected 'counters'"):
        codec.decode("counters", message.value)


def test_a_changed_column_type_is_refused() -> None:
    table = codec.to_arrow("flows", random_flows(3))
    index = table.schema.get_field_index("packets")
    changed = table.set_column(index, pa.field("packets", pa.int32()), table["packets"].cast(pa.int32()))
    with pytest.raises(DecodeError, match="column packets: type int32"):
        codec.decode("flows", _stream(changed))


def test_nulls_in_a_non_nullable_column_are_refused_by_name() -> None:
    codec.decode("flows", codec.encode("flows", random_flows(3))[0].value)  # the schema is known from now on
    table = codec.to_arrow("flows", random_flows(3))
    index = table.schema.get_field_index("packets")
    holed = table.set_column(index, table.schema.field(index), pa.array([1, None, 3], pa.uint64()))
    with pytest.raises(DecodeError, match="column packets: nulls in a non-nullable column"):
        codec.decode("flows", _stream(holed))


def _stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_a_truncated_message_is_refused() -> None:
    message = codec.encode("flows", random_flows(100))[0]
    with pytest.raises(DecodeError):
        codec.decode("flows", message.value[: len(message.value) // 2])


def test_damaged_messages_are_refused_with_a_reason_never_another_error() -> None:
    """Every byte of a message flipped in turn, and every cut of it: decode gives rows or DecodeError."""
    value = codec.encode("flows", random_flows(3))[0].value
    damaged = [value[:cut] for cut in range(0, len(value), 7)]
    damaged += [value[:at] + bytes([value[at] ^ 0xFF]) + value[at + 1:] for at in range(len(value))]
    refused = 0
    for body in damaged:
        try:
            codec.decode("flows", body)
        except DecodeError:
            refused += 1
    assert len(damaged) // 2 < refused < len(damaged)  # cuts short of the last batch: refused; flipped values: rows
