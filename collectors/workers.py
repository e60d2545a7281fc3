"""The collector over N processes: `replay --workers N`.

Every worker reads the same captures (the page cache holds them once) and decodes a share of every batch; the
workers swap the decoded rows through shared memory so that each keeps the flows that hash to it
(collectors.shard, collectors.shard_exchange) for DPI, the flow table and the link bins, moving packet time
as the whole batch does. Since all read the same batches, their steps line up one for one, and this
process meets them step by step: it adds up the link bins several workers closed (LinkBins.merge) and runs
DFI over the flow rows of all (jobs and iterations group hosts across flows), so the records are the ones a
single collector gives. At the end of input each worker drains its own table, however many steps that
takes; the steps after the last regular one are merged as one flush.

Workers are forked (nothing to import again, the compiled scans already loaded) and their steps come back
through a bounded queue each, so a worker runs ahead of the merge by a few steps at most.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.context import ForkProcess
from multiprocessing.queues import Queue
from typing import Any

import numpy as np

from collectors.collector import Collector, CollectorConfig, CollectorStats, PacketStep, Records
from collectors.flows import BURST_START
from collectors.link_bins import LinkBins, LinkBinsConfig
from collectors.packets import PacketBatch
from collectors.pcapfile import CaptureStats
from collectors.shard_exchange import Shard, ShardExchange
from pipeline.errors import InputError
from pipeline.topology import Topology

# Per worker: how far it may run ahead of the merge; each step held costs its rows' memory, ~16 MB pickled and
# as many unpickled for a 65,536-row step.
QUEUED_STEPS = 1
# Each worker decodes 1/N of the packets but still reads every batch, and one process merges the steps of
# all (DFI, the output), so past a few workers more add CPU and memory, not speed; only 2 were ever measured
# (2-core machines): the default stops here (an explicit --workers may go further).
DEFAULT_MAX_WORKERS = 4
# The cores the default leaves to this process, which merges the workers' steps (link bins, DFI, the output or
# the embedded pipeline). On 2 cores, 2 workers ran at 1.11x one worker's speed in bench.workers (1.00-1.08x
# before they shared the decoding), for ~1.45x its CPU and ~200 MB more memory: the default there is one worker.
MERGE_CORES = 1
POLL_S = 1.0  # how often a wait for a worker checks that it is still alive
STOP_TIMEOUT_S = 5.0  # a terminated worker still running this much later is killed

# The capture each worker reads: called in the worker with its index and the list its reads go to.
BatchSource = Callable[[int, list[tuple[str, CaptureStats]]], Iterable[PacketBatch]]


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity, not every core of the machine)."""
    return len(os.sched_getaffinity(0))


def default_workers() -> int:
    """`replay`'s workers when not asked: one per core but the merge's, at least 1, at most DEFAULT_MAX_WORKERS."""
    return max(1, min(available_cores() - MERGE_CORES, DEFAULT_MAX_WORKERS))


