"""The sink through the real broker into the real chdb engine: exact totals, outages, crashes, DLQ, groups."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pipeline_rows import expected_sums, random_flows, stored_sums

from pipeline import records
from pipeline.bus import BusConfig, Consumer, Producer
from pipeline.counterfile import read_counters
from pipeline.detect.engine import event_columns
from pipeline.detect.events import make_event
from pipeline.errors import StoreError
from pipeline.sink import REASON_HEADER, SOURCE_HEADER, Sink, SinkConfig
from pipeline.store import Store

pytestmark = pytest.mark.integration

WAIT_S = 120
FAST = {"batch_rows": 20_000, "batch_wait_s": 0.2, "retry_initial_s": 0.05, "retry_max_s": 0.2}


def _produce(bus: BusConfig, batches: list[dict], *, garbage: list[bytes] = ()) -> None:
    producer = Producer(bus).start()
    for index, batch in enumerate(batches):
        producer.send_batch("flows", batch)
        if index < len(garbage):
            producer.send(records.topic("flows"), garbage[index], key=b"leaf1-spine1")
    producer.flush()
    producer.stop()


def _sink(bus: BusConfig, store: Store, group: str, **config: Any) -> Sink:
    return Sink(SinkConfig(group=group, **{**FAST, **config}), bus=bus, store=store)


class FlakyStore(Store):
    """The store with a fault at the client boundary: the first `failures` inserts find ClickHouse down."""

    def __init__(self, store: Store, failures: int) -> None:
        super().__init__(store.config)
        self._client, self.failures = store._client, failures

    def insert_batches(self, table: str, schema: pa.Schema, batches: Iterable[pa.ipc.Message], *,
                       settings: Any = None) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreError("ClickHouse insert: connection refused (injected)", retriable=True)
        super().insert_batches(table, schema, batches, settings=settings)


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, not even the commit."""


class CrashAfterInsert(Store):
    """Inserts for real, then dies before the sink can commit the offsets."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.config)
        self._client = store._client

    def insert_batches(self, table: str, schema: pa.Schema, batches: Iterable[pa.ipc.Message], *,
                       settings: Any = None) -> None:
        super().insert_batches(table, schema, batches, settings=settings)
        raise Crash


class RecordingStore(Store):
    """Inserts for real and keeps each insert's (partition, first, end) offsets, read from its dedup token."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.config)
        self._client = store._client
        self.ranges: list[tuple[int, int, int]] = []

    def insert_batches(self, table: str, schema: pa.Schema, batches: Iterable[pa.ipc.Message], *,
                       settings: Any = None) -> None:
        super().insert_batches(table, schema, batches, settings=settings)
        _, partition, span, _ = settings["insert_deduplication_token"].rsplit("/", 3)
        first, end = span.split("-")
        self.ranges.append((int(partition), int(first), int(end)))


