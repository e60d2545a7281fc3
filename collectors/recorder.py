"""The packet recorder: the mirrored packets a live collector receives, kept as a flight recorder on disk.

Beside the collector, every batch (as captured, after the snaplen) is appended to a time-sliced pcapng
segment under `<data-dir>/packets/segments/`; a segment closes after `segment_s` of packet time or
`segment_mb`, and its chunk index (collectors.packet_index: time range, links, flows) is written beside it,
so a lookup opens only the segments it needs. The rolling segments stay within `budget_mb`, oldest deleted
first. When a detector opens an incident (`on_events`), the segments covering its window (`pin_before_s`
before `ts` to `pin_after_s` after `ts_end`; open incidents to the end) move to `packets/pinned/`, under a
budget of their own, so an incident's packets outlive the rolling buffer.

The recorder never stops the collector: any write error (a full disk) stops the recorder, is counted in
`counts()` (and so in /metrics) and logged once; collection goes on. The disk work runs on the recorder's
own thread (see Recorder).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np

from collectors.packet_index import ChunkIndexBuilder, topology_fingerprint
from collectors.packet_select import PacketStore
from collectors.packets import DecodedPackets, PacketBatch
from collectors.pcapng_writer import PcapngWriter
from pipeline.settings import IN_CODE, Origin
from pipeline.topology import Topology

DEFAULT_BUDGET_MB = 2048
DEFAULT_PINNED_BUDGET_MB = 1024
DEFAULT_SEGMENT_S = 10.0
DEFAULT_SEGMENT_MB = 64
DEFAULT_PIN_BEFORE_S = 5.0
DEFAULT_PIN_AFTER_S = 5.0
PACKETS_DIR, SEGMENTS_DIR, PINNED_DIR = "packets", "segments", "pinned"
REPLAYED_FILE = "replayed.txt"  # one absolute path a line: the captures `replay` read into this data dir
SEGMENT_SUFFIX = ".pcapng"
OPEN_END_NS = int(np.iinfo(np.int64).max)
QUEUE_BATCHES = 64  # batches waiting for the disk before new ones are dropped (the ring's are ≤ its block size)
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RecorderConfig:
    """The recorder's settings (config section `recorder:`): on or off, the rolling and pinned disk budgets,
    when a segment closes, and the margins of an incident's window."""

    enabled: bool = True
    budget_mb: int = DEFAULT_BUDGET_MB
    pinned_budget_mb: int = DEFAULT_PINNED_BUDGET_MB
    segment_s: float = DEFAULT_SEGMENT_S
    segment_mb: int = DEFAULT_SEGMENT_MB
    pin_before_s: float = DEFAULT_PIN_BEFORE_S
    pin_after_s: float = DEFAULT_PIN_AFTER_S

    def validate(self, origin: Origin = IN_CODE) -> None:
        for key in ("budget_mb", "pinned_budget_mb", "segment_mb", "segment_s"):
            if getattr(self, key) <= 0:
                raise origin.error(key, "must be positive")
        for key in ("pin_before_s", "pin_after_s"):
            if getattr(self, key) < 0:
                raise origin.error(key, "must not be negative")
        if self.segment_mb > self.budget_mb:
            raise origin.error("segment_mb", f"must not exceed budget_mb ({self.budget_mb})")


@dataclass
class RecorderStats:
    packets: int = 0
    bytes: int = 0  # written to segments
    segments: int = 0  # closed
    deleted: int = 0  # rolling segments deleted for the budget
    pinned: int = 0  # segments moved under the pinned budget
    pinned_deleted: int = 0  # pinned segments deleted for their budget
    dropped: int = 0  # packets not recorded because the recorder had stopped
    errors: int = 0  # write errors (each stops the recorder)
    sizes: dict[str, int] = field(default_factory=dict)


def store_directory(data_dir: str | Path) -> Path:
    return Path(data_dir) / PACKETS_DIR


def index_beside(segment: Path, topology: Topology) -> Path:
    """A segment's index, named for the topology it attributes links with."""
    return segment.with_name(f"{segment.stem}.{topology_fingerprint(topology)}.index.npz")


def segments_of(directory: Path) -> list[Path]:
    """Every segment of a store, rolling and pinned, oldest first (names start with the first packet's time)."""
    found = [path for where in (SEGMENTS_DIR, PINNED_DIR) for path in (directory / where).glob(f"*{SEGMENT_SUFFIX}")]
    return sorted(found, key=lambda path: path.name)


def remember_replayed(directory: Path, captures: list[str]) -> None:
    """Add the captures `replay` read to the store's list, so the dashboard can cut their packets later
    (they are never copied: moving them loses that)."""
    known = replayed_captures(directory)
    added = [path for path in (Path(capture).resolve() for capture in captures) if path not in known]
    if added:
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / REPLAYED_FILE).open("a", encoding="utf-8") as listing:
            listing.writelines(f"{path}\n" for path in added)


