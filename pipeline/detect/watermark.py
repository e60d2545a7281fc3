"""The detectors' clock across the partitions and collectors the consumer reads (pipeline/detect/README.md:
ordering).

The detectors take packet time from the rows and assume every link's rows progress together within their
lateness bound. A consumer does not keep to that by itself: it reads each partition at its own pace, and
a partition carries the rows of several collectors, each at its own pace (a batch load produced whole and
consumed after, two collectors replaying at full speed). So rows are fed to the detectors only up to a
clock: the minimum, over the live sources, of each source's latest row time. A source is one collector
(`exporter`) in one partition; its rows come in the order the collector released them. A source read
ahead is held back; its rows wait here (and in the checkpoint) until the others catch up, and a partition
whose sources are all more than `pause_ahead_ms` ahead of the clock is paused on the consumer, which
bounds what is held.

A source that stops must not stall the clock: it is idle, and left out of the minimum, once its partition
brought messages produced `idle_s` after its last one (the other collectors of the partition kept writing,
it did not), or once nothing at all came from its partition for `idle_s` of wall time and a poll since
found nothing to read (the partition's end was reached; the broker's end offsets are not trusted). A
collector that restarts is such a source: the others go on without it after `idle_s`, and its rows after
the restart (later in time) make it live again; a row older than the clock (re-sent from before the
restart) is fed at once, as late as it is. A partition newly assigned holds the clock until it brings
rows or is idle. The clock cannot wait for a collector it has never heard from unless told its name: with
`collectors` named, each table's clock stays put until every one of them has brought rows on it, or for
`collector_wait_s` at most (a collector that starts late, or not at all). A collector's first rows come on
one partition while it writes to all, and the consumer reads each at its own pace: so every partition's
idle time starts again then, and one that had gone quiet holds the clock until it brings rows or has been
quiet for `idle_s` again (else the late collector's rows on it came after the clock had passed them).
Counters are not held: each port's oper status and error counters are judged on their own samples, and
link status merges their reports with the traffic's whatever the order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from pipeline import records
from pipeline.detect.events import Batch, ms_to_us, times_us

TIME_COLUMNS: dict[str, str] = {"flows": "ts_end", "link_bins": "ts", "iterations": "ts_end"}
Partition = tuple[str, int]  # (topic, partition)
_TABLES = {records.topic(table): table for table in TIME_COLUMNS}
_NEVER = float("-inf")
_EARLIEST = int(np.iinfo(np.int64).min)


@dataclass(frozen=True, kw_only=True)
class WatermarkConfig:
    """`collectors`: the exporters the clock waits for before it first moves, each until it is heard from
    or `collector_wait_s` of wall time have passed since this detector service started (none named: only
    the collectors heard from are waited for)."""

    idle_s: float = 2.0
    pause_ahead_ms: float = 2000.0
    collectors: tuple[str, ...] = ()
    collector_wait_s: float = 30.0


@dataclass
class _Source:
    latest: int  # data time of its latest row, µs
    produced_ms: int  # producer time of the message that brought it


@dataclass
class _Partition:
    seen: float  # monotonic time of its latest message (or of its assignment)
    produced_ms: int = -1  # producer time of its latest message
    sources: dict[str, _Source] = field(default_factory=dict)  # by exporter
    held: list[Batch] = field(default_factory=list)


def aligned(topic: str) -> bool:
    """Whether a topic's rows wait for the clock (flows, link bins, iterations; not counters)."""
    return topic in _TABLES