class HeldFlowsStore(Store):
    """Inserts for real, but holds every flows insert until `release` is set: a flow insert that takes long."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.config)
        self._client = store._client
        self.release = threading.Event()
        self.holding = threading.Event()

    def insert_batches(self, table: str, schema: pa.Schema, batches: Iterable[pa.ipc.Message], *,
                       settings: Any = None) -> None:
        if table == "flows":
            self.holding.set()
            self.release.wait(WAIT_S)
        super().insert_batches(table, schema, batches, settings=settings)


def test_events_reach_clickhouse_while_a_flow_insert_is_in_flight(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    held = HeldFlowsStore(store)
    sink = _sink(bus_config, held, "sink-events-lane").start()
    batches = [random_flows(2_000, seed=70)] + [random_flows(12_000, seed=seed) for seed in range(71, 73)]
    try:
        _produce(bus_config, batches[:1])
        assert held.holding.wait(WAIT_S)
        _produce(bus_config, batches[1:])  # more than batch_rows behind the held insert: the flows lane fills up
        event = make_event("fast_recovery", ts=1_780_000_000_000_000, ts_end=1_780_000_000_006_200,
                           severity="warning", link="leaf2-spine2", summary="leaf2-spine2 failed")
        producer = Producer(bus_config).start()
        producer.send_batch("events", event_columns([event]))
        producer.flush()
        producer.stop()
        _wait_until(lambda: store.query("SELECT count() FROM events").rows == [(1,)])
        assert not held.release.is_set() and store.query("SELECT count() FROM flows").rows == [(0,)]
        assert store.query("SELECT event_id, summary FROM incidents").rows == [
            (event["event_id"], "leaf2-spine2 failed")]
        held.release.set()
        assert sink.wait_for_rows("flows", 26_000, timeout_s=WAIT_S)
    finally:
        held.release.set()
        sink.stop()
    assert sink.stats.rows["events"] == 1
    assert stored_sums(store) == expected_sums(batches)  # the paused and rewound partitions: nothing lost or doubled


def test_inserts_overlapping_the_consumer_keep_each_partition_in_order_and_exact(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    batches = [random_flows(10_000, seed=seed) for seed in range(50, 58)]
    _produce(bus_config, batches)
    recording = RecordingStore(store)
    sink = _sink(bus_config, recording, "sink-overlap").start()
    try:
        assert sink.wait_for_rows("flows", 80_000, timeout_s=WAIT_S)
    finally:
        sink.stop()
    assert stored_sums(store) == expected_sums(batches)
    assert stored_sums(store, "flows_1h") == expected_sums(batches)
    by_partition: dict[int, list[tuple[int, int]]] = {}
    for partition, first, end in recording.ranges:
        by_partition.setdefault(partition, []).append((first, end))
    assert max(len(spans) for spans in by_partition.values()) > 1
    for spans in by_partition.values():  # each range starts where the previous one ended: none twice, none skipped
        assert spans[0][0] == 0
        assert all(end == following for (_, end), (following, _) in pairwise(spans))


def test_rows_in_equal_rows_stored_and_malformed_messages_go_to_the_dlq(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    batches = [random_flows(15_000, seed=seed) for seed in range(4)]
    garbage = [b"not arrow", b"\xff\xff\xff\xff\x00\x00"]
    _produce(bus_config, batches, garbage=garbage)
    sink = _sink(bus_config, store, "sink-exact").start()
    try:
        assert sink.wait_for_rows("flows", 60_000, timeout_s=WAIT_S)
    finally:
        sink.stop()
    assert stored_sums(store) == expected_sums(batches)
    for rollup in ("link_stats_1s", "flows_1m", "flows_1h"):
        assert stored_sums(store, rollup) == expected_sums(batches)
    assert sink.stats.dead_letters == 2

    dlq = Consumer(bus_config, group="dlq-reader", topics=[records.dlq_topic("flows")]).start()
    dead: list = []
    for _ in range(100):
        dead += dlq.poll(250)
        if len(dead) >= 2:
            break
    dlq.stop()
    assert sorted(r.value for r in dead) == sorted(garbage)
    for record in dead:
        headers = dict(record.headers)
        assert headers[REASON_HEADER].startswith(b"not an Arrow IPC stream")
        assert headers[SOURCE_HEADER].startswith(records.topic("flows").encode())


def test_clickhouse_down_for_a_while_loses_nothing(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    batches = [random_flows(10_000, seed=seed) for seed in range(10, 13)]
    _produce(bus_config, batches)
    flaky = FlakyStore(store, failures=5)
    sink = _sink(bus_config, flaky, "sink-outage").start()
    try:
        assert sink.wait_for_rows("flows", 30_000, timeout_s=WAIT_S)
    finally:
        sink.stop()
    assert flaky.failures == 0 and sink.stats.retries >= 5
    assert stored_sums(store) == expected_sums(batches)


def test_a_crash_between_insert_and_commit_doubles_nothing(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    batches = [random_flows(12_000, seed=seed) for seed in range(20, 24)]
    _produce(bus_config, batches)
    crashing = _sink(bus_config, CrashAfterInsert(store), "sink-crash").start()
    assert not crashing.wait_for_rows("flows", 1, timeout_s=WAIT_S)
    with pytest.raises(Crash):
        crashing.stop(timeout_s=WAIT_S)
    assert stored_sums(store)[0] > 0
    # More data behind the crashed range: without the intent the restarted sink would cut its ranges
    # elsewhere, the deduplication tokens would differ and the inserted rows would be doubled.
    batches += [random_flows(12_000, seed=seed) for seed in range(24, 26)]
    _produce(bus_config, batches[-2:])
    sink = _sink(bus_config, store, "sink-crash").start()
    try:
        assert sink.wait_for_rows("flows", 72_000, timeout_s=WAIT_S)
    finally:
        sink.stop()
    assert stored_sums(store) == expected_sums(batches)
    assert stored_sums(store, "flows_1m") == expected_sums(batches)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_two_sinks_in_one_group_share_the_partitions_and_totals_stay_exact(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    sinks = [_sink(bus_config, store, "sink-pair").start() for _ in range(2)]
    try:
        flows = records.topic("flows")
        _wait_until(lambda: all(any(tp.topic == flows for tp in s.assigned()) for s in sinks)
                    and sum(tp.topic == flows for s in sinks for tp in s.assigned()) == 4)
        batches = [random_flows(10_000, seed=seed) for seed in range(30, 34)]
        _produce(bus_config, batches)
        _wait_until(lambda: sum(s.stats.rows["flows"] for s in sinks) >= 40_000)
    finally:
        for sink in sinks:
            sink.stop()
    assert all(s.stats.rows["flows"] > 0 for s in sinks)
    assert stored_sums(store) == expected_sums(batches)


def test_a_counters_file_reaches_the_counters_table(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    sample = sorted((Path(__file__).parents[2] / "samples").glob("*.counters.jsonl"))[0]
    batches = list(read_counters(sample))
    producer = Producer(bus_config).start()
    for batch in batches:
        producer.send_batch("counters", batch)
    producer.flush()
    producer.stop()
    rows = sum(len(b["device"]) for b in batches)
    sink = _sink(bus_config, store, "sink-counters").start()
    try:
        assert sink.wait_for_rows("counters", rows, timeout_s=WAIT_S)
    finally:
        sink.stop()
    stored = store.query("SELECT count(), sum(in_octets), sum(ecn_marked) FROM counters").rows[0]
    assert stored == (rows, sum(int(b["in_octets"].sum()) for b in batches),
                      sum(int(b["ecn_marked"].sum()) for b in batches))

