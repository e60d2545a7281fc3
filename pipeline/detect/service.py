"""The detectors as a Kafka consumer-group member (`fabricscope ingest --topology T`): record topics in,
events topic out.

A thin loop around DetectorSet: poll, decode, feed (flow, link-bin and iteration rows through the clock
of pipeline.detect.watermark, which holds a partition or collector read ahead until the others catch up),
produce the events, and commit the offsets only once those events are acknowledged. With a checkpoint
file (pipeline.detect.checkpoint), the detectors' state is saved every `checkpoint_s` before the offsets
it covers are committed, and restored on start: an incident open across a restart, clean or killed,
stays one incident. Without one, state lives in memory and a restart learns the fabric again from the
records that follow.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
from kafka.structs import TopicPartition

from pipeline import codec, records
from pipeline.background import Background
from pipeline.bus import BusConfig, Consumer, Producer, Record
from pipeline.detect.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from pipeline.detect.engine import INPUT_TABLES, DetectorSet, event_columns
from pipeline.detect.events import Batch, Event
from pipeline.detect.watermark import Watermark, WatermarkConfig, aligned, concat
from pipeline.errors import DecodeError, RebalancedError

log = logging.getLogger("fabricscope.detect")

DEFAULT_GROUP = "fabricscope-detect"
DEFAULT_POLL_TIMEOUT_MS = 200
DEFAULT_CHECKPOINT_S = 5.0
# Messages a poll may return. A poll's rows go to the detectors as one update per table, and every update
# judges every link: at 1,024 links (a message per link and table a second) polls of kafka-python's 500 cost
# the detector member 72 CPU seconds where 2,000 cost 59, and it caught up 10 s after the last record
# instead of 26 (bench.big_fabric 64 x 16, back to back). Fetches bound the bytes held, not this.
POLL_RECORDS = 2000


@dataclass(frozen=True)
class DetectorCounts:
    """What the detectors took in and gave out: rows by input table, events emitted, messages skipped,
    incidents open now, and how long the last message processed had waited in Kafka (production to
    detection; 0 before the first)."""

    rows: dict[str, int]
    messages: int
    events: int
    skipped: int
    open_incidents: int
    lag_s: float
    waiting_rows: int = 0  # rows read that wait for the detectors' clock (pipeline/detect/watermark.py)


@dataclass(frozen=True, kw_only=True)
class DetectorServiceConfig:
    """The detectors' consumer-group membership (the thresholds are pipeline.detect.config.DetectorConfig)."""

    group: str = DEFAULT_GROUP
    poll_timeout_ms: int = DEFAULT_POLL_TIMEOUT_MS
    checkpoint: Path | None = None
    checkpoint_s: float = DEFAULT_CHECKPOINT_S
    watermark: WatermarkConfig = field(default_factory=WatermarkConfig)