class Watermark:
    """Rows in by partition, rows out by table up to each table's clock; no I/O (the service polls, pauses)."""

    def __init__(self, config: WatermarkConfig | None = None) -> None:
        self.config = config or WatermarkConfig()
        self._partitions: dict[Partition, _Partition] = {}
        self._clock: dict[str, int] = {}
        self._caught_up = _NEVER  # monotonic time of the latest poll that found nothing to read
        self._paused: set[Partition] = set()
        self._started: float | None = None  # monotonic time of the first call that told the time

    @property
    def held_rows(self) -> int:
        return sum(len(next(iter(batch.values()))) for state in self._partitions.values() for batch in state.held)

    def restarted(self, now: float, config: WatermarkConfig) -> None:
        """Restored from a checkpoint in a new process: its wall times meant nothing here, nothing is paused,
        and this start's settings apply."""
        self.config = config
        for state in self._partitions.values():
            state.seen = now
        self._caught_up, self._paused, self._started = _NEVER, set(), now

    def assigned(self, partitions: set[Partition], now: float) -> dict[str, Batch]:
        """The member owns `partitions` now: one newly assigned holds the clock until it brings rows or is idle;
        one it no longer owns stops holding it, and what it held is released (this member's state covers
        it: the detectors take it late rather than never)."""
        self._start(now)
        released: dict[str, list[Batch]] = {}
        for partition in [p for p in self._partitions if p not in partitions]:
            state = self._partitions.pop(partition)
            released.setdefault(_TABLES[partition[0]], []).extend(state.held)
        for partition in partitions:
            if aligned(partition[0]) and partition not in self._partitions:
                self._partitions[partition] = _Partition(seen=now)
        self._paused &= partitions
        return {table: concat(parts) for table, parts in released.items() if parts}

    def add(self, partition: Partition, batch: Batch, produced_ms: int, now: float) -> None:
        """Rows of one partition as polled (`produced_ms`: the producer time of the latest message)."""
        self._start(now)
        table = _TABLES[partition[0]]
        state = self._partitions.setdefault(partition, _Partition(seen=now))
        state.seen, state.produced_ms = now, max(state.produced_ms, produced_ms)
        times = times_us(batch[TIME_COLUMNS[table]])
        codes, names = pd.factorize(batch["exporter"])  # hashed: sorting strings cost a tenth of the member
        exporters = [str(name) for name in names]
        latest_of = np.full(len(exporters), np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(latest_of, codes, times)
        if not set(exporters) <= self._heard(table):
            for other in self._partitions.values():  # a collector's first rows: it may be writing to them all
                other.seen = max(other.seen, now)
        for exporter, latest in zip(exporters, latest_of.tolist(), strict=True):
            source = state.sources.get(exporter)
            if source is None:
                state.sources[exporter] = _Source(latest, produced_ms)
            else:
                source.latest, source.produced_ms = max(source.latest, latest), produced_ms
        state.held.append(batch)

    def caught_up(self, now: float) -> None:
        """A poll found nothing to read: every partition not paused was at its end."""
        self._caught_up = now

    def release(self, now: float) -> dict[str, Batch]:
        """Each table's held rows up to its clock (which never goes back)."""
        out: dict[str, Batch] = {}
        for table in TIME_COLUMNS:
            clock = self._advance(table, now)
            parts: list[Batch] = []
            for partition, state in self._partitions.items():
                if _TABLES[partition[0]] != table or not state.held:
                    continue
                batch = concat(state.held)
                due = times_us(batch[TIME_COLUMNS[table]]) <= clock
                if due.all():
                    parts.append(batch)
                    state.held = []
                elif due.any():
                    parts.append({name: column[due] for name, column in batch.items()})
                    state.held = [{name: column[~due] for name, column in batch.items()}]
                else:
                    state.held = [batch]
            if parts:
                out[table] = concat(parts)
        return out

    def ahead(self, now: float) -> set[Partition]:
        """Partitions to pause: each holds rows and every source of it is more than `pause_ahead_ms` ahead of
        its table's clock (none holds the clock back, so pausing it cannot stall it). None before the table's
        clock first moved: until then the partitions are read, so that one with nothing to read shows it."""
        bound = ms_to_us(self.config.pause_ahead_ms)
        paused = {partition for partition, state in self._partitions.items()
                  if state.held and state.sources and _TABLES[partition[0]] in self._clock
                  and all(source.latest > self._clock[_TABLES[partition[0]]] + bound
                          for source in state.sources.values())}
        for partition in self._paused - paused:
            self._partitions[partition].seen = now  # resumed: its idle time starts now, not when it was paused
        self._paused = paused
        return set(paused)

    def flush(self) -> dict[str, Batch]:
        """Everything held, by table: the input is complete (a batch load, or a stop without a checkpoint)."""
        held: dict[str, list[Batch]] = {}
        for partition, state in self._partitions.items():
            held.setdefault(_TABLES[partition[0]], []).extend(state.held)
            state.held = []
        return {table: concat(parts) for table, parts in held.items() if parts}

    def _advance(self, table: str, now: float) -> int:
        """The table's clock: the least latest row time over its live sources; with none live, its latest.
        It stays where it is while a named collector has not been heard from on the table (within the wait)."""
        self._start(now)
        if self._awaited(table, now):
            return self._clock.get(table, _EARLIEST)
        live: list[int] = []
        every: list[int] = []
        for partition, state in self._partitions.items():
            if _TABLES[partition[0]] != table:
                continue
            if not state.sources and not self._idle(partition, state, None, now):
                return self._clock.get(table, _EARLIEST)  # newly assigned: nothing read yet
            for source in state.sources.values():
                every.append(source.latest)
                if not self._idle(partition, state, source, now):
                    live.append(source.latest)
        if not every:
            return self._clock.get(table, _EARLIEST)
        clock = min(live) if live else max(every)
        self._clock[table] = max(clock, self._clock.get(table, clock))
        return self._clock[table]

    def _start(self, now: float) -> None:
        if self._started is None:
            self._started = now

    def _awaited(self, table: str, now: float) -> bool:
        """Whether a collector of `config.collectors` is still awaited on `table`: not heard from on any of its
        partitions, and the wait since the start not over."""
        if not self.config.collectors or self._started is None or now - self._started >= self.config.collector_wait_s:
            return False
        return not self._heard(table).issuperset(self.config.collectors)

    def _heard(self, table: str) -> set[str]:
        """The collectors whose rows of `table` came on any of its partitions."""
        return {exporter for partition, state in self._partitions.items() if _TABLES[partition[0]] == table
                for exporter in state.sources}

    def _idle(self, partition: Partition, state: _Partition, source: _Source | None, now: float) -> bool:
        if partition in self._paused:
            return False  # ahead, and not read while paused
        if source is not None and state.produced_ms - source.produced_ms >= self.config.idle_s * 1000:
            return True
        return now - state.seen >= self.config.idle_s and self._caught_up > state.seen


def concat(parts: list[Batch]) -> Batch:
    """Batches of one table as one."""
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