def replayed_captures(directory: Path) -> list[Path]:
    """The captures replayed into this store, in the order first replayed; [] when none were."""
    listing = directory / REPLAYED_FILE
    if not listing.exists():
        return []
    return [Path(line) for line in listing.read_text(encoding="utf-8").splitlines() if line.strip()]


def recorded_store(directory: Path, topology: Topology) -> PacketStore:
    """The recorder's store for lookups; the segment still being written has no index and is read whole, up
    to its last whole 4 KiB (segments are written O_DIRECT: the rest reaches the file with the next batch)."""
    return PacketStore(segments_of(directory), topology, lambda segment: index_beside(segment, topology),
                       build_missing=False)


@numba.njit(cache=True)  # keeps the GIL: numpy's min and max each released it, a switch for the collector's thread
def _time_range(ts_ns: np.ndarray) -> tuple[int, int]:  # pragma: no cover - compiled
    return int(ts_ns.min()), int(ts_ns.max())


@dataclass(frozen=True)
class _Batch:
    """A batch for the recorder's thread, with its decoded columns (read only there: no stage writes them)."""

    batch: PacketBatch
    decoded: DecodedPackets


@dataclass(frozen=True)
class _Pins:
    """Incident windows for the recorder's thread: event_id -> [start, end] ns."""

    windows: Mapping[str, tuple[int, int]]


@dataclass
class _Segment:
    path: Path
    first_ns: int
    last_ns: int
    writer: PcapngWriter
    index: ChunkIndexBuilder


