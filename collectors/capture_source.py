"""`fabricscope capture`: a mirror port or ERSPAN endpoint read live, through the same collector as files.

The packet ring (collectors.afpacket) gives batches of frames stamped with the kernel's receive time, so
the collector's packet-time export (active and idle timeouts, DFI windows) runs on the capture's clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from collectors.afpacket import (
    DEFAULT_BLOCK_BYTES,
    DEFAULT_SNAPLEN,
    DEFAULT_TIMEOUT_MS,
    MAX_SNAPLEN,
    PacketRing,
    RingStats,
    interface_index,
)
from collectors.capture_workers import CaptureWorkers, RingSettings
from collectors.collector import Collector, CollectorConfig, CollectorStats
from collectors.recorder import Recorder
from pipeline.errors import InputError
from pipeline.settings import IN_CODE, Origin
from pipeline.source import Step
from pipeline.topology import Topology

MIN_SNAPLEN = 64
DEFAULT_RING_MB = 128


@dataclass(frozen=True, kw_only=True)
class CaptureConfig:
    """The `capture` command's settings (config section `capture:`): the interface the mirror sessions
    arrive on (required by the source's start(), not here: a shared config file leaves it to each host),
    the bytes kept per frame, and the kernel ring (`ring_mb` in blocks of `block_bytes`)."""

    iface: str | None = None
    snaplen: int = DEFAULT_SNAPLEN
    ring_mb: int = DEFAULT_RING_MB
    block_bytes: int = DEFAULT_BLOCK_BYTES
    timeout_ms: int = DEFAULT_TIMEOUT_MS

    @property
    def blocks(self) -> int:
        return max(1, (self.ring_mb << 20) // self.block_bytes)

    def validate(self, origin: Origin = IN_CODE) -> None:
        if not MIN_SNAPLEN <= self.snaplen <= MAX_SNAPLEN:
            raise origin.error("snaplen", f"must be within {MIN_SNAPLEN}..{MAX_SNAPLEN} bytes")
        if self.ring_mb < self.block_bytes >> 20:
            raise origin.error("ring_mb", f"must be at least {self.block_bytes >> 20}")
        if self.timeout_ms <= 0:
            raise origin.error("timeout_ms", "must be positive")


class CaptureSource:
    """Live capture on one interface as a pipeline.source.Source. start() checks the interface; the ring
    opens when `steps` starts and closes when it returns; `counts` may be read from another thread meanwhile."""

    name = "capture"

    def __init__(self, topology: Topology, config: CaptureConfig, *,
                 collector_config: CollectorConfig | None = None, recorder: Recorder | None = None,
                 workers: int = 1) -> None:
        self.config = config
        self.iface = config.iface or ""
        self.snaplen = config.snaplen
        self.block_bytes = config.block_bytes
        self.blocks = config.blocks
        self.timeout_ms = config.timeout_ms
        self.recorder = recorder
        # where the service hands the detectors' event rows (None: nothing records, nobody needs them)
        self.on_events: Callable[[Mapping[str, np.ndarray]], None] | None = recorder.on_events if recorder else None
        self.collector = Collector(topology, collector_config, recorder=recorder)
        self._bytes = 0
        self._ring: PacketRing | None = None
        self._workers: CaptureWorkers | None = None
        if workers > 1:
            if recorder is not None:
                raise InputError("--workers", "the packet recorder runs in one process: add --no-record, or one worker")
            ring = RingSettings(self.iface, self.snaplen, self.block_bytes, self.blocks, self.timeout_ms)
            self._workers = CaptureWorkers(topology, ring, self.collector.config, workers=workers)

    def start(self) -> CaptureSource:
        """Check the interface exists: a missing one is bad input, reported before anything runs."""
        if not self.iface:
            raise InputError("--iface", "required (the interface receiving the mirrored traffic)")
        interface_index(self.iface)
        if self._workers is not None:
            self._workers.start()
        return self

    def stop(self) -> None:
        """One worker: nothing to release (the ring is open only while `steps` runs); several: end those left."""
        if self._workers is not None:
            self._workers.stop()

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        """One step per ring wake-up (at least every `timeout_ms`); after `stop`, the collector's final flush.
        Frames are stamped by the kernel on CLOCK_REALTIME, so an idle wake-up advances packet time to now.
        With several workers (started by `start`), one step per merge of what they had ready."""
        if self._workers is not None:
            for records in self._workers.steps(stop):
                yield list(records.tables()) if len(records) else []
            return
        try:
            with PacketRing(
                self.iface, snaplen=self.snaplen, block_bytes=self.block_bytes, blocks=self.blocks,
                timeout_ms=self.timeout_ms,
            ) as ring:
                self._ring = ring
                for batch in ring.batches(stop):
                    if len(batch):
                        self._bytes += int(batch.wirelen.sum(dtype=np.int64))
                        records = self.collector.process(batch)
                    else:  # a quiet link: the kernel's receive clock moves on, ending the rows it would have ended
                        records = self.collector.advance(time.time_ns())
                    yield list(records.tables()) if len(records) else []
                for records in self.collector.finishing():
                    yield list(records.tables())
        finally:
            if self.recorder is not None:
                self.recorder.close()

    def kernel_stats(self) -> RingStats:
        """The ring's totals since `steps` opened it (zeros before); the workers' rings' added up."""
        if self._workers is not None:
            return self._workers.counts().kernel
        return self._ring.kernel_stats() if self._ring is not None else RingStats(0, 0, 0)

    def counts(self) -> Mapping[str, int]:
        """Totals since start: `packets` decoded, `bytes` their length on the capture interface."""
        kernel = self.kernel_stats()
        stats, captured = self._totals()
        recorded = self.recorder.counts() if self.recorder is not None else {}
        return {**recorded,
            "packets": stats.packets,
            "bytes": captured,
            "kernel_drops": kernel.drops,
            "kernel_freezes": kernel.freezes,
            "malformed": stats.malformed,
            "unattributed": stats.unattributed,
            "flow_rows": stats.flow_rows,
            "flows_exported_early": stats.flows_exported_early,
            **stats.opinions.counts(),
        }

    def counts_by_reason(self) -> Mapping[str, Mapping[str, int]]:
        """Malformed packets by the decoder's reason (pipeline.source.ReasonCounts)."""
        return {"malformed": dict(self._totals()[0].malformed_by_reason)}

    def unsupported_link_types(self) -> Mapping[int, int]:
        """Packets of link types the decoder does not open, by number (pipeline.source.LinkTypeCounts)."""
        return dict(self._totals()[0].unsupported_linktypes)

    def _totals(self) -> tuple[CollectorStats, int]:
        """The collector's totals and the bytes captured: this process's, or the workers' added up."""
        if self._workers is not None:
            counts = self._workers.counts()
            return counts.stats, counts.bytes
        return self.collector.stats, self._bytes
