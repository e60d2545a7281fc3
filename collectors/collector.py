"""The collector: capture batches in, `flows` and `link_bins` record batches out.

One object wires the stages in the order of DESIGN.md section 1: decode → attribute to link (inside the
decoder) → DPI → flow table and link bins. Every stage works on whole batches; the collector only passes
columns along and keeps the counts people ask for (packets, malformed, skipped records).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from collectors import dpi
from collectors.decode import Decoder
from collectors.flows import DEFAULT_ACTIVE_TIMEOUT_S, DEFAULT_IDLE_TIMEOUT_S, FlowTable, FlowTableConfig
from collectors.link_bins import LinkBins, LinkBinsConfig
from collectors.packets import PacketBatch
from pipeline.topology import Topology

Columns = dict[str, np.ndarray]
DEFAULT_EXPORTER = "fabricscope"


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Flow export timeouts in seconds of packet time; `exporter` names this collector in every record."""

    exporter: str = DEFAULT_EXPORTER
    active_timeout_s: float = DEFAULT_ACTIVE_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    sampling_rate: int = 1


@dataclass
class CollectorStats:
    """Running totals; `malformed` counts packets the decoder could not read (skipped, never fatal)."""

    packets: int = 0
    malformed: int = 0
    unattributed: int = 0
    flow_rows: int = 0
    link_bin_rows: int = 0
    malformed_by_reason: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Records:
    """Record batches produced by one step, by table name (pipeline.records.TABLES)."""

    flows: Columns
    link_bins: Columns

    def tables(self) -> Iterator[tuple[str, Columns]]:
        yield "flows", self.flows
        yield "link_bins", self.link_bins

    def __len__(self) -> int:
        """Rows over all tables."""
        return len(self.flows["ts_start"]) + len(self.link_bins["ts"])


class Collector:
    """Stateful across batches (flows and bins span them); call `finish` once at the end of input."""

    def __init__(self, topology: Topology, config: CollectorConfig | None = None) -> None:
        self.config = config or CollectorConfig()
        self.stats = CollectorStats()
        self._decoder = Decoder(topology)
        self._flows = FlowTable(
            topology,
            FlowTableConfig(
                active_timeout_s=self.config.active_timeout_s,
                idle_timeout_s=self.config.idle_timeout_s,
                exporter=self.config.exporter,
                sampling_rate=self.config.sampling_rate,
            ),
        )
        self._bins = LinkBins(
            topology, LinkBinsConfig(exporter=self.config.exporter, sampling_rate=self.config.sampling_rate)
        )

    @property
    def active_flows(self) -> int:
        """Flows the flow table holds now."""
        return len(self._flows)

    def process(self, batch: PacketBatch) -> Records:
        """Decode and classify one capture batch; return the records it completed."""
        decoded = self._decoder.decode(batch)
        labels = dpi.classify(batch.data, decoded)
        self.stats.packets += len(decoded)
        self.stats.malformed = self._decoder.stats.malformed_total
        self.stats.malformed_by_reason = dict(self._decoder.stats.malformed)
        self.stats.unattributed += int(np.count_nonzero(decoded.ok & (decoded.link < 0)))
        flows = self._flows.update(decoded, app=labels.app, confidence=labels.confidence)
        return self._count(Records(flows=flows, link_bins=self._bins.update(decoded)))

    def finish(self) -> Records:
        """Export every open flow row and bin (end of input)."""
        return self._count(Records(flows=self._flows.flush(), link_bins=self._bins.flush()))

    def run(self, batches: Iterable[PacketBatch]) -> Iterator[Records]:
        """Process every batch, then finish; yields only non-empty steps."""
        for batch in batches:
            step = self.process(batch)
            if len(step):
                yield step
        yield self.finish()

    def _count(self, step: Records) -> Records:
        self.stats.flow_rows += len(step.flows["ts_start"])
        self.stats.link_bin_rows += len(step.link_bins["ts"])
        return step