class Recorder:
    """Call `write` with each batch the collector decoded, `on_events` with the detectors' event rows, and
    `close` at the end. Nothing touches the disk before the first `write`.

    The disk work (laying out blocks, writing, indexing, pinning, deleting) runs on a thread of its own, in
    the order of the calls, so the collector's thread only hands the batch over: the two cores share the
    load, and a slow disk never slows collection (a batch that finds the queue full is dropped and counted).
    The batch's buffers are kept until written; the sources the recorder sits beside never reuse them (the
    ring copies each batch out, a capture file is mapped read-only)."""

    def __init__(self, directory: Path, topology: Topology, config: RecorderConfig | None = None) -> None:
        self.directory = directory
        self.topology = topology
        self.config = config or RecorderConfig()
        self.stats = RecorderStats()
        self.stopped = False
        self._segment: _Segment | None = None
        self._layout: np.ndarray | None = None  # the blocks' buffer, handed from one segment's writer to the next
        self._opened = 0
        self._pins: dict[str, tuple[int, int]] = {}  # event_id -> pinned window [start, end] ns
        self._queue: queue.Queue[_Batch | _Pins | None] = queue.Queue(maxsize=QUEUE_BATCHES)
        self._thread: threading.Thread | None = None

    @property
    def rolling(self) -> Path:
        return self.directory / SEGMENTS_DIR

    @property
    def pinned(self) -> Path:
        return self.directory / PINNED_DIR

    def write(self, batch: PacketBatch, decoded: DecodedPackets) -> None:
        """Queue the batch for the current segment (a new one when it is due); never raises or blocks."""
        if not len(batch):
            return
        if self.stopped:
            self.stats.dropped += len(batch)
            return
        try:
            self._started().put_nowait(_Batch(batch, decoded))
        except queue.Full:
            self.stats.dropped += len(batch)

    def on_events(self, events: Mapping[str, np.ndarray]) -> None:
        """Pin the windows of the incidents in these `events` rows (times datetime64): open ones to the end,
        closed ones to `ts_end` plus the margin. Never raises."""
        ids = events.get("event_id", np.empty(0, dtype=object))
        if not len(ids):
            return
        before, after = int(self.config.pin_before_s * 1e9), int(self.config.pin_after_s * 1e9)
        starts = np.asarray(events["ts"]).astype("datetime64[ns]").astype(np.int64) - before
        ends = np.asarray(events["ts_end"]).astype("datetime64[ns]").astype(np.int64) + after
        windows = {str(event_id): (int(start), OPEN_END_NS if state == "open" else int(end))
                   for event_id, start, end, state in zip(ids, starts, ends, events["state"], strict=True)}
        self._started().put(_Pins(windows))  # rare and small: waits for room rather than lose a pin

    def close(self) -> None:
        """Write what is queued, close the current segment (its index written, pinned or rolled as due)."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    def _started(self) -> queue.Queue[_Batch | _Pins | None]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="packet-recorder", daemon=True)
            self._thread.start()
        return self._queue

    def _run(self) -> None:
        while (work := self._queue.get()) is not None:
            if self.stopped:
                self.stats.dropped += len(work.batch) if isinstance(work, _Batch) else 0
                continue
            try:
                if isinstance(work, _Batch):
                    self._record(work)
                else:
                    self._pin(work.windows)
            except Exception as exc:  # whatever the disk does, collection goes on
                self._stop(exc)
        if self._segment is not None and not self.stopped:
            try:
                self._close_segment()
            except OSError as exc:
                self._stop(exc)

    def _record(self, work: _Batch) -> None:
        batch = work.batch
        first, last = _time_range(batch.ts_ns)
        segment = self._segment
        if segment is not None and (
            first - segment.first_ns >= self.config.segment_s * 1e9
            or segment.writer.bytes_written >= self.config.segment_mb << 20
            or batch.linktype != segment.writer.linktype
        ):
            self._close_segment()
            segment = None
        if segment is None:
            self.rolling.mkdir(parents=True, exist_ok=True)
            # the counter keeps names apart when a replayed cycle repeats times
            path = self.rolling / f"{first:020d}-{self._opened:06d}{SEGMENT_SUFFIX}"
            self._opened += 1
            writer = PcapngWriter(path, batch.linktype, direct=True, buffer=self._layout)
            segment = self._segment = _Segment(path, first, last, writer, ChunkIndexBuilder(len(self.topology.links)))
        before = segment.writer.bytes_written
        segment.writer.write(batch)
        segment.index.add(work.decoded)
        segment.last_ns = max(segment.last_ns, last)
        self.stats.packets += len(batch)
        self.stats.bytes += segment.writer.bytes_written - before

    def _pin(self, windows: Mapping[str, tuple[int, int]]) -> None:
        self._pins.update(windows)
        for path in sorted(self.rolling.glob(f"*{SEGMENT_SUFFIX}")):
            if self._segment is not None and path == self._segment.path:
                continue
            index = self._span(path)
            if index is not None and self._is_pinned(*index):
                self._move_to_pinned(path)
        self._within_budget(self.pinned, self.config.pinned_budget_mb, pinned=True)

    def counts(self) -> dict[str, int]:
        """The recorder's totals for /metrics (fabricscope_recorder_*_total)."""
        stats = self.stats
        return {"recorder_packets": stats.packets, "recorder_bytes": stats.bytes, "recorder_segments": stats.segments,
                "recorder_deleted_segments": stats.deleted, "recorder_pinned_segments": stats.pinned,
                "recorder_pinned_deleted_segments": stats.pinned_deleted, "recorder_dropped_packets": stats.dropped,
                "recorder_errors": stats.errors}

    def _span(self, path: Path) -> tuple[int, int] | None:
        """A closed segment's packet time range, from its index."""
        index_file = index_beside(path, self.topology)
        if not index_file.exists():
            return None
        with np.load(index_file) as saved:
            return int(saved["ts_min"].min(initial=OPEN_END_NS)), int(saved["ts_max"].max(initial=0))

    def _is_pinned(self, first_ns: int, last_ns: int) -> bool:
        return any(start <= last_ns and first_ns <= end for start, end in self._pins.values())

    def _close_segment(self) -> None:
        segment, self._segment = self._segment, None
        if segment is None:
            return
        segment.writer.close()
        self._layout = segment.writer.buffer
        segment.index.build().save(index_beside(segment.path, self.topology))
        self.stats.segments += 1
        self._forget_pins_before(segment.first_ns)
        if self._is_pinned(segment.first_ns, segment.last_ns):
            self._move_to_pinned(segment.path)
            self._within_budget(self.pinned, self.config.pinned_budget_mb, pinned=True)
        self._within_budget(self.rolling, self.config.budget_mb, pinned=False)

    def _forget_pins_before(self, ns: int) -> None:
        """Windows that ended before this segment began can pin nothing any more."""
        self._pins = {key: (start, end) for key, (start, end) in self._pins.items() if end >= ns}

    def _move_to_pinned(self, path: Path) -> None:
        self.pinned.mkdir(parents=True, exist_ok=True)
        index_file = index_beside(path, self.topology)
        os.replace(path, self.pinned / path.name)
        if index_file.exists():
            os.replace(index_file, self.pinned / index_file.name)
        self.stats.pinned += 1

    def _within_budget(self, directory: Path, budget_mb: int, *, pinned: bool) -> None:
        """Delete the oldest closed segments of `directory` (and their indexes) until it fits `budget_mb`."""
        current = self._segment.path if self._segment is not None else None
        segments = sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))
        sizes = {path: path.stat().st_size for path in segments}
        total = sum(sizes.values())
        for path in segments:
            if total <= budget_mb << 20:
                break
            if path == current:
                continue
            for index_file in path.parent.glob(f"{path.stem}.*.index.npz"):
                index_file.unlink()
            path.unlink()
            total -= sizes[path]
            if pinned:
                self.stats.pinned_deleted += 1
            else:
                self.stats.deleted += 1

    def _stop(self, exc: Exception) -> None:
        """Stop recording for good (a full disk does not empty itself); the collector is not told."""
        self.stats.errors += 1
        if not self.stopped:
            log.error("packet recorder stopped, collection goes on: %s", exc)
        self.stopped = True
        if self._segment is not None:
            with contextlib.suppress(OSError):
                self._segment.writer.close()
            self._segment = None
