"""`capture --workers N`: N processes read one interface, the kernel sharing its frames among them by flow.

Each worker opens its own ring in one PACKET_FANOUT_HASH group (collectors.afpacket; the first worker has the
kernel make it, with an id no other capture on the host uses, and the others join it), so the kernel gives all
frames of a flow, both directions, to one worker, and runs decode, DPI, the flow table and the link bins over
them. Their steps come here as they are ready (live workers do not move in step): the flow rows of all go
through one DFI, and a link bin several workers hold a part of is added up here and released only once every
worker's packet time has passed it (as a bin's own LinkBins closes it), so one bin is one row.

Workers ignore SIGINT and SIGTERM: the service shell's stop reaches them through an event, after which each
drains its ring and its flow table, as one collector would.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import queue
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from multiprocessing.context import ForkProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np

from collectors.afpacket import NEW_FANOUT_GROUP, PacketRing, RingStats
from collectors.collector import Collector, CollectorConfig, CollectorStats, PacketStep, Records
from collectors.link_bins import DEFAULT_LATENESS_US, LinkBins, LinkBinsConfig
from collectors.workers import join_or_kill, shared_config
from pipeline.errors import InputError
from pipeline.records import LINK_BIN_US
from pipeline.topology import Topology

QUEUED_STEPS = 64  # per worker: steps waiting for the merge (a ring wake-up each, at least every timeout)
POLL_S = 0.05
STOP_TIMEOUT_S = 5.0  # how long `stop` lets a worker drain before killing it


@dataclasses.dataclass(frozen=True, slots=True)
class RingSettings:
    """What each worker's ring is opened with (collectors.capture_source.CaptureConfig's values)."""

    iface: str
    snaplen: int
    block_bytes: int
    blocks: int
    timeout_ms: int


@dataclasses.dataclass
class WorkerCounts:
    """A worker's totals so far: its collector's and its ring's."""

    stats: CollectorStats
    bytes: int = 0
    kernel: RingStats = dataclasses.field(default_factory=lambda: RingStats(0, 0, 0))


class CaptureWorkers:
    """`workers` capturing processes and the merge of their steps; `counts` sums their latest totals."""

    def __init__(self, topology: Topology, ring: RingSettings, config: CollectorConfig, *, workers: int) -> None:
        self.workers = workers
        self._topology = topology
        self._ring = ring
        self._config = config
        self._labeller = Collector(topology, dataclasses.replace(config, second_opinion=None))
        self._bins = LinkBins(topology, LinkBinsConfig(exporter=config.exporter, sampling_rate=config.sampling_rate))
        self._counts = [WorkerCounts(CollectorStats()) for _ in range(workers)]
        self._processes: list[ForkProcess] = []
        self._queues: list[Queue[Any]] = []
        self._stop: Event | None = None

    def start(self) -> None:
        """Fork the workers (before the service starts its threads); each opens its ring at once."""
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._queues = [context.Queue(QUEUED_STEPS) for _ in range(self.workers)]
        config = shared_config(self._config, self.workers)
        group = _FanoutGroup(context.Value("i", NEW_FANOUT_GROUP), context.Event())
        self._processes = [
            context.Process(target=_capture, name=f"fabricscope-capture-{index}", daemon=True,
                            args=(self._topology, self._ring, config, group, index, self._stop,
                                  self._queues[index]))
            for index in range(self.workers)
        ]
        for process in self._processes:
            process.start()

    def stop(self) -> None:
        """End the workers still running (an error downstream, or `steps` not read to its end). They ignore
        SIGTERM, so `terminate` never ended them and this waited forever: they are asked through the stop
        event (each drains its ring), then killed after STOP_TIMEOUT_S (one blocked on a queue nobody reads)."""
        if self._stop is not None:
            self._stop.set()
        join_or_kill(self._processes, STOP_TIMEOUT_S)

    def steps(self, stop: threading.Event) -> Iterator[Records]:
        """The merged records as the workers' steps come; after `stop`, every worker's last rows and bins."""
        if self._stop is None:
            raise RuntimeError("CaptureWorkers.steps before start")
        self._await_ready()
        watermarks = [np.iinfo(np.int64).min] * self.workers
        pending: list[dict[str, np.ndarray]] = []  # link bins not yet closed by every worker
        finals: list[PacketStep] = []
        done = [False] * self.workers
        while not all(done):
            if stop.is_set():
                self._stop.set()
            steps: list[PacketStep] = []
            for index in range(self.workers):
                steps += self._take(index, watermarks, done)
            regular = [step for step in steps if not step.final]
            finals += [step for step in steps if step.final]
            if not regular:  # nothing ready this moment: an empty step keeps the service responsive
                yield self._labeller.label(PacketStep({}, self._bins.merge([]), None))
                continue
            pending = [*pending, *(step.link_bins for step in regular)]
            closed, pending = self._closed_bins(pending, min(watermarks))
            times = [step.now_ns for step in regular if step.now_ns is not None]
            flows = _concat([step.flows for step in regular])
            yield self._labeller.label(PacketStep(flows, closed, max(times) if times else None))
        bins = self._bins.merge([*pending, *(step.link_bins for step in finals)])
        yield self._labeller.label(PacketStep(_concat([step.flows for step in finals]), bins, None, final=True))

    def counts(self) -> WorkerCounts:
        """Every worker's latest totals, added up."""
        total = WorkerCounts(CollectorStats())
        for counts in self._counts:
            total.bytes += counts.bytes
            total.kernel = RingStats(*(a + b for a, b in zip(dataclasses.astuple(total.kernel),
                                                             dataclasses.astuple(counts.kernel), strict=True)))
            _add_stats(total.stats, counts.stats)
        total.stats.flow_rows = self._labeller.stats.flow_rows
        total.stats.link_bin_rows = self._labeller.stats.link_bin_rows
        total.stats.iteration_rows = self._labeller.stats.iteration_rows
        return total

    def _await_ready(self) -> None:
        """Wait until every worker's ring is open and in the fanout group. A ring is bound before it can join
        the group, and a frame arriving in that instant reaches it and the group both: the service says it is
        receiving only once all have joined (traffic already flowing then may show a few frames twice)."""
        for index in range(self.workers):
            message = None
            while message is None or message[0] != "ready":
                message = self._next(index, POLL_S)

    def _take(self, index: int, watermarks: list[int], done: list[bool]) -> list[PacketStep]:
        """The steps worker `index` has ready (waiting a moment for the first); its watermark and totals."""
        taken: list[PacketStep] = []
        while not done[index]:
            message = self._next(index, POLL_S if not taken else 0)
            if message is None:
                break
            if message[0] == "done":
                done[index] = True
                watermarks[index] = np.iinfo(np.int64).max
            else:
                taken.append(message[1])
                watermarks[index] = max(watermarks[index], message[2])
        return taken

    def _next(self, index: int, timeout: float) -> tuple[Any, ...] | None:
        """Worker `index`'s next message within `timeout` (None: nothing yet), its totals kept; its failure
        raised here."""
        process = self._processes[index]
        try:
            message: tuple[Any, ...] = self._queues[index].get(timeout=timeout)
        except queue.Empty:
            if not process.is_alive() and self._queues[index].empty():
                raise RuntimeError(f"{process.name} died (exit code {process.exitcode})") from None
            return None
        if message[0] == "input":
            raise InputError(message[1], message[2])
        if message[0] == "internal":
            raise RuntimeError(f"{process.name} failed:\n{message[1]}")
        self._counts[index] = message[-1]
        return message

    def _closed_bins(self, parts: list[dict[str, np.ndarray]], watermark_us: int
                     ) -> tuple[dict[str, np.ndarray], list[dict[str, np.ndarray]]]:
        """Bins every worker's watermark has passed (merged), and the rest, still open somewhere."""
        merged = self._bins.merge(parts)
        slot_end = merged["ts"].astype(np.int64) + LINK_BIN_US
        closed = slot_end <= watermark_us - DEFAULT_LATENESS_US
        return ({name: column[closed] for name, column in merged.items()},
                [{name: column[~closed] for name, column in merged.items()}])


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _add_stats(total: CollectorStats, stats: CollectorStats) -> None:
    total.packets += stats.packets
    total.malformed += stats.malformed
    total.unattributed += stats.unattributed
    total.flows_exported_early += stats.flows_exported_early
    for reason, count in stats.malformed_by_reason.items():
        total.malformed_by_reason[reason] = total.malformed_by_reason.get(reason, 0) + count
    for linktype, count in stats.unsupported_linktypes.items():
        total.unsupported_linktypes[linktype] = total.unsupported_linktypes.get(linktype, 0) + count
    for name, value in vars(stats.opinions).items():
        setattr(total.opinions, name, getattr(total.opinions, name) + value)


