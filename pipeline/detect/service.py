"""The detectors as a Kafka consumer-group member (`fabricscope ingest --topology T`): record topics in,
events topic out.

A thin loop around DetectorSet: poll, decode, feed, produce the events, and commit the offsets only once
those events are acknowledged. Detector state lives in memory: after a restart the detectors learn the
fabric again from the records that follow (an episode open across the restart may be reported late or
not at all), which the README states.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

from kafka.structs import TopicPartition

from pipeline import codec, records
from pipeline.bus import BusConfig, Consumer, Producer
from pipeline.detect.engine import INPUT_TABLES, DetectorSet, event_columns
from pipeline.detect.events import Event
from pipeline.errors import DecodeError

log = logging.getLogger("fabricscope.detect")

DEFAULT_GROUP = "fabricscope-detect"
DEFAULT_POLL_TIMEOUT_MS = 200


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


@dataclass(frozen=True, kw_only=True)
class DetectorServiceConfig:
    """The detectors' consumer-group membership (the thresholds are pipeline.detect.config.DetectorConfig)."""

    group: str = DEFAULT_GROUP
    poll_timeout_ms: int = DEFAULT_POLL_TIMEOUT_MS


class DetectorService:
    """Runs `detectors` on every record topic; no I/O before start() (a background thread until stop())
    or run() (in the caller's thread until its `stop` is set)."""

    def __init__(self, config: DetectorServiceConfig, *, bus: BusConfig, detectors: DetectorSet) -> None:
        self.config = config
        self.bus = bus
        self.detectors = detectors
        self.events = 0
        self.skipped = 0
        self.messages = 0
        self.rows: Counter[str] = Counter()
        self.lag_s = 0.0
        self._lock = threading.Lock()
        self.error: BaseException | None = None
        self._tables = {records.topic(table): table for table in INPUT_TABLES}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> DetectorService:
        """Run in a background thread until stop()."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run_thread, name="fabricscope-detect", daemon=True)
        self._thread.start()
        return self

    def _run_thread(self) -> None:
        try:
            self.run(self._stop)
        except BaseException as exc:
            self.error = exc
            log.exception("detectors stopped on an error")

    def stop(self, timeout_s: float | None = None) -> None:
        """Stop the background thread once the detectors emitted what they still hold; re-raise what made
        it fail."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self.error is not None:
            raise self.error

    def counts(self) -> DetectorCounts:
        """A consistent snapshot of the counters, safe to take from another thread (a /metrics scrape)."""
        with self._lock:
            return DetectorCounts(rows=dict(self.rows), messages=self.messages, events=self.events,
                                  skipped=self.skipped, open_incidents=self.detectors.open_incidents,
                                  lag_s=self.lag_s)

    def run(self, stop: threading.Event) -> None:
        """Consume until `stop` is set, then emit what the detectors still hold (a clean shutdown loses no
        episode that the data already showed)."""
        consumer = Consumer(self.bus, group=self.config.group, topics=list(self._tables)).start()
        producer = Producer(self.bus).start()
        try:
            while not stop.is_set():
                polled = consumer.poll(self.config.poll_timeout_ms)
                if not polled:
                    continue
                offsets: dict[TopicPartition, int] = {}
                for record in polled:
                    self._feed(record.topic, record.value, producer)
                    offsets[TopicPartition(record.topic, record.partition)] = record.offset + 1
                    if record.timestamp_ms >= 0:
                        with self._lock:
                            self.lag_s = max(0.0, time.time() - record.timestamp_ms / 1000)
                producer.flush()
                consumer.commit(offsets)
            self._emit(self.detectors.flush(), producer)
            producer.flush()
        finally:
            producer.stop()
            consumer.stop()

    def _feed(self, topic: str, value: bytes, producer: Producer) -> None:
        table = self._tables[topic]
        try:
            decoded = codec.decode(table, value)
        except DecodeError as exc:
            with self._lock:
                self.messages += 1
                self.skipped += 1  # the sink sends it to the DLQ with the reason; here it is only skipped
            log.warning("skipped a %s message: %s", table, exc)
            return
        with self._lock:
            self.messages += 1
            self.rows[table] += decoded.num_rows
        self._emit(self.detectors.update(table, codec.to_columns(decoded)), producer)

    def _emit(self, events: list[Event], producer: Producer) -> None:
        if events:
            producer.send_batch("events", event_columns(events))
            with self._lock:
                self.events += len(events)
