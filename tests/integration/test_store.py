"""The store against the real chdb engine: migrations, schema from records.py, dedup of raw tables and rollups."""

from __future__ import annotations

import functools
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from pipeline_rows import expected_sums, random_flows, stored_sums

from collectors.collector import Collector
from collectors.replay import replay_batches
from collectors.sflow import SflowDecoder
from pipeline import codec, records
from pipeline.detect.engine import event_columns
from pipeline.detect.events import make_event
from pipeline.errors import StoreError, StoreLockedError
from pipeline.migrate import MIGRATIONS_TABLE, load_migrations, migrate, render_raw_tables
from pipeline.store import Store, StoreConfig, embedded_dsn
from pipeline.topology import load_topology

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parents[2] / "samples"

ROLLUPS = ("link_stats_1s", "flows_1m", "flows_1h")
DEDUP = {"deduplicate_blocks_in_dependent_materialized_views": 1}


def test_migrations_applied_twice_are_a_no_op_and_recorded(store_factory: Callable[..., Store]) -> None:
    store = store_factory(migrated=False)
    versions = [m.version for m in load_migrations()]
    assert [m.version for m in migrate(store)] == versions
    assert migrate(store) == []
    recorded = store.query(f"SELECT version, name FROM {MIGRATIONS_TABLE} ORDER BY version").rows
    assert [v for v, _ in recorded] == versions
    assert recorded[0][1] == "raw_tables"


def test_raw_tables_match_records_column_by_column(store: Store) -> None:
    for table, columns in records.TABLES.items():
        described = store.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "AND default_kind != 'MATERIALIZED' ORDER BY position", parameters={"db": store.database, "t": table}).rows
        assert described == [(c.name, c.clickhouse) for c in columns], table


def test_first_migration_is_the_rendering_of_records() -> None:
    assert load_migrations()[0].sql == render_raw_tables(), "regenerate: python -m pipeline.migrate"


def test_every_merge_tree_has_a_dedup_window(store: Store) -> None:
    engines = store.query(
        "SELECT name, engine_full FROM system.tables WHERE database = {db:String} AND engine LIKE '%MergeTree'",
        parameters={"db": store.database}).rows
    bookkeeping = (MIGRATIONS_TABLE, "sink_intents")
    missing = [name for name, engine in engines
               if name not in bookkeeping and "non_replicated_deduplication_window" not in engine]
    assert len(engines) >= len(records.TABLES) + len(ROLLUPS)
    assert missing == []


def test_rollups_equal_raw_sums_after_a_duplicate_insert(store: Store) -> None:
    batch = random_flows(20_000, seed=7)
    rows = codec.to_arrow("flows", batch)
    for _ in range(2):
        store.insert_arrow("flows", rows, settings={**DEDUP, "insert_deduplication_token": "same-range"})
    store.insert_arrow("flows", rows.slice(0, 10), settings={**DEDUP, "insert_deduplication_token": "other"})
    expected = expected_sums([random_flows(20_000, seed=7), {k: v[:10] for k, v in batch.items()}])
    assert stored_sums(store) == expected
    for rollup in ROLLUPS:
        assert stored_sums(store, rollup) == expected, rollup


def _same_rows(store: Store, table: str, other: str) -> bool:
    differ = store.query(f"SELECT (SELECT count() FROM (SELECT * FROM {table} EXCEPT SELECT * FROM {other})) + "
                         f"(SELECT count() FROM (SELECT * FROM {other} EXCEPT SELECT * FROM {table}))").rows
    counts = store.query(f"SELECT (SELECT count() FROM {table}), (SELECT count() FROM {other})").rows[0]
    return differ == [(0,)] and counts[0] == counts[1]


@functools.cache
def _collected(table: str) -> pa.Table:
    """A sample's records of a table as the collector makes them."""
    topology = load_topology(SAMPLES / "allreduce_congestion.topology.yaml")
    steps = [dict(step.tables()) for step in
             Collector(topology).run(replay_batches([SAMPLES / "allreduce_congestion.pcap"], progress=False))]
    return pa.concat_tables(codec.to_arrow(table, step[table]) for step in steps if table in step)