class DetectorService:
    """Runs `detectors` on every record topic; no I/O before start() (a background thread until stop())
    or run() (in the caller's thread until its `stop` is set)."""

    def __init__(self, config: DetectorServiceConfig, *, bus: BusConfig, detectors: DetectorSet) -> None:
        self.config = config
        self.bus = bus
        self.detectors = detectors
        self._topology = detectors.fast_recovery.topology  # what a checkpoint of an older format lacks
        self.watermark = Watermark(config.watermark)
        self.events = 0
        self.skipped = 0
        self.messages = 0
        self.rows: Counter[str] = Counter()
        self.lag_s = 0.0
        self.waiting_rows = 0
        self._lock = threading.Lock()
        self._tables = {records.topic(table): table for table in INPUT_TABLES}
        self._background = Background("fabricscope-detect", self.run, log)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> DetectorService:
        """Run in a background thread until stop()."""
        self._background.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the background thread once the detectors checkpointed (or, without a checkpoint, emitted) what
        they still hold; re-raise what made it fail."""
        self._background.stop(timeout_s)

    def counts(self) -> DetectorCounts:
        """A consistent snapshot of the counters, safe to take from another thread (a /metrics scrape)."""
        with self._lock:
            return DetectorCounts(rows=dict(self.rows), messages=self.messages, events=self.events,
                                  skipped=self.skipped, open_incidents=self.detectors.open_incidents,
                                  lag_s=self.lag_s, waiting_rows=self.waiting_rows)

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set. Then, with a checkpoint file, save the state as it is (open incidents
        stay open and go on after the restart); without one, emit what the detectors still hold (a clean
        shutdown loses no episode that the data already showed)."""
        checkpoint = self.config.checkpoint
        restored = load_checkpoint(checkpoint, self._topology) if checkpoint is not None else None
        if restored is not None:
            changed = restored.detectors.take_settings(self.detectors)
            self.detectors, self.watermark = restored.detectors, restored.watermark
            self.watermark.restarted(time.monotonic(), self.config.watermark)
            log.info("detectors restored from %s: %d incidents open, %d rows waiting for the clock", checkpoint,
                     self.detectors.open_incidents, self.watermark.held_rows)
            for change in changed:
                log.warning("detector setting changed since the checkpoint: %s", change)
        positions: dict[tuple[str, int], int] = dict(restored.offsets) if restored is not None else {}
        assignments: list[set[TopicPartition]] = []
        consumer = Consumer(self.bus, group=self.config.group, topics=list(self._tables),
                            on_assigned=assignments.append, poll_records=POLL_RECORDS).start()
        producer = Producer(self.bus).start()
        saved, unsaved, paused = time.monotonic(), False, set[tuple[str, int]]()
        try:
            while not stop.is_set():
                fresh = []
                polled = consumer.poll(self.config.poll_timeout_ms)
                now = time.monotonic()
                while assignments:
                    owned = {(tp.topic, tp.partition) for tp in assignments.pop(0)}
                    unsaved = self._update(self.watermark.assigned(owned, now), producer) or unsaved
                    paused &= owned
                for record in polled:
                    where = (record.topic, record.partition)
                    if record.offset < positions.get(where, 0):
                        continue  # the restored state holds it already
                    fresh.append(record)
                    positions[where], unsaved = record.offset + 1, True
                    if record.timestamp_ms >= 0:
                        with self._lock:
                            self.lag_s = max(0.0, time.time() - record.timestamp_ms / 1000)
                if not polled:
                    self.watermark.caught_up(now)
                unsaved = self._feed(fresh, now, producer) or unsaved  # rows the clock let go change the state too
                paused = self._pace(consumer, paused, now)
                if unsaved and (checkpoint is None or time.monotonic() - saved >= self.config.checkpoint_s):
                    unsaved = not self._commit(positions, consumer, producer)
                    saved = time.monotonic()
            if checkpoint is None:
                self._update(self.watermark.flush(), producer)
                self._emit(self.detectors.flush(), producer)
            self._commit(positions, consumer, producer)
        finally:
            producer.stop()
            consumer.stop()

    def flush(self) -> None:
        """Emit what the detectors hold (the rows waiting for the clock first) and checkpoint the emptied state:
        the input is complete (a batch load). For a service that is not running (after stop())."""
        producer = Producer(self.bus).start()
        try:
            self._update(self.watermark.flush(), producer)
            self._emit(self.detectors.flush(), producer)
            producer.flush()
            if self.config.checkpoint is not None:
                restored = load_checkpoint(self.config.checkpoint, self._topology)
                offsets = restored.offsets if restored is not None else {}
                save_checkpoint(self.config.checkpoint, Checkpoint(self.detectors, offsets, self.watermark))
        finally:
            producer.stop()

    def _pace(self, consumer: Consumer, paused: set[tuple[str, int]], now: float) -> set[tuple[str, int]]:
        """Pause the partitions read far ahead of the clock, resume those it caught up with: what waits for
        the clock stays bounded."""
        ahead = self.watermark.ahead(now)
        if ahead - paused:
            consumer.pause(TopicPartition(*where) for where in ahead - paused)
        if paused - ahead:
            consumer.resume(TopicPartition(*where) for where in paused - ahead)
        return ahead

    def _commit(self, positions: dict[tuple[str, int], int], consumer: Consumer, producer: Producer) -> bool:
        """Events out first, then the state (checkpoint), then the offsets of the partitions this member owns now:
        never an offset past the state. False when nothing was committed because the group is rebalancing: the
        next polls rejoin it, and the next commit takes what the member owns then. A partition that moved is
        read by its next owner from its last committed offset; this member's state keeps what it had read of
        it, and if the partition comes back, skips those records again (`positions`)."""
        producer.flush()
        if self.config.checkpoint is not None:
            save_checkpoint(self.config.checkpoint, Checkpoint(self.detectors, dict(positions), self.watermark))
        owned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        try:
            consumer.commit({TopicPartition(*where): offset for where, offset in positions.items() if where in owned})
        except RebalancedError as exc:
            log.info("offsets not committed, the group is rebalancing (committed once it has rejoined): %s", exc)
            return False
        return bool(owned)

    def _feed(self, polled: list[Record], now: float, producer: Producer) -> bool:
        """Counters straight to the detectors, the other rows through the clock (pipeline/detect/watermark.py);
        then one update per table for everything due: every update judges every link, so feeding a poll's
        messages (one per link and batch) one by one cost the links squared per batch. Whether the detectors
        took rows: a poll with nothing new may still release rows held for the clock."""
        by_partition: dict[tuple[str, int], list[pa.Table]] = {}
        produced: dict[tuple[str, int], int] = {}
        skipped = 0
        for record in polled:
            where = (record.topic, record.partition)
            try:
                by_partition.setdefault(where, []).append(codec.decode(self._tables[record.topic], record.value))
            except DecodeError as exc:
                skipped += 1  # the sink sends it to the DLQ with the reason; here it is only skipped
                log.warning("skipped a %s message: %s", self._tables[record.topic], exc)
            produced[where] = max(produced.get(where, -1), record.timestamp_ms)
        batches = {where: pa.concat_tables(parts) for where, parts in by_partition.items()}
        with self._lock:  # counted together, so a reader never sees the rows without their messages
            self.messages += len(polled)
            self.skipped += skipped
            for (topic, _), decoded in batches.items():
                self.rows[self._tables[topic]] += decoded.num_rows
        due: dict[str, list[Batch]] = {}
        for where, decoded in batches.items():
            if aligned(where[0]):
                self.watermark.add(where, codec.to_columns(decoded), produced[where], now)
            else:
                due.setdefault(self._tables[where[0]], []).append(codec.to_columns(decoded))
        for table, batch in self.watermark.release(now).items():
            due.setdefault(table, []).append(batch)
        with self._lock:
            self.waiting_rows = self.watermark.held_rows
        return self._update({table: concat(parts) for table, parts in due.items()}, producer)

    def _update(self, batches: dict[str, Batch], producer: Producer) -> bool:
        """Feed the detectors; whether their state changed (and so is to be saved)."""
        for table, batch in batches.items():
            self._emit(self.detectors.update(table, batch), producer)
        return bool(batches)

    def _emit(self, events: list[Event], producer: Producer) -> None:
        if events:
            producer.send_batch("events", event_columns(events))
            with self._lock:
                self.events += len(events)
