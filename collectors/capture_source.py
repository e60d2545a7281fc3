"""`fabricscope capture`: a mirror port or ERSPAN endpoint read live, through the same collector as files.

The packet ring (collectors.afpacket) gives batches of frames stamped with the kernel's receive time, so
the collector's packet-time export (active and idle timeouts, DFI windows) runs on the capture's clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping

import numpy as np

from collectors.afpacket import (
    DEFAULT_BLOCK_BYTES,
    DEFAULT_BLOCKS,
    DEFAULT_SNAPLEN,
    DEFAULT_TIMEOUT_MS,
    PacketRing,
    RingStats,
    interface_index,
)
from collectors.collector import Collector, CollectorConfig
from pipeline.source import Step
from pipeline.topology import Topology


class CaptureSource:
    """Live capture on one interface as a pipeline.source.Source. The ring opens when `steps` starts and
    closes when it returns; `counts` may be read from another thread meanwhile."""

    name = "capture"

    def __init__(
        self,
        topology: Topology,
        iface: str,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        collector_config: CollectorConfig | None = None,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        blocks: int = DEFAULT_BLOCKS,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
    ) -> None:
        interface_index(iface)  # a missing interface is bad input, reported before anything starts
        self.iface = iface
        self.snaplen = snaplen
        self.block_bytes = block_bytes
        self.blocks = blocks
        self.timeout_ms = timeout_ms
        self.collector = Collector(topology, collector_config)
        self._bytes = 0
        self._ring: PacketRing | None = None

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        """One step per ring wake-up (at least every `timeout_ms`); after `stop`, the collector's final flush.
        Frames are stamped by the kernel on CLOCK_REALTIME, so an idle wake-up advances packet time to now."""
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
            yield list(self.collector.finish().tables())

    def kernel_stats(self) -> RingStats:
        """The ring's totals since `steps` opened it (zeros before)."""
        return self._ring.kernel_stats() if self._ring is not None else RingStats(0, 0, 0)

    def counts(self) -> Mapping[str, int]:
        """Totals since start: `packets` decoded, `bytes` their length on the capture interface."""
        kernel = self.kernel_stats()
        stats = self.collector.stats
        return {
            "packets": stats.packets,
            "bytes": self._bytes,
            "kernel_drops": kernel.drops,
            "kernel_freezes": kernel.freezes,
            "malformed": stats.malformed,
            "unattributed": stats.unattributed,
            "flow_rows": stats.flow_rows,
        }