@pytest.mark.parametrize("table", ["flows", "link_bins", "iterations", "events"])
def test_record_batches_inserted_as_they_came_equal_the_decoded_rows(store: Store, table: str) -> None:
    if table == "flows":
        batch: codec.Batch = random_flows(20_000, seed=11)
    elif table == "events":
        batch = event_columns([make_event("fast_recovery", ts=1_780_000_000_000_000 + i, ts_end=1_780_000_000_006_200,
                                          severity="warning", link=f"leaf{i % 4 + 1}-spine1", summary=f"ünïcode {i}")
                               for i in range(300)])
    else:
        batch = _collected(table)
    bodies = [m.value for m in codec.encode(table, batch, max_bytes=64 << 10)]  # as the sink gets them
    assert len(bodies) >= 2
    schema = records.arrow_schema(table)
    rows = codec.to_arrow(table, batch)
    several = pa.BufferOutputStream()  # a producer's message may hold several uncompressed batches
    with pa.ipc.new_stream(several, schema) as writer:
        writer.write_table(rows, max_chunksize=rows.num_rows // 5)
    bodies.append(several.getvalue().to_pybytes())
    store.insert_batches(table, schema, (b for body in bodies for b in codec.record_batches(body)))
    store.command(f"CREATE TABLE decoded AS {table} ENGINE = MergeTree ORDER BY tuple()")
    store.insert_stream("decoded", schema, (codec.decode(table, body) for body in bodies))
    assert _same_rows(store, table, "decoded")
    if table == "flows":
        assert stored_sums(store) == expected_sums([random_flows(20_000, seed=11)] * 2)
        for rollup in ROLLUPS:
            assert stored_sums(store, rollup) == expected_sums([random_flows(20_000, seed=11)] * 2), rollup


def test_sflow_drop_notifications_are_stored_with_their_reason(store: Store) -> None:
    """Drops rows from the decoder of a datagram built by the sFlow spec (agent 192.0.2.1, whose ifIndex 49 is
    leaf1-spine1 in samples/topology.yaml) go into the `drops` table of migration 007."""
    drops = [struct.pack(">IIIIIIIII", 5, 32, 1, 0, 49, 0, 49, 0, reason) + struct.pack(">I", 0) for reason in
             (259, 258, 259)]  # sample format 5, its length, then sequence, source, drops, input, output, reason
    datagram = struct.pack(">II4sIIII", 5, 1, bytes([192, 0, 2, 1]), 0, 1, 60_000, len(drops)) + b"".join(drops)
    topology = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml")
    rows = SflowDecoder(topology).decode_datagrams([datagram], [1_700_000_000_000_000_000]).drops
    store.insert_arrow("drops", codec.to_arrow("drops", rows))
    stored = store.query("SELECT link, reason, count() FROM drops GROUP BY link, reason ORDER BY reason").rows
    assert stored == [("leaf1-spine1", "acl", 1), ("leaf1-spine1", "no_buffer_space", 2)]


def test_query_readonly_refuses_writes(store: Store) -> None:
    with pytest.raises(StoreError, match="not a read"):
        store.query_readonly("INSERT INTO events (kind) VALUES ('x')")
    assert store.query_readonly("SELECT count() FROM events").rows == [(0,)]


def test_parameters_are_bound_not_formatted(store: Store) -> None:
    result = store.query_readonly("SELECT {text:String} AS text", parameters={"text": "x' OR 1=1 --"})
    assert result.rows == [("x' OR 1=1 --",)] and result.columns == ["text"]


def test_a_bad_query_is_a_store_error_that_does_not_retry(store: Store) -> None:
    with pytest.raises(StoreError) as caught:
        store.query("SELEC 1")
    assert not caught.value.retriable


def test_an_unreachable_server_is_retriable() -> None:
    store = Store(StoreConfig(dsn="http://default:@127.0.0.1:9/default"))
    with pytest.raises(StoreError) as caught:
        store.open()
    assert caught.value.retriable


def test_a_directory_held_by_another_process_names_it(tmp_path) -> None:
    directory = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, clickhouse_connect; c = clickhouse_connect.get_client(dsn=sys.argv[1]);"
         " c.command('SELECT 1'); print('ready', flush=True); sys.stdin.read()", embedded_dsn(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        probe = subprocess.run(
            [sys.executable, "-c", "import sys\nfrom pipeline.store import Store, StoreConfig\n"
             "from pipeline.errors import StoreLockedError\n"
             "try:\n    Store(StoreConfig(dsn=sys.argv[1])).open()\nexcept StoreLockedError as e:\n    print(e)",
             embedded_dsn(directory)], capture_output=True, text=True, timeout=120)
    finally:
        holder.communicate("", timeout=60)
    assert f"{(directory / 'clickhouse').resolve()} is in use by another process" in probe.stdout
    assert probe.stderr == "", "chdb's own 'Code: 76 ... Cannot lock file' line is not shown (issue 13, item 8)"
    assert StoreLockedError.__mro__[1] is StoreError