def _relay(shared: Event, local: threading.Event) -> None:
    shared.wait()
    local.set()


@dataclasses.dataclass(frozen=True)
class _FanoutGroup:
    """The workers' fanout group: the first worker makes it (the kernel picks an id no other capture on this
    host uses) and publishes its id; the others wait for it, then join."""

    id: Any  # multiprocessing.Value("i"): NEW_FANOUT_GROUP until the first worker has made the group
    made: Event

    def join(self, index: int, stop: Event) -> int | None:
        """The id worker `index` opens its ring with (None: stopped before the group was made)."""
        if index == 0:
            return NEW_FANOUT_GROUP
        while not self.made.wait(POLL_S):
            if stop.is_set():
                return None
        return int(self.id.value)

    def made_as(self, group: int) -> None:
        self.id.value = group
        self.made.set()


def _capture(topology: Topology, settings: RingSettings, config: CollectorConfig, group: _FanoutGroup, index: int,
             stop: Event, out: Queue[Any]) -> None:
    """A worker: its ring's batches through its collector, each step sent with its bins' watermark and its
    totals; after `stop`, the rest of the ring and of the flow table, then ('done', totals)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    collector = Collector(topology, config)
    counts = WorkerCounts(collector.stats)
    stopping = threading.Event()  # the ring waits on a thread event: set from the shared one
    threading.Thread(target=_relay, args=(stop, stopping), daemon=True).start()
    try:
        fanout = group.join(index, stop)
        if fanout is None:
            out.put(("done", counts))
            return
        with PacketRing(settings.iface, snaplen=settings.snaplen, block_bytes=settings.block_bytes,
                        blocks=settings.blocks, timeout_ms=settings.timeout_ms, fanout_group=fanout) as ring:
            if index == 0 and ring.fanout_group is not None:
                group.made_as(ring.fanout_group)
            out.put(("ready", counts))
            for batch in ring.batches(stopping):
                if len(batch):
                    counts.bytes += int(batch.wirelen.sum(dtype=np.int64))
                    step = collector.packet_step(batch)
                else:  # a quiet moment: the kernel's receive clock moves on
                    step = collector.advance_step(time.time_ns())
                counts.kernel = ring.kernel_stats()
                out.put(("step", step, collector.bins_watermark_us, counts))
            for step in collector.finishing_steps(last=True):
                out.put(("step", step, collector.bins_watermark_us, counts))
            counts.kernel = ring.kernel_stats()
        out.put(("done", counts))
    except InputError as exc:
        out.put(("input", exc.source, exc.reason))
    except BaseException:  # whatever stops a worker is told to the parent, whole
        out.put(("internal", traceback.format_exc()))
    finally:
        out.close()
        out.join_thread()
