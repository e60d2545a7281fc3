"""The collector: capture batches in, `flows`, `link_bins` and `iterations` record batches out.

One object wires the stages in the order of DESIGN.md section 1: decode → attribute to link (inside the
decoder) → DPI → flow table and link bins → DFI over a window of flow rows (traffic class, job, and the jobs'
iterations). Every stage works on whole batches; the collector only passes columns along and keeps the
counts people ask for (packets, malformed, skipped records). Flow rows reach the output in the order the flow
table closed them: at once when DFI already knows their flow, else (and so does every row after) at DFI's
next run, at most one export interval of packet time later. When configured, Wireshark's second opinion
(collectors.second_opinion) samples the flows DPI left unknown and names them in their later rows.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from collectors import dpi
from collectors.decode import Decoder
from collectors.dfi_stream import DEFAULT_WINDOW_S, DfiStream, DfiStreamConfig, Labelled
from collectors.flows import (
    DEFAULT_ACTIVE_TIMEOUT_S,
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_MAX_FLOWS,
    DEFAULT_PAUSE_FACTOR,
    DEFAULT_PAUSE_MIN_MS,
    FlowTable,
    FlowTableConfig,
)
from collectors.heap import before_batch
from collectors.job_names import JobNameSource
from collectors.link_bins import LinkBins, LinkBinsConfig
from collectors.packets import DecodedPackets, PacketBatch
from collectors.second_opinion import OpinionStats, SecondOpinionConfig, second_opinion
from pipeline.topology import Topology

if TYPE_CHECKING:  # only workers have a shard, and they import it (with the shared memory's imports)
    from collectors.shard_exchange import Shard

Columns = dict[str, np.ndarray]
DEFAULT_EXPORTER = "fabricscope"
FINISH_ROWS = 65_536  # at the end of input, flow rows leave in steps of this many (every consumer's peak)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """Flow export timeouts and the DFI window in seconds of packet time, the pause rule that cuts flow rows
    and the bound on flows held (collectors.flows); `exporter` names this collector in every record; `job_names`
    gives DFI's jobs the scheduler's names (collectors.job_names)."""

    exporter: str = DEFAULT_EXPORTER
    active_timeout_s: float = DEFAULT_ACTIVE_TIMEOUT_S
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    pause_min_ms: float = DEFAULT_PAUSE_MIN_MS
    pause_factor: float = DEFAULT_PAUSE_FACTOR
    dfi_window_s: float = DEFAULT_WINDOW_S
    sampling_rate: int = 1
    max_flows: int = DEFAULT_MAX_FLOWS
    job_names: JobNameSource | None = None
    second_opinion: SecondOpinionConfig | None = None
    wait_for_opinions: bool = False  # replay: rows exact whatever tshark's speed


@dataclass
class CollectorStats:
    """Running totals; `malformed` counts packets the decoder could not read (skipped, never fatal);
    `unsupported_linktypes` packets of link types it does not open, by number; `flows_exported_early` the flow
    rows exported before their time because the flow table was full."""

    packets: int = 0
    malformed: int = 0
    unattributed: int = 0
    flow_rows: int = 0
    link_bin_rows: int = 0
    iteration_rows: int = 0
    flows_exported_early: int = 0
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    unsupported_linktypes: dict[int, int] = field(default_factory=dict)
    opinions: OpinionStats = field(default_factory=OpinionStats)


@dataclass(frozen=True, slots=True)
class Records:
    """Record batches produced by one step, by table name (pipeline.records.TABLES)."""

    flows: Columns
    link_bins: Columns
    iterations: Columns

    def tables(self) -> Iterator[tuple[str, Columns]]:
        yield "flows", self.flows
        yield "link_bins", self.link_bins
        yield "iterations", self.iterations

    def __len__(self) -> int:
        """Rows over all tables."""
        return len(self.flows["ts_start"]) + len(self.link_bins["ts"]) + len(self.iterations["ts"])


@dataclass(frozen=True, slots=True)
class PacketStep:
    """One step of the packet stages, before DFI: flow rows (FLOWS columns and BURST_START, unlabelled), the
    link bins it closed, and the packet time DFI takes the rows at (None: no packet, nothing for DFI). A
    `final` step holds the rest of an epoch (end of input, or packet time stepping back): DFI flushes. A
    `drain` step empties part of a full table before the final one."""

    flows: Columns
    link_bins: Columns
    now_ns: int | None
    final: bool = False
    drain: bool = False


class PacketSink(Protocol):
    """Takes every batch as received with its decoded columns (collectors.recorder.Recorder); never raises."""

    def write(self, batch: PacketBatch, decoded: DecodedPackets) -> None: ...


class Collector:
    """Stateful across batches (flows and bins span them); call `finish` once at the end of input. A
    `recorder` gets every batch beside the collector (after decoding, so it reuses the columns).

    As worker `shard` of several (collectors.workers), it decodes its share of every batch and keeps only its
    shard's packets of all (collectors.shard_exchange), moves packet time as the whole batch does, and hands
    out its steps unlabelled (`run_shard`): DFI and the link bins' merge run where the workers' steps meet."""

    def __init__(self, topology: Topology, config: CollectorConfig | None = None, *,
                 recorder: PacketSink | None = None, shard: Shard | None = None) -> None:
        self.config = config or CollectorConfig()
        self.recorder = recorder
        self.stats = CollectorStats()
        self._topology = topology
        self._shard = shard
        self._decoder = Decoder(topology)
        self._dpi = dpi.Classifier()  # kept across epochs: what the portmapper said stays true
        self._opinion = second_opinion(self.config.second_opinion, wait=self.config.wait_for_opinions)
        if self._opinion is not None:
            self.stats.opinions = self._opinion.stats
        self._dfi = new_dfi(self.config)
        self._start_epoch()

    def _start_epoch(self) -> None:
        """Empty flow table and link bins: at the start, and when packet time steps back (DFI starts afresh
        after every flush)."""
        self._flows = FlowTable(
            self._topology,
            FlowTableConfig(
                active_timeout_s=self.config.active_timeout_s,
                idle_timeout_s=self.config.idle_timeout_s,
                pause_min_ms=self.config.pause_min_ms,
                pause_factor=self.config.pause_factor,
                exporter=self.config.exporter,
                sampling_rate=self.config.sampling_rate,
                max_flows=self.config.max_flows,
            ),
        )
        self._bins = LinkBins(
            self._topology, LinkBinsConfig(exporter=self.config.exporter, sampling_rate=self.config.sampling_rate)
        )
        self._now_ns = np.iinfo(np.int64).min  # packet time: the newest packet so far

    @property
    def bins_watermark_us(self) -> int:
        """Packet time (µs) up to which the link bins have closed what they can (a worker's progress)."""
        return self._bins.watermark_us

    @property
    def active_flows(self) -> int:
        """Flows the flow table holds now."""
        return len(self._flows)

    def process(self, batch: PacketBatch) -> Records:
        """Decode and classify one capture batch; return the records it completed."""
        return self.label(self.packet_step(batch))

    def advance(self, now_ns: int) -> Records:
        """Live sources call this when no packet came for a while: packet time moves on to `now_ns` (the same
        clock as the packets' timestamps), so rows and bins that time ends are exported without waiting for
        the next packet."""
        return self.label(self.advance_step(now_ns))

    def finish(self, *, last: bool = True) -> Records:
        """Export every open flow row and bin, labelled, and every iteration (end of input, or of an epoch when
        not `last`)."""
        return self.label(self._final(last))

    def finishing(self, *, last: bool = True) -> Iterator[Records]:
        """`finish` in steps of at most about FINISH_ROWS flow rows (a full flow table holds many more)."""
        for step in self.finishing_steps(last):
            records = self.label(step)
            if len(records) or step.final:
                yield records

    def run(self, batches: Iterable[PacketBatch]) -> Iterator[Records]:
        """Process every batch, then finish; yields only non-empty steps.

        Where packet time jumps forward by more than the DFI window, packet time is first advanced one window
        past the last packet, so the rows before the jump are exported and labelled on their own: one DFI run
        over rows days apart finds no job in either side (a 2-day gap lost 9 of 19 iterations). Where it steps
        back that far, everything open is exported and a new epoch starts empty: state whose clock is ahead of
        the packets would cut their flows and drop their iterations.
        """
        for step in self._steps(batches):
            records = self.label(step)
            if len(records):
                yield records

    def run_shard(self, batches: Iterable[PacketBatch]) -> Iterator[PacketStep]:
        """`run` as worker `shard`: every step, empty or not, unlabelled, so that the steps of all workers
        line up (each reads the same batches)."""
        return self._steps(batches)

    def label(self, step: PacketStep) -> Records:
        """DFI over a step's flow rows: their traffic class and job, and the iterations they complete; a final
        step flushes DFI, which starts afresh after it."""
        if step.final:
            labelled = self._dfi.flush(step.flows)
            self._dfi = new_dfi(self.config)
        elif step.now_ns is not None:
            labelled = self._dfi.add(step.flows, step.now_ns)
        else:
            labelled = Labelled.empty()
        return self._records(labelled, step.link_bins)

    def _steps(self, batches: Iterable[PacketBatch]) -> Iterator[PacketStep]:
        jump_ns = round(self.config.dfi_window_s * 1e9)
        last_ns: int | None = None
        for batch in batches:
            for part in _time_segments(batch, jump_ns):
                first_ns = int(part.ts_ns[0])
                if last_ns is not None and first_ns - last_ns > jump_ns:
                    yield self.advance_step(last_ns + jump_ns)
                elif last_ns is not None and last_ns - first_ns > jump_ns:
                    yield from self.finishing_steps(last=False)
                    self._start_epoch()
                yield self.packet_step(part)
                last_ns = int(part.ts_ns[-1])
        yield from self.finishing_steps(last=True)

    def packet_step(self, batch: PacketBatch) -> PacketStep:
        """`process` before DFI: decode, DPI, flow table and link bins over one batch (this shard's packets of it)."""
        before_batch()
        if self._shard is not None:
            step = self._shard.decode(self._decoder, batch)
            batch, decoded, now_ns, binned = step.batch, step.decoded, step.now_ns, step.binned
        else:
            decoded = self._decoder.decode(batch)
            if self.recorder is not None:
                self.recorder.write(batch, decoded)
            ok = decoded.ts_ns[decoded.ok]
            now_ns = int(ok.max()) if len(ok) else None
            binned = bool(np.any(decoded.ok & (decoded.link >= 0)))
        labels = self._dpi.classify(batch.data, decoded)
        self.stats.packets += len(decoded)
        self.stats.malformed = self._decoder.stats.malformed_total  # a worker's: of the packets it decoded
        self.stats.malformed_by_reason = dict(self._decoder.stats.malformed)
        self.stats.unsupported_linktypes = dict(self._decoder.stats.unsupported_linktypes)
        self.stats.unattributed += int(np.count_nonzero(decoded.ok & (decoded.link < 0)))
        early = self._flows.early_exports
        flows = self._flows.update(decoded, app=labels.app, confidence=labels.confidence, detail=labels.detail,
                                   now_ns=now_ns)
        if self._opinion is not None:
            self._opinion.observe(batch, decoded, labels, self._flows)
            self._opinion.apply(self._flows)
        self.stats.flows_exported_early += self._flows.early_exports - early  # the table is new in each epoch
        self._now_ns = max(self._now_ns, now_ns) if now_ns is not None else self._now_ns
        self._bins.add(decoded)
        link_bins = self._bins.advance(now_ns // 1000 if binned and now_ns is not None else self._bins.watermark_us)
        return PacketStep(flows, link_bins, now_ns)

    def advance_step(self, now_ns: int) -> PacketStep:
        """`advance` before DFI."""
        return PacketStep(self._flows.advance(now_ns), self._bins.advance(now_ns // 1000), now_ns)

    def finishing_steps(self, last: bool) -> Iterator[PacketStep]:
        """`finishing` before DFI: drain steps while the table is large, then the final step."""
        self._last_opinions(last)
        while self.active_flows > FINISH_ROWS:
            yield PacketStep(self._flows.drain(FINISH_ROWS), self._bins.advance(self._now_ns // 1000), self._now_ns,
                             drain=True)
        yield self._final(last)

    def _final(self, last: bool) -> PacketStep:
        self._last_opinions(last)
        return PacketStep(self._flows.flush(), self._bins.flush(), None, final=True)

    def _last_opinions(self, last: bool) -> None:
        """Samples still collecting are dissected too (in wait mode their answers reach the last rows); at the
        end of input the worker then stops."""
        if self._opinion is not None:
            self._opinion.finish(self._flows)
            if last:
                self._opinion.close()
                self._opinion = None

    def _records(self, labelled: Labelled, link_bins: Columns) -> Records:
        step = Records(flows=labelled.flows, link_bins=link_bins, iterations=labelled.iterations)
        self.stats.flow_rows += len(step.flows["ts_start"])
        self.stats.link_bin_rows += len(step.link_bins["ts"])
        self.stats.iteration_rows += len(step.iterations["ts"])
        return step


def new_dfi(config: CollectorConfig) -> DfiStream:
    """DFI as the collector configures it: its window, one run per export interval, the jobs' names."""
    return DfiStream(
        DfiStreamConfig(window_s=config.dfi_window_s, every_s=config.active_timeout_s, job_names=config.job_names),
        config.exporter,
    )


def _time_segments(batch: PacketBatch, jump_ns: int) -> Iterator[PacketBatch]:
    """`batch` cut before every packet more than `jump_ns` away in time from the one before it."""
    cuts = np.flatnonzero(np.abs(np.diff(batch.ts_ns)) > jump_ns) + 1
    if not len(batch):
        return
    if not len(cuts):
        yield batch
        return
    for start, stop in itertools.pairwise([0, *cuts.tolist(), len(batch)]):
        yield dataclasses.replace(
            batch, offset=batch.offset[start:stop], caplen=batch.caplen[start:stop],
            wirelen=batch.wirelen[start:stop], ts_ns=batch.ts_ns[start:stop], interface=batch.interface[start:stop],
        )
