"""Record batches from a producer-side source (the collector, a counters file) into Kafka and ClickHouse.

`stream_to_store` is the embedded `replay`/`demo` path: it sends every batch to its topic, runs the
detectors on the same batches in this process (their events go to the events topic too), and returns only
when the sink has made every sent row durable in ClickHouse and, with a notifier, every alert made from
the events has been delivered or dead-lettered.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from pipeline.alerts.notifier import Notifier
from pipeline.bus import BusConfig, Producer
from pipeline.detect.engine import DetectorSet, event_columns
from pipeline.detect.events import Batch, times_us
from pipeline.errors import FabricscopeError, InputError
from pipeline.sink import Sink, SinkConfig
from pipeline.store import Store

Step = Iterable[tuple[str, Batch]]
DEFAULT_DRAIN_TIMEOUT_S = 600.0
_TIME_COLUMN = {"flows": "ts_end", "link_bins": "ts", "iterations": "ts_end", "counters": "ts"}


def rows_of(batch: Batch) -> int:
    return len(next(iter(batch.values()), ()))


def latest_us(table: str, batch: Batch) -> int | None:
    """The newest record time of a batch, None when empty or the table has no time."""
    column = _TIME_COLUMN.get(table)
    if column is None or not rows_of(batch):
        return None
    return int(times_us(batch[column]).max())


class TimedBatches:
    """A time-sorted record source (e.g. switch counters) handed out up to a time, so it interleaves with
    packets the way it would arrive live."""

    def __init__(self, table: str, batches: Iterable[Batch]) -> None:
        self.table = table
        merged = [batch for batch in batches if rows_of(batch)]
        if merged:
            columns = {name: np.concatenate([batch[name] for batch in merged]) for name in merged[0]}
            order = np.argsort(times_us(columns[_TIME_COLUMN[table]]), kind="stable")
            self._columns: Batch = {name: column[order] for name, column in columns.items()}
        else:
            self._columns = {}
        self._times = times_us(self._columns[_TIME_COLUMN[table]]) if merged else np.empty(0, dtype=np.int64)
        self._next = 0

    def until(self, ts_us: int | None) -> Batch:
        """Rows up to and including `ts_us` not handed out yet; None: all the rest."""
        end = len(self._times) if ts_us is None else int(np.searchsorted(self._times, ts_us, side="right"))
        start, self._next = self._next, max(self._next, end)
        return {name: column[start : self._next] for name, column in self._columns.items()}


@dataclass
class StreamSummary:
    sent: Counter[str]
    events: int

    def __str__(self) -> str:
        tables = ", ".join(f"{rows} {table}" for table, rows in sorted(self.sent.items())) or "0"
        return f"{tables} rows in ClickHouse; {self.events} events"


def stream_to_store(
    steps: Iterable[Step],
    *,
    bus: BusConfig,
    store: Store,
    detectors: DetectorSet,
    side_sources: Iterable[TimedBatches] = (),
    sink_config: SinkConfig | None = None,
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    progress: bool = True,
    notifier: Notifier | None = None,
    on_events: Callable[[Batch], None] | None = None,
) -> StreamSummary:
    """Send every step's batches (and the side sources, interleaved by time) through Kafka into the store;
    return when all of it is in ClickHouse and the `notifier` (not started yet) has delivered the alerts.
    Raises FabricscopeError if the sink fails or cannot drain. `on_events` sees every batch of event rows the
    detectors produce (the packet recorder pins incidents)."""
    sources = list(side_sources)
    sink = Sink(sink_config or SinkConfig(), bus=bus, store=store).start()
    if notifier is not None:
        notifier.start()
    producer = Producer(bus).start()
    sent: Counter[str] = Counter()
    try:
        try:
            for table, batch in interleave_by_time(steps, sources):
                if rows_of(batch):
                    _send(producer, table, batch, sent)
                    _send(producer, "events", _seen(event_columns(detectors.update(table, batch)), on_events), sent)
        except InputError:  # bad input ends the run, but what was accepted before it still reaches ClickHouse
            producer.flush()
            _drain(sink, sent, drain_timeout_s, progress)
            if notifier is not None:  # and its alerts go out
                _deliver(notifier, sent["events"], drain_timeout_s)
            raise
        _send(producer, "events", _seen(event_columns(detectors.flush()), on_events), sent)
        producer.flush()
        _drain(sink, sent, drain_timeout_s, progress)
        if notifier is not None:
            _deliver(notifier, sent["events"], drain_timeout_s)
    finally:
        producer.stop()
        try:
            if notifier is not None:
                notifier.stop()
        finally:
            sink.stop()
    return StreamSummary(sent=sent, events=sent["events"])


def interleave_by_time(steps: Iterable[Step], sources: list[TimedBatches]) -> Iterator[tuple[str, Batch]]:
    """Each step's batches, preceded by the side sources' rows up to the newest record time seen so far."""
    newest: int | None = None
    for step in steps:
        batches = list(step)
        for table, batch in batches:
            ts = latest_us(table, batch)
            if ts is not None:
                newest = ts if newest is None else max(newest, ts)
        for source in sources:
            yield source.table, source.until(newest)
        yield from batches
    for source in sources:
        yield source.table, source.until(None)


def _seen(events: Batch, on_events: Callable[[Batch], None] | None) -> Batch:
    if on_events is not None and rows_of(events):
        on_events(events)
    return events


def _send(producer: Producer, table: str, batch: Batch, sent: Counter[str]) -> None:
    rows = rows_of(batch)
    if rows:
        producer.send_batch(table, batch)
        sent[table] += rows


def _deliver(notifier: Notifier, events: int, timeout_s: float) -> None:
    """Wait for the alerts of `events` event rows; a receiver that is down holds each for its retry window."""
    window_s = max((webhook.retry_window_s for webhook in notifier.alerts.webhooks), default=0.0)
    if not notifier.wait_delivered(events, timeout_s + window_s):
        if notifier.error is not None:
            raise FabricscopeError(f"alerts failed: {notifier.error}") from notifier.error
        raise FabricscopeError(f"alerts of {events} events not delivered in {timeout_s + window_s:.0f} s")


def _drain(sink: Sink, sent: Counter[str], timeout_s: float, progress: bool) -> None:
    for table, rows in sent.items():
        if progress:
            print(f"waiting for {rows} {table} rows to reach ClickHouse", file=sys.stderr, flush=True)
        if not sink.wait_for_rows(table, rows, timeout_s=timeout_s):
            if sink.error is not None:
                raise FabricscopeError(f"sink failed: {sink.error}") from sink.error
            have = sink.stats.rows.get(table, 0)
            raise FabricscopeError(f"only {have} of {rows} {table} rows reached ClickHouse in {timeout_s:.0f} s")