def join_or_kill(processes: list[ForkProcess], timeout_s: float) -> None:
    """Wait for the processes to end, `timeout_s` for all of them together; kill those still running then."""
    deadline = time.monotonic() + timeout_s
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def shared_config(config: CollectorConfig, workers: int) -> CollectorConfig:
    """Each of `workers` gets its share of what bounds them all: of `max_flows` (the bound is on the flows the
    machine holds, not per process, so N workers take no more memory for their tables than one collector) and
    of Wireshark's second opinion's sampling rate."""
    config = dataclasses.replace(config, max_flows=-(-config.max_flows // workers))
    opinion = config.second_opinion
    if opinion is None:
        return config
    share = dataclasses.replace(opinion, flows_per_s=opinion.flows_per_s / workers,
                                burst=max(1, -(-opinion.burst // workers)))
    return dataclasses.replace(config, second_opinion=share)


class WorkerCollector:
    """Collector.run over `workers` processes; `stats` and `reads` (worker 0's, who reads what all read) are
    complete once `run` has returned."""

    def __init__(self, topology: Topology, config: CollectorConfig, *, workers: int, batches: BatchSource) -> None:
        if workers < 2:
            raise ValueError("a worker collector needs at least 2 workers (one: use Collector)")
        self.config = config
        self.workers = workers
        self.stats = CollectorStats()
        self.reads: list[tuple[str, CaptureStats]] = []
        self._topology = topology
        self._batches = batches
        self._labeller = Collector(topology, dataclasses.replace(config, second_opinion=None))
        self._bins = LinkBins(topology, LinkBinsConfig(exporter=config.exporter, sampling_rate=config.sampling_rate))
        self._processes: list[ForkProcess] = []
        self._queues: list[Queue[Any]] = []

    def start(self) -> WorkerCollector:
        """Fork the workers, which start reading at once: before this process starts threads (a broker
        client, the embedded store), so that no child inherits a lock another thread held."""
        context = multiprocessing.get_context("fork")
        self._queues = [context.Queue(QUEUED_STEPS) for _ in range(self.workers)]
        config = shared_config(self.config, self.workers)
        exchange = ShardExchange(self.workers, context.Barrier(self.workers))
        self._processes = [
            context.Process(target=_work, name=f"fabricscope-collector-{index}", daemon=True,
                            args=(Shard(index, exchange), self._topology, config, self._batches,
                                  self._queues[index]))
            for index in range(self.workers)
        ]
        for process in self._processes:
            process.start()
        return self

    def stop(self) -> None:
        """End the workers still running (input not read to its end: an error downstream, an interrupt). Each
        is terminated, and killed if it has not ended STOP_TIMEOUT_S later."""
        for process in self._processes:
            if process.is_alive():
                process.terminate()
        join_or_kill(self._processes, STOP_TIMEOUT_S)

    def run(self) -> Iterator[Records]:
        """The records of every step, as Collector.run yields them (non-empty steps only); `start` first."""
        if not self._processes:
            raise RuntimeError("WorkerCollector.run before start")
        try:
            yield from self._merge(self._processes, self._queues)
        except _Aborted as aborted:
            _raise_cause(self._processes, self._queues, told=aborted.process)
        finally:
            self.stop()

    def _merge(self, processes: list[ForkProcess], queues: list[Queue[Any]]) -> Iterator[Records]:
        while True:
            steps = [_receive(process, worker_queue, processes)
                     for process, worker_queue in zip(processes, queues, strict=True)]
            if all(step is None for step in steps):
                break
            if any(step is None for step in steps):
                raise RuntimeError("collector workers disagree on the end of input")
            regular = [step for step in steps if step is not None and not step.final and not step.drain]
            if len(regular) == len(steps):
                yield from self._nonempty(self._labeller.label(self._merged(regular)))
            else:
                yield from self._flush([step for step in steps if step is not None], processes, queues)
        for process, worker_queue in zip(processes, queues, strict=True):
            stats, reads = _receive_done(process, worker_queue, processes)
            process.join()
            self._add_stats(stats)
            if not self.reads:
                self.reads.extend(reads)
        self.stats.flow_rows = self._labeller.stats.flow_rows
        self.stats.link_bin_rows = self._labeller.stats.link_bin_rows
        self.stats.iteration_rows = self._labeller.stats.iteration_rows

    def _flush(self, firsts: list[PacketStep], processes: list[ForkProcess],
               queues: list[Queue[Any]]) -> Iterator[Records]:
        """Each worker's steps up to its final one (drained rows labelled as they come), then one final step
        holding every worker's rest and every bin they closed meanwhile."""
        finals: list[PacketStep] = []
        bins = []
        for step, process, worker_queue in zip(firsts, processes, queues, strict=True):
            current: PacketStep | None = step
            while current is not None and not current.final:
                bins.append(current.link_bins)
                drained = dataclasses.replace(current, link_bins=self._bins.merge([]))
                yield from self._nonempty(self._labeller.label(drained))
                current = _receive(process, worker_queue, processes)
            if current is None:
                raise RuntimeError("a collector worker ended without its final step")
            finals.append(current)
            bins.append(current.link_bins)
        final = PacketStep(_concat([step.flows for step in finals]), self._bins.merge(bins), None, final=True)
        yield self._labeller.label(final)

    def _merged(self, steps: list[PacketStep]) -> PacketStep:
        times = [step.now_ns for step in steps if step.now_ns is not None]
        return PacketStep(_concat([step.flows for step in steps]), self._bins.merge([s.link_bins for s in steps]),
                          max(times) if times else None)

    @staticmethod
    def _nonempty(records: Records) -> Iterator[Records]:
        if len(records):
            yield records

    def _add_stats(self, stats: CollectorStats) -> None:
        self.stats.packets += stats.packets
        self.stats.malformed += stats.malformed
        self.stats.unattributed += stats.unattributed
        self.stats.flows_exported_early += stats.flows_exported_early
        for reason, count in stats.malformed_by_reason.items():
            self.stats.malformed_by_reason[reason] = self.stats.malformed_by_reason.get(reason, 0) + count
        for linktype, count in stats.unsupported_linktypes.items():
            self.stats.unsupported_linktypes[linktype] = self.stats.unsupported_linktypes.get(linktype, 0) + count
        for name, value in vars(stats.opinions).items():
            setattr(self.stats.opinions, name, getattr(self.stats.opinions, name) + value)


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts = [part for part in parts if len(part[BURST_START])] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}


def _work(shard: Shard, topology: Topology, config: CollectorConfig, batches: BatchSource,
          out: Queue[Any]) -> None:
    """A worker's life: every step, then ('done', stats, reads); an error as ('input', ...) or ('internal', ...),
    after breaking the barrier the workers share so that the others stop, each telling ('aborted',). SIGTERM
    ends it whatever handler the parent had when it forked: a handler that only asks a service to stop would
    leave a worker waiting at the barrier for a peer that is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        reads: list[tuple[str, CaptureStats]] = []
        collector = Collector(topology, config, shard=shard)
        for step in collector.run_shard(batches(shard.index, reads)):
            out.put(("step", step))
        out.put(("end",))
        out.put(("done", collector.stats, reads))
    except threading.BrokenBarrierError:
        out.put(("aborted",))
    except InputError as exc:
        shard.exchange.abort()
        out.put(("input", exc.source, exc.reason, exc.line))
    except BaseException:  # whatever stops a worker is told to the parent, whole
        shard.exchange.abort()
        out.put(("internal", traceback.format_exc()))
    finally:
        out.close()
        out.join_thread()


class _Aborted(Exception):
    """A worker stopped because another failed (the barrier they share broke): the cause is another's message."""

    def __init__(self, process: ForkProcess) -> None:
        super().__init__(process.name)
        self.process = process


def _message(process: ForkProcess, worker_queue: Queue[Any], peers: list[ForkProcess]) -> tuple[Any, ...]:
    """The worker's next message; its error raised. While waiting, a worker killed (a peer too: the others
    then wait for it at their barrier for ever) is an error."""
    while True:
        try:
            message: tuple[Any, ...] = worker_queue.get(timeout=POLL_S)
        except queue.Empty:
            killed = [peer for peer in peers if peer.exitcode not in (None, 0)]
            if not process.is_alive() or killed:
                dead = killed[0] if killed else process
                raise RuntimeError(f"{dead.name} died (exit code {dead.exitcode})") from None
            continue
        if message[0] == "input":
            raise InputError(message[1], message[2], line=message[3])
        if message[0] == "internal":
            raise RuntimeError(f"{process.name} failed:\n{message[1]}")
        if message[0] == "aborted":
            raise _Aborted(process)
        return message


def _raise_cause(processes: list[ForkProcess], queues: list[Queue[Any]], *, told: ForkProcess) -> None:
    """Raise the error of the worker that broke the barrier (reading past the steps each still had queued);
    `told` has told it was aborted."""
    for process, worker_queue in zip(processes, queues, strict=True):
        if process is told:
            continue
        try:
            while _message(process, worker_queue, processes)[0] not in ("end", "done"):
                pass
        except _Aborted:
            continue
    raise RuntimeError("collector workers stopped at their barrier, and none told why")


def _receive(process: ForkProcess, worker_queue: Queue[Any], peers: list[ForkProcess]) -> PacketStep | None:
    """The worker's next step, None at its end of input."""
    message = _message(process, worker_queue, peers)
    return message[1] if message[0] == "step" else None


Reads = list[tuple[str, CaptureStats]]


def _receive_done(process: ForkProcess, worker_queue: Queue[Any],
                  peers: list[ForkProcess]) -> tuple[CollectorStats, Reads]:
    message = _message(process, worker_queue, peers)
    if message[0] != "done":
        raise RuntimeError(f"{process.name} sent {message[0]!r} where its totals belong")
    return message[1], message[2]

