"""The sink: record topics → ClickHouse, in batches, with nothing lost and nothing doubled.

Per partition the sink buffers a range of offsets [first, end), then (1) records the range in
`sink_intents`, (2) inserts its rows with an insert deduplication token made of topic, partition, range and
a checksum of the messages, (3) commits `end`. A crash or rebalance after (2) leaves the range uncommitted:
the next owner reads the intent, rebuilds exactly that range, and ClickHouse drops the repeated insert
(materialized views too, with deduplicate_blocks_in_dependent_materialized_views). A ClickHouse outage
pauses the partitions and retries with backoff while Kafka keeps the data; a message that cannot be
decoded goes to `<topic>.dlq` with the reason in a header and the sink goes on.

Inserting overlaps consuming: one insert thread runs one batch (the head range of each partition) while the
consumer thread fetches and checks the next, so up to two batches are in memory, as the messages' compressed
bodies (~32 bytes a flow row, against ~310 decoded), which the insert hands ClickHouse as they are. A
partition's next range is sent only once its previous one is committed — never two inserted-but-uncommitted
ranges of a partition, which the single intent per partition relies on — and a rebalance waits for the
insert in flight before giving partitions up, so nothing of this sink lands after their next owner starts.

Events take a lane of their own (IMMEDIATE_TABLES): their own insert thread and their own ClickHouse client,
inserted as soon as they are polled, so an incident is readable within a poll of reaching Kafka instead of
waiting for batch_wait_s and for a flow insert of a second or more (one client runs one call at a time; a
second chdb client on the same engine runs beside it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import TypeVar

import crc32c
from kafka.structs import TopicPartition

from pipeline import codec, records
from pipeline.background import Background
from pipeline.bus import Admin, BusConfig, Consumer, Producer, Record
from pipeline.errors import DecodeError, FabricscopeError, StoreError
from pipeline.settings import IN_CODE, Origin
from pipeline.store import Store

log = logging.getLogger("fabricscope.sink")

DEFAULT_GROUP = "fabricscope-sink"
# The most rows one insert takes when the sink is behind (inserts otherwise come every batch_wait_s): the
# rollup views cost less a row in larger blocks (bench/pipeline.py, fabric rows: 500,000 gave 15% more rows/s
# end to end than 250,000). The price is memory while behind: ~20 MB more at a 1M-flow flood's peak
# (bench/flow_memory.py), 925 -> 1,630 MB peak RSS in a sink far behind a 2,048-link fabric (bench/big_fabric.py).
DEFAULT_BATCH_ROWS = 500_000
DEFAULT_BATCH_WAIT_S = 0.5
DEFAULT_POLL_TIMEOUT_MS = 200
# While an insert runs the consumer polls briefly, so that the insert's commit and the next one follow soon.
INFLIGHT_POLL_TIMEOUT_MS = 10
DEFAULT_RETRY_INITIAL_S = 0.2
DEFAULT_RETRY_MAX_S = 10.0
INTENTS_TABLE = "sink_intents"
REASON_HEADER = "fabricscope.reason"
SOURCE_HEADER = "fabricscope.source"
# Rollup views deduplicate with their source insert; the summing rollups fold rows in background merges, not
# at insert time (optimize_on_insert=0 roughly doubled insert throughput with the views in chdb); the views of
# an insert run in parallel, on the cores the consumer leaves (the insert is the sink's longest step).
INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1, "optimize_on_insert": 0,
                   "parallel_view_processing": 1}
# Tables an operator waits for: inserted as soon as polled, on their own thread and client (see above).
IMMEDIATE_TABLES = ("events",)

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class SinkConfig:
    group: str = DEFAULT_GROUP
    tables: tuple[str, ...] = tuple(records.TABLES)
    batch_rows: int = DEFAULT_BATCH_ROWS
    batch_wait_s: float = DEFAULT_BATCH_WAIT_S
    poll_timeout_ms: int = DEFAULT_POLL_TIMEOUT_MS
    retry_initial_s: float = DEFAULT_RETRY_INITIAL_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S

    def validate(self, origin: Origin = IN_CODE) -> None:
        if not self.group:
            raise origin.error("group", "must name a consumer group")
        unknown = sorted(set(self.tables) - set(records.TABLES))
        if unknown or not self.tables:
            raise origin.error("tables", f"not record tables: {', '.join(unknown) or 'none given'} "
                               f"(known: {', '.join(records.TABLES)})")
        for key in ("batch_rows", "batch_wait_s", "poll_timeout_ms", "retry_initial_s", "retry_max_s"):
            if getattr(self, key) <= 0:
                raise origin.error(key, "must be positive")


@dataclass
class SinkStats:
    """What this sink made durable (rows per table of the ranges it inserted and committed), dead letters,
    and where its time went: decoding messages, inserting into ClickHouse (in the insert thread), and the
    consumer thread blocked waiting for an insert to finish (what overlapping could not hide)."""

    rows: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    dead_letters: int = 0
    inserts: int = 0
    retries: int = 0
    decode_s: float = 0.0
    insert_s: float = 0.0
    insert_wait_s: float = 0.0


@dataclass
class _Range:
    """Buffered messages of one partition, offsets [first, end); `required_end` set when redoing an intent,
    `inflight` while the insert thread has it."""

    tp: TopicPartition
    first: int
    end: int
    required_end: int | None = None
    bodies: list[bytes] = field(default_factory=list)  # checked, kept compressed, decoded again as inserted
    rows: int = 0
    checksum: int = 0
    closed: bool = False
    inflight: bool = False

    def token(self) -> str:
        return f"{self.tp.topic}/{self.tp.partition}/{self.first}-{self.end}/{self.checksum:08x}"


@dataclass(frozen=True)
class _Pending:
    """The batch the insert thread is inserting: at most one range per partition."""

    batch: list[_Range]
    future: Future[bool]


@dataclass
class _Lane:
    """One insert path: the topics it carries, its insert thread and client (set by run()), the batch in
    flight, and since when its oldest unsent range waits. `immediate`: insert whatever is buffered at once."""

    topics: frozenset[str]
    immediate: bool
    store: Store | None = None
    inserter: ThreadPoolExecutor | None = None
    pending: _Pending | None = None
    oldest: float = field(default_factory=time.monotonic)


class Sink:
    """Consumer-group member writing every record topic to the store; no I/O before start() or run()."""

    def __init__(self, config: SinkConfig, *, bus: BusConfig, store: Store) -> None:
        self.config = config
        self.bus = bus
        self.store = store
        self._tables = {records.topic(table): table for table in config.tables}
        self._ranges: dict[TopicPartition, list[_Range]] = {}
        self._assigned: set[TopicPartition] = set()
        self._new_partitions: set[TopicPartition] = set()
        self._intents: dict[TopicPartition, tuple[int, int]] = {}
        self._topic_ids: dict[str, str] = {}
        self._stats = SinkStats(rows=dict.fromkeys(config.tables, 0))
        self._progress = threading.Condition()
        self._generation = 0
        immediate = frozenset(records.topic(table) for table in config.tables if table in IMMEDIATE_TABLES)
        self._lanes = [lane for lane in (_Lane(frozenset(self._tables) - immediate, immediate=False),
                                         _Lane(immediate, immediate=True)) if lane.topics]
        self._background = Background("fabricscope-sink", self.run, log, on_error=self._wake)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Sink:
        """Run the sink in a background thread until stop()."""
        self._background.start()
        return self

    def _wake(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the background thread after flushing what it holds; re-raise what made it fail."""
        self._background.stop(timeout_s)

    @property
    def error(self) -> BaseException | None:
        """What ended the background thread, None while it runs or after a clean stop."""
        return self._background.error

    @property
    def stats(self) -> SinkStats:
        with self._progress:
            return replace(self._stats, rows=dict(self._stats.rows))

    def assigned(self) -> set[TopicPartition]:
        return set(self._assigned)

    def wait_for_rows(self, table: str, rows: int, *, timeout_s: float) -> bool:
        """Block until `rows` rows of `table` are in the store (True), the timeout passes or the sink fails."""
        deadline = time.monotonic() + timeout_s
        with self._progress:
            while self._stats.rows.get(table, 0) < rows and self.error is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
            return self._stats.rows.get(table, 0) >= rows

    # -- the loop ----------------------------------------------------------------------------------
    def run(self, stop: threading.Event, *, idle_exit_s: float | None = None) -> None:
        """Consume until `stop` is set, or until nothing arrived for idle_exit_s since the last record or
        assignment (a batch load: never a guess from lag, which tansu reports wrongly)."""
        consumer = Consumer(self.bus, group=self.config.group, topics=list(self._tables),
                            on_assigned=self._on_assigned, on_revoked=self._on_revoked).start()
        producer = Producer(self.bus).start()
        for index, lane in enumerate(self._lanes):
            lane.inserter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fabricscope-insert")
            lane.store = self.store if index == 0 else Store(self.store.config).open()
        try:
            last_record, generation = time.monotonic(), self._generation
            while not stop.is_set():
                inflight = any(lane.pending is not None for lane in self._lanes)
                polled = consumer.poll(INFLIGHT_POLL_TIMEOUT_MS if inflight else self.config.poll_timeout_ms)
                self._load_intents(consumer, stop)
                self._take(polled, consumer, producer, stop)
                now = time.monotonic()
                if polled or self._generation != generation:
                    last_record, generation = now, self._generation
                due = False
                for lane in self._lanes:
                    if lane.pending is not None and lane.pending.future.done():
                        self._settle(lane, consumer, producer, stop)
                    if self._due(lane, now):
                        due = True
                        self._flush(lane, consumer, producer, stop)
                if (not due and idle_exit_s is not None and self._assigned and not self._ranges
                        and now - last_record >= idle_exit_s):
                    return
            for lane in self._lanes:
                while self._flush(lane, consumer, producer, stop, final=True):
                    pass
        finally:
            for lane in self._lanes:
                if lane.inserter is not None:
                    lane.inserter.shutdown(wait=True)
                if lane.store is not None and lane.store is not self.store:
                    lane.store.close()
                lane.inserter, lane.store, lane.pending = None, None, None
            producer.stop()
            consumer.stop()

    def _take(self, polled: list[Record], consumer: Consumer, producer: Producer, stop: threading.Event) -> None:
        """Buffer the polled records, inserting whenever batch_rows are buffered. A lane holding batch_rows while
        its insert runs takes no more (which bounds memory): those partitions pause, rewound to the first record
        not taken, until the insert settles, and the consumer goes on serving the other lane instead of waiting
        on the insert."""
        generation = self._generation
        held: set[TopicPartition] = set()
        for record in polled:
            if self._generation != generation:
                return  # a rebalance during an insert: the consumer reads again from the committed offsets
            tp = TopicPartition(record.topic, record.partition)
            if tp in held or tp not in self._assigned:
                continue
            lane = self._lane_of(record.topic)
            if lane.pending is not None and self._unsent_rows(lane) >= self.config.batch_rows:
                held.add(tp)
                consumer.seek(tp, record.offset)
                consumer.pause([tp])
                continue
            self._add(record, producer)
            if lane.pending is None and self._unsent_rows(lane) >= self.config.batch_rows:
                self._flush(lane, consumer, producer, stop)

    def _lane_of(self, topic: str) -> _Lane:
        return next(lane for lane in self._lanes if topic in lane.topics)

    def _on_assigned(self, partitions: set[TopicPartition]) -> None:
        log.info("assigned %d partitions", len(partitions))
        self._generation += 1
        self._assigned |= partitions
        self._new_partitions |= partitions

    def _on_revoked(self, partitions: set[TopicPartition]) -> None:
        """Let the insert in flight finish (it must not land after the next owner starts), then forget what
        was buffered: it was not committed, the next owner (maybe us) reads it again."""
        self._generation += 1
        wait([lane.pending.future for lane in self._lanes if lane.pending is not None])
        self._assigned -= partitions
        for tp in partitions:
            self._ranges.pop(tp, None)
            self._intents.pop(tp, None)

    def _load_intents(self, consumer: Consumer, stop: threading.Event) -> None:
        """For newly assigned partitions, the range a previous owner was inserting when it stopped, if any."""
        if not self._new_partitions:
            return
        partitions, self._new_partitions = self._new_partitions, set()
        self._topic_ids = Admin(self.bus).topic_ids(self._tables)
        try:
            rows = self._with_retry(stop, lambda: self.store.query(
                f"SELECT topic, partition, argMax(topic_id, written), argMax(first_offset, written), "
                f"argMax(end_offset, written) FROM {INTENTS_TABLE} WHERE consumer_group = {{group:String}} "
                "GROUP BY topic, partition", parameters={"group": self.config.group}).rows, consumer)
        finally:
            consumer.resume(consumer.assignment())
        if rows is None:
            self._new_partitions |= partitions
            return
        for topic, partition, topic_id, first, end in rows:
            tp = TopicPartition(topic, int(partition))
            if tp not in partitions or topic_id != self._topic_ids.get(topic):
                continue
            committed = consumer.committed(tp)
            if committed == int(first) or (committed is None and topic_id):
                self._intents[tp] = (int(first), int(end))

    def _add(self, record: Record, producer: Producer) -> None:
        tp = TopicPartition(record.topic, record.partition)
        if tp not in self._assigned:
            return
        ranges = self._ranges.setdefault(tp, [])
        current = ranges[-1] if ranges and not ranges[-1].closed else None
        if current is None:
            current = _Range(tp, record.offset, record.offset)
            intent = self._intents.pop(tp, None)
            if intent is not None and intent[0] <= record.offset < intent[1]:
                current.first, current.required_end = intent
            ranges.append(current)
        current.end = record.offset + 1
        current.checksum = crc32c.crc32c(record.value, crc32c.crc32c(str(record.offset).encode(), current.checksum))
        table = self._tables[record.topic]
        started = time.perf_counter()
        try:
            rows = codec.decode(table, record.value)
        except DecodeError as exc:
            self._dead_letter(record, table, exc.reason, producer)
        else:
            current.bodies.append(record.value)
            current.rows += rows.num_rows
        with self._progress:
            self._stats.messages += 1
            self._stats.decode_s += time.perf_counter() - started
        if current.required_end is not None and current.end >= current.required_end:
            current.closed = True

    def _dead_letter(self, record: Record, table: str, reason: str, producer: Producer) -> None:
        log.warning("%s/%d@%d to the DLQ: %s", record.topic, record.partition, record.offset, reason)
        source = f"{record.topic}/{record.partition}/{record.offset}".encode()
        producer.send(records.dlq_topic(table), record.value, key=record.key,
                      headers=[(REASON_HEADER, reason.encode()), (SOURCE_HEADER, source)])
        with self._progress:
            self._stats.dead_letters += 1

    def _unsent(self, lane: _Lane) -> Iterator[_Range]:
        """Buffered ranges of the lane its insert thread does not have."""
        return (r for tp, ranges in self._ranges.items() if tp.topic in lane.topics for r in ranges if not r.inflight)

    def _unsent_rows(self, lane: _Lane) -> int:
        return sum(r.rows for r in self._unsent(lane))

    def _due(self, lane: _Lane, now: float) -> bool:
        """No insert in flight, and batch_rows buffered, batch_wait passed, a range complete or the lane
        immediate. While an insert runs the consumer keeps buffering instead of blocking on it, so the next
        insert is larger."""
        unsent = list(self._unsent(lane))
        if not unsent:
            lane.oldest = now
            return False
        if lane.pending is not None:
            return False
        return (lane.immediate or sum(r.rows for r in unsent) >= self.config.batch_rows
                or now - lane.oldest >= self.config.batch_wait_s or any(r.closed for r in unsent))

    # -- flushing ---------------------------------------------------------------------------------
    def _flush(self, lane: _Lane, consumer: Consumer, producer: Producer, stop: threading.Event, *,
               final: bool = False) -> bool:
        """Settle the lane's insert in flight, then hand its insert thread the head range of every partition
        of the lane.

        Settling first keeps one inserted-but-uncommitted range per partition at most. False when nothing
        was handed over: nothing to insert, or the insert in flight did not succeed (its ranges stay
        buffered and go again on the next flush).
        """
        if lane.pending is not None and not self._settle(lane, consumer, producer, stop, final=final):
            return False
        heads = [ranges for tp, ranges in self._ranges.items() if tp.topic in lane.topics]
        for ranges in heads:
            for buffered in ranges:
                if buffered.required_end is None:
                    buffered.closed = True
        lane.oldest = time.monotonic()
        batch = [ranges[0] for ranges in heads if ranges[0].closed]
        if not batch:
            return False
        if lane.inserter is None or lane.store is None:
            raise FabricscopeError("sink flushed outside run()")
        for buffered in batch:
            buffered.inflight = True
        lane.pending = _Pending(batch, lane.inserter.submit(self._insert, lane.store, batch, producer))
        return True

    def _live(self, batch: Sequence[_Range]) -> list[_Range]:
        """The ranges of `batch` still ours and still first in their partition (not revoked meanwhile)."""
        return [r for r in batch if r.tp in self._assigned and self._ranges.get(r.tp, [None])[0] is r]

    def _settle(self, lane: _Lane, consumer: Consumer, producer: Producer, stop: threading.Event, *,
                final: bool = False) -> bool:
        """Wait for the lane's insert in flight, retrying it here while ClickHouse is down, then commit its
        ranges."""
        pending, lane.pending = lane.pending, None
        if pending is None or lane.store is None:
            return False
        store = lane.store
        first: Future[bool] | None = pending.future

        def attempt() -> bool:
            nonlocal first
            if first is not None:
                future, first = first, None
                started = time.perf_counter()
                wait([future])
                with self._progress:
                    self._stats.insert_wait_s += time.perf_counter() - started
                return future.result()
            live = self._live(pending.batch)
            return self._insert(store, live, producer) if live else True

        try:
            done = self._with_retry(stop, attempt, consumer, attempts=1 if final else None)
        finally:
            for buffered in pending.batch:
                buffered.inflight = False
            consumer.resume(consumer.assignment())
        live = self._live(pending.batch)
        if done is None or not live:
            return False
        try:
            consumer.commit({r.tp: r.end for r in live})
        except FabricscopeError as exc:
            log.warning("commit failed, the partitions' next owner re-inserts (deduplicated): %s", exc)
            return False
        for r in live:
            self._ranges[r.tp].pop(0)
        self._ranges = {tp: ranges for tp, ranges in self._ranges.items() if ranges}
        with self._progress:
            for r in live:
                table = self._tables[r.tp.topic]
                self._stats.rows[table] = self._stats.rows.get(table, 0) + r.rows
            self._stats.inserts += len(live)
            self._progress.notify_all()
        log.info("inserted %s", ", ".join(f"{r.tp.topic}/{r.tp.partition}@{r.first}-{r.end} rows={r.rows}"
                                          for r in live))
        return True

    def _insert(self, store: Store, batch: Sequence[_Range], producer: Producer) -> bool:
        """Intents, then rows, then the dead letters' acknowledgement: all before the commit."""
        store.insert_rows(
            INTENTS_TABLE,
            [(self.config.group, r.tp.topic, self._topic_ids.get(r.tp.topic, ""), r.tp.partition, r.first, r.end)
             for r in batch],
            column_names=("consumer_group", "topic", "topic_id", "partition", "first_offset", "end_offset"),
        )
        started = time.perf_counter()
        for r in batch:
            if r.rows:
                table = self._tables[r.tp.topic]
                store.insert_batches(table, records.arrow_schema(table),
                                     (batch for body in r.bodies for batch in codec.record_batches(body)),
                                     settings={**INSERT_SETTINGS, "insert_deduplication_token": r.token()})
        with self._progress:
            self._stats.insert_s += time.perf_counter() - started
        producer.flush()
        return True

    def _with_retry(self, stop: threading.Event, action: Callable[[], T], consumer: Consumer, *,
                    attempts: int | None = None) -> T | None:
        """Run `action`, retrying retriable store errors with exponential backoff; None if stopped first."""
        delay = self.config.retry_initial_s
        attempt = 0
        while True:
            attempt += 1
            try:
                return action()
            except StoreError as exc:
                if not exc.retriable:
                    raise
                if attempts is not None and attempt >= attempts:
                    log.warning("giving up on stop, Kafka keeps the data: %s", exc)
                    return None
                log.warning("ClickHouse unavailable, retrying in %.1f s: %s", delay, exc)
                with self._progress:
                    self._stats.retries += 1
            if stop.wait(delay):
                return None
            self._keep_membership(consumer)
            delay = min(delay * 2, self.config.retry_max_s)


    def _keep_membership(self, consumer: Consumer) -> None:
        """Poll with every partition paused so the group keeps us; rewind anything a rebalance let through."""
        consumer.pause(consumer.assignment())
        for record in consumer.poll(0):
            tp = TopicPartition(record.topic, record.partition)
            consumer.seek(tp, min(record.offset, consumer.position(tp)))
