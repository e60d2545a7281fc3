"""`replay --out` files are written as the batches come, not at the end."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pipeline_rows import random_flows

from collectors.collector import Collector, CollectorConfig
from collectors.pcapfile import open_capture
from pipeline import codec, recordfile
from pipeline.detect.engine import event_columns
from pipeline.detect.events import make_event
from pipeline.recordfile import RecordFileWriter
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_jsonl_rows_are_in_the_file_as_soon_as_their_batch_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recordfile, "JSON_CHUNK_ROWS", 7)  # batches span several chunks
    collector = Collector(  # 100 ms rows: the 400 ms sample gives rows in several steps
        load_topology(SAMPLES / "mixed.topology.yaml"), CollectorConfig(active_timeout_s=0.1)
    )
    out = tmp_path / "flows.jsonl"
    batches = 0
    with RecordFileWriter(out, "flows") as writer, open_capture(SAMPLES / "mixed.pcap", batch_size=2048) as capture:
        for step in collector.run(capture):
            before = writer.rows
            writer.write(step.flows)
            lines = out.read_text(encoding="utf-8").splitlines()
            assert len(lines) == writer.rows == before + len(step.flows["ts_start"])  # on disk before close
            batches += writer.rows > before
    assert batches > 2, "the sample gives rows in several steps"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sum(row["packets"] for row in rows) == collector.stats.packets - collector.stats.malformed


def _address_text(packed: bytes) -> str:
    """The standard library's text of an address, IPv4-mapped ones as ::ffff:a.b.c.d (ClickHouse's form)."""
    address = ipaddress.IPv6Address(packed)
    return f"::ffff:{address.ipv4_mapped}" if address.ipv4_mapped is not None else str(address)


def test_jsonl_addresses_and_times_are_what_ipaddress_and_isoformat_write() -> None:
    """Column-wise text equals the standard library's, value by value, over chunked and sliced columns (Arrow
    keeps an offset in a slice) and the addresses a fast path could get wrong: IPv4-mapped with 0 and 255
    octets, unspecified, loopback, IPv4-compatible, NAT64 and random ones."""
    rng = np.random.default_rng(7)
    shapes = ["::ffff:10.0.1.11", "::ffff:0.0.0.0", "::ffff:255.255.255.255", "::", "::1", "::1.2.3.4",
              "64:ff9b::1.2.3.4", "2001:db8::1", "fe80::ffff:1", "ffff::"]
    packed = [ipaddress.IPv6Address(text).packed for text in shapes] + [rng.bytes(16) for _ in range(200)]
    addresses = pa.chunked_array([pa.array(packed[:7], pa.binary(16)), pa.array(packed[7:], pa.binary(16))])
    micros = [0, 1_768_471_200_000_000, 1_768_471_200_004_963, 1_768_471_200_999_999,
              *rng.integers(0, 2_000_000_000_000_000, 100).tolist()]
    times = pa.chunked_array([pa.array(micros, pa.timestamp("us", tz="UTC"))]).slice(1)
    for column in (addresses, addresses.slice(3, 150), times):
        want = [_address_text(value) if isinstance(value, bytes)
                else value.isoformat().replace("+00:00", "Z") for value in column.to_pylist()]
        assert recordfile.json_column(column) == want
    plain = pa.chunked_array([pa.array([1, 2, None], pa.uint64())])
    assert recordfile.json_column(plain) == [1, 2, None]


def _dumped_lines(rows: pa.Table) -> list[str]:
    """The lines json.dumps writes for each row's dict of JSON-ready values: what the file must hold."""
    columns = [recordfile.json_column(column) for column in rows.columns]
    return [json.dumps(dict(zip(rows.schema.names, row, strict=True))) for row in zip(*columns, strict=True)]


def test_jsonl_lines_are_what_json_dumps_writes_for_every_kind_of_value(tmp_path: Path) -> None:
    """Lines built a column at a time equal json.dumps of each row: big integers, floats (NaN and infinities),
    booleans, nulls, non-ASCII, quoted and '%' text, lists, addresses and times, in flows and events."""
    flows = random_flows(300, seed=5)
    flows["app_detail"] = np.array(["ünï \"q\" \\ %s %", "", "\x01\t"] * 100, dtype=object)
    flows["confidence"] = np.array([np.nan, np.inf, -np.inf, 0.5, 1e-7, 0.0, -0.0, 1.0, 3e38, 0.1] * 30,
                                   dtype=np.float32)  # -0.0 and 0.0 are two texts
    flows["bytes"] = np.full(300, 2**64 - 1, dtype=np.uint64)
    events = event_columns([make_event("fast_recovery", ts=1_780_000_000_000_000 + i, ts_end=1_780_000_000_006_200,
                                       severity="warning", link=f"leaf{i % 4 + 1}-spine1", summary=f"ünïcode %d {i}")
                            for i in range(40)])
    events["convergence_ms"] = np.array([np.nan, 2.204] * 20)  # nullable: NaN is null
    for table, batch in (("flows", flows), ("events", events)):
        out = tmp_path / f"{table}.jsonl"
        with RecordFileWriter(out, table) as writer:
            writer.write(batch)
        rows = codec.to_arrow(table, batch)
        assert out.read_text(encoding="utf-8").splitlines() == _dumped_lines(rows), table
    assert rows["convergence_ms"].null_count == 20
