"""Wireshark's second opinion on flows DPI leaves `unknown` (issue 14): `app_detail` = `wireshark:<protocol>`.

We cannot write a signature for every protocol a fabric carries, but Wireshark has thousands of dissectors.
Running them on every packet is out of the question, so the collector samples: at most `flows_per_s` new
unknown flows per second of packet time (a token bucket holding `burst`), of each the first `frames` frames
it sees, cut to `frame_bytes`, kept for at most `collect_s` of packet time. Complete samples go to one
background thread through a bounded queue (full: the sample is dropped and counted) that writes what it has
to one temporary pcap and runs tshark once on it, so a batch of flows costs one process, and at most one
run every `run_every_s` of wall time (tshark spends ~0.3 s of CPU loading its dissectors; the collector
needs the cores). A flow's answer is the highest layer Wireshark names for any of its frames, skipping the
generic ones (`eth`, `ip`, `udp`, `tcp`, `data`…): when Wireshark knows no more than we do, it says nothing.

Answers reach the flow table's label state (FlowTable.set_detail), so the flow's later rows carry them;
a row already exported stays as it was. A flow DPI labels later keeps DPI's label and detail. In `wait`
mode (replay) the collector waits for its outstanding answers after every batch, so the rows depend on
the input alone, not on how fast tshark ran.
"""

from __future__ import annotations

import logging
import queue
import shutil
import struct
import subprocess
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collectors.dpi import PacketLabels
from collectors.flows import FlowTable
from collectors.packets import DecodedPackets, PacketBatch
from pipeline.settings import IN_CODE, Origin

DEFAULT_FLOWS_PER_S = 10.0  # flows sampled, whatever the traffic (tshark runs are paced apart: run_every_s)
DEFAULT_BURST = 20
DEFAULT_FRAMES = 4  # enough for a handshake's first payload after a TCP SYN/ACK
DEFAULT_FRAME_BYTES = 256  # headers and the first payload bytes, which is what dissectors key on
DEFAULT_COLLECT_S = 1.0  # packet time a sample waits for its frames (one export interval)
DEFAULT_QUEUE_FLOWS = 256
DEFAULT_RUN_EVERY_S = 1.0  # a tshark run costs ~0.3 s of CPU loading its dissectors: at most one a second
FLOWS_REMEMBERED = 65_536  # flows sampled and answers kept (oldest forgotten first)
BATCH_FLOWS = 512  # flows per tshark run at most
TSHARK_TIMEOUT_S = 60.0
WORKER_POLL_S = 0.5  # how soon an idle worker sees that it was closed
PREFIX = "wireshark:"
# layers that say no more than our own decoder: an answer is the highest layer not among them
GENERIC_LAYERS = frozenset({
    "eth", "ethertype", "vlan", "llc", "ip", "ipv6", "udp", "tcp", "gre", "erspan", "vxlan", "data",
    "data-text-lines", "media", "frame", "sll", "geneve", "mpls", "chdlc", "ppp", "raw",
})
_PCAP_HEADER = struct.Struct("<IHHiIII")  # magic (nanosecond), version 2.4, zone, sigfigs, snaplen, linktype
_PCAP_NS_MAGIC = 0xA1B23C4D
_RECORD = struct.Struct("<IIII")
log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SecondOpinionConfig:
    """Config section `second_opinion:`. On for `capture` and `demo` unless `dissect` is false; `in_replay`
    asks for it in `fabricscope replay` too (off by default there: replay then waits for every answer). The
    names are the section's own: the commands' flags are matched to sections by name."""

    dissect: bool = True
    in_replay: bool = False
    flows_per_s: float = DEFAULT_FLOWS_PER_S
    burst: int = DEFAULT_BURST
    frames: int = DEFAULT_FRAMES
    frame_bytes: int = DEFAULT_FRAME_BYTES
    collect_s: float = DEFAULT_COLLECT_S
    queue_flows: int = DEFAULT_QUEUE_FLOWS
    run_every_s: float = DEFAULT_RUN_EVERY_S

    def validate(self, origin: Origin = IN_CODE) -> None:
        for key in ("flows_per_s", "burst", "frames", "frame_bytes", "collect_s", "queue_flows"):
            if getattr(self, key) <= 0:
                raise origin.error(key, "must be positive")
        if self.run_every_s < 0:
            raise origin.error("run_every_s", "must not be negative")


@dataclass
class OpinionStats:
    """Flows `sampled` (sent to the worker), `dropped` (its queue was full), `dissected` (tshark ran on them),
    `answered` (Wireshark named more than a generic layer); `failed` tshark runs."""

    sampled: int = 0
    dropped: int = 0
    dissected: int = 0
    answered: int = 0
    failed: int = 0

    def counts(self) -> dict[str, int]:
        """The totals under the names /metrics gives them (fabricscope_<name>_total)."""
        return {f"second_opinion_{name}": value for name, value in vars(self).items()}


@dataclass(slots=True)
class Sample:
    """The first frames of one flow, as captured (cut to `frame_bytes`)."""

    flow: int  # flow_hash of the flow's key
    linktype: int
    started_ns: int
    frames: list[tuple[int, int, bytes]] = field(default_factory=list)  # (ts_ns, wirelen, bytes)


def highest_layer(protocols: str) -> str:
    """The highest layer of a `frame.protocols` chain that is not generic ('' if none): Wireshark's markers
    (`_ws.malformed`) and payload it could not name do not count."""
    for layer in reversed(protocols.strip().split(":")):
        if layer and not layer.startswith("_ws.") and layer not in GENERIC_LAYERS:
            return layer
    return ""


def best_answer(chains: list[str]) -> str:
    """A flow's answer from its frames' chains: the layer named deepest in any chain (earliest on a tie)."""
    best, depth = "", -1
    for chain in chains:
        layer = highest_layer(chain)
        position = chain.split(":").index(layer) if layer else -1
        if layer and position > depth:
            best, depth = layer, position
    return best


def write_pcap(path: Path, samples: list[Sample], linktype: int) -> None:
    """The samples' frames, flow after flow, as a nanosecond pcap."""
    with path.open("wb") as out:
        out.write(_PCAP_HEADER.pack(_PCAP_NS_MAGIC, 2, 4, 0, 0, 0x40000, linktype))
        for sample in samples:
            for ts_ns, wirelen, frame in sample.frames:
                out.write(_RECORD.pack(ts_ns // 1_000_000_000, ts_ns % 1_000_000_000, len(frame), wirelen))
                out.write(frame)


def dissect_samples(samples: list[Sample], tshark: str, directory: Path) -> dict[int, str] | None:
    """flow → Wireshark's answer ('' for no opinion) by one tshark run per linktype; None if tshark failed."""
    answers: dict[int, str] = {}
    for linktype in sorted({sample.linktype for sample in samples}):
        group = [sample for sample in samples if sample.linktype == linktype]
        path = directory / f"sample-{linktype}.pcap"
        try:
            write_pcap(path, group, linktype)
            run = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.protocols"],
                                 capture_output=True, text=True, errors="replace", timeout=TSHARK_TIMEOUT_S,
                                 check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            log.warning("second opinion: tshark failed on %d flows: %s", len(group), exc)
            return None
        lines = run.stdout.splitlines()
        start = 0
        for sample in group:
            answers[sample.flow] = best_answer(lines[start:start + len(sample.frames)])
            start += len(sample.frames)
    return answers


class Sampler:
    """Picks the new unknown flows the token bucket allows and keeps their first frames; returns samples that
    are complete (all frames, or `collect_s` of packet time since their first)."""

    def __init__(self, config: SecondOpinionConfig) -> None:
        self.config = config
        self._tokens = float(config.burst)
        self._clock = np.iinfo(np.int64).min
        self._collect_ns = round(config.collect_s * 1e9)
        self._pending: dict[int, Sample] = {}
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._seen_sorted = np.zeros(0, dtype=np.uint64)

    def observe(self, batch: PacketBatch, decoded: DecodedPackets, labels: PacketLabels,
                table: FlowTable) -> tuple[np.ndarray, list[Sample]]:
        """After the table took the batch: the hashes of the flows it created whose first packet DPI left
        unknown, and the samples the batch completed. Reuses the table's hashes, and looks at single packets
        only for flows being sampled, so a batch without new unknown flows costs next to nothing."""
        if not len(table.batch_new) and not self._pending:
            return table.batch_hashes[:0], []
        rows = np.flatnonzero(decoded.ok)  # the packets table.batch_hashes describe
        new = table.batch_new[labels.confidence[rows[table.batch_new]] == 0]
        if len(new):
            self._admit(batch, rows[new], table.batch_hashes[new])
        if self._pending:
            unknown = np.flatnonzero(labels.confidence[rows] == 0)
            self._collect(batch, rows[unknown], table.batch_hashes[unknown])
        now = int(decoded.ts_ns[rows].max()) if len(rows) else self._clock
        return table.batch_hashes[new], self._complete(now)

    def drain(self) -> list[Sample]:
        """Every sample still collecting (end of input)."""
        samples = list(self._pending.values())
        self._pending.clear()
        return samples

    def _refill(self, now: int) -> None:
        """The bucket's tokens at packet time `now` (time going back adds none)."""
        if now > self._clock:
            elapsed = (now - self._clock) / 1e9 if self._clock > np.iinfo(np.int64).min else 0.0
            self._tokens = min(float(self.config.burst), self._tokens + elapsed * self.config.flows_per_s)
            self._clock = now

    def _admit(self, batch: PacketBatch, rows: np.ndarray, flows: np.ndarray) -> None:
        """Start a sample for each new flow (`rows`: its first packet) not seen before, in order of time, while
        the bucket has a token at that packet's time (it refills at `flows_per_s` up to `burst`): one loop
        step per flow taken or per refill waited for."""
        if len(self._seen_sorted):
            place = np.minimum(np.searchsorted(self._seen_sorted, flows), len(self._seen_sorted) - 1)
            fresh = self._seen_sorted[place] != flows
            rows, flows = rows[fresh], flows[fresh]
        order = np.argsort(batch.ts_ns[rows], kind="stable")
        times, flows = batch.ts_ns[rows[order]], flows[order]
        taken: list[int] = []
        index = 0
        while index < len(flows):
            self._refill(int(times[index]))
            if self._tokens >= 1:
                self._tokens -= 1
                taken.append(int(flows[index]))
                index += 1
                continue
            wait_ns = int(np.ceil((1 - self._tokens) / self.config.flows_per_s * 1e9))
            index = max(index + 1, int(np.searchsorted(times, times[index] + wait_ns)))
        if not taken:
            return
        for flow in taken:
            self._pending[flow] = Sample(flow, batch.linktype, 0)
            self._seen[flow] = None
        while len(self._seen) > FLOWS_REMEMBERED:
            self._seen.popitem(last=False)
        self._seen_sorted = np.sort(np.fromiter(self._seen, dtype=np.uint64, count=len(self._seen)))

    def _collect(self, batch: PacketBatch, rows: np.ndarray, hashes: np.ndarray) -> None:
        """Append each pending flow's first packets of the batch (at most `frames` per flow are looked at)."""
        if not self._pending:
            return
        pending = np.fromiter(self._pending, dtype=np.uint64, count=len(self._pending))
        chosen = np.flatnonzero(np.isin(hashes, pending))
        order = np.argsort(hashes[chosen], kind="stable")
        grouped = hashes[chosen][order]
        starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
        rank = np.arange(len(grouped)) - np.repeat(starts, np.diff(np.r_[starts, len(grouped)]))
        frame_bytes = self.config.frame_bytes
        for index in np.sort(chosen[order[rank < self.config.frames]]).tolist():
            sample = self._pending[int(hashes[index])]
            if len(sample.frames) >= self.config.frames:
                continue
            row = int(rows[index])
            start, size = int(batch.offset[row]), min(int(batch.caplen[row]), frame_bytes)
            ts_ns = int(batch.ts_ns[row])
            if not sample.frames:
                sample.started_ns = ts_ns
            sample.frames.append((ts_ns, int(batch.wirelen[row]), batch.data[start:start + size].tobytes()))

    def _complete(self, now: int) -> list[Sample]:
        done = [flow for flow, sample in self._pending.items()
                if len(sample.frames) >= self.config.frames
                or (sample.frames and now - sample.started_ns >= self._collect_ns)]
        return [self._pending.pop(flow) for flow in done]


class SecondOpinion:
    """The sampler, the tshark worker thread and the answers so far; `observe` and `apply` after the flow
    table took a batch. Nothing here blocks collection unless `wait` (replay) asks for exact results."""

    def __init__(self, config: SecondOpinionConfig, tshark: str, *, wait: bool = False) -> None:
        self.config = config
        self.wait = wait
        self.stats = OpinionStats()
        self._tshark = tshark
        self._sampler = Sampler(config)
        self._queue: queue.Queue[Sample] = queue.Queue(maxsize=config.queue_flows)
        self._stop = threading.Event()
        self._answers: queue.SimpleQueue[dict[int, str]] = queue.SimpleQueue()
        self._opinions: OrderedDict[int, str] = OrderedDict()
        self._known = np.zeros(0, dtype=np.uint64)
        self._new_unknown = np.zeros(0, dtype=np.uint64)
        self._thread = threading.Thread(target=self._work, name="second-opinion", daemon=True)

    def start(self) -> SecondOpinion:
        """Start the worker (until then samples only queue up, and drop once the queue is full)."""
        self._thread.start()
        return self

    def observe(self, batch: PacketBatch, decoded: DecodedPackets, labels: PacketLabels, table: FlowTable) -> None:
        """Sample the batch `table` has just taken (Sampler.observe)."""
        self._new_unknown, samples = self._sampler.observe(batch, decoded, labels, table)
        self._submit(samples)

    def apply(self, table: FlowTable) -> None:
        """Give the table's flows the answers that came in, and the unknown flows this batch created the
        answers known for them (a flow forgotten and started afresh gets its answer back)."""
        if self.wait:
            self._queue.join()
        fresh: dict[int, str] = {}
        while not self._answers.empty():
            fresh.update(self._answers.get())
        if fresh:
            self._remember(fresh)
        hashes = self._new_unknown
        if len(self._known) and len(hashes):
            hashes = hashes[np.isin(hashes, self._known)]
            fresh.update({flow: self._opinions[flow] for flow in hashes.tolist() if flow in self._opinions})
        if fresh:
            table.set_detail(np.fromiter(fresh, dtype=np.uint64, count=len(fresh)),
                             np.array(list(fresh.values()), dtype=object))

    def finish(self, table: FlowTable) -> None:
        """End of input: the samples still collecting go too; in `wait` mode their answers reach the table."""
        self._new_unknown = np.zeros(0, dtype=np.uint64)
        self._submit(self._sampler.drain())
        self.apply(table)

    def close(self) -> None:
        """Stop the worker once it is idle (it finishes the run it is in; later answers are not needed)."""
        self._stop.set()

    def _submit(self, samples: list[Sample]) -> None:
        for sample in samples:
            try:
                self._queue.put_nowait(sample)
                self.stats.sampled += 1
            except queue.Full:
                self.stats.dropped += 1

    def _remember(self, answers: dict[int, str]) -> None:
        self._opinions.update(answers)
        while len(self._opinions) > FLOWS_REMEMBERED:
            self._opinions.popitem(last=False)
        self._known = np.sort(np.fromiter(self._opinions, dtype=np.uint64, count=len(self._opinions)))

    def _work(self) -> None:
        """The worker: take what is queued (up to BATCH_FLOWS flows), one tshark run, post the answers."""
        with tempfile.TemporaryDirectory(prefix="fabricscope-opinion-") as directory:
            while not self._stop.is_set():
                try:
                    samples = [self._queue.get(timeout=WORKER_POLL_S)]
                except queue.Empty:
                    continue
                while len(samples) < BATCH_FLOWS:
                    try:
                        samples.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                try:
                    self._answer(samples, Path(directory))
                except Exception:  # the worker must outlive any one run: a waiting collector (replay) needs it
                    self.stats.failed += 1
                    log.exception("second opinion: dissecting %d flows failed", len(samples))
                for _ in samples:
                    self._queue.task_done()
                if not self.wait:  # replay waits for the answers: no pause then
                    self._stop.wait(self.config.run_every_s)

    def _answer(self, samples: list[Sample], directory: Path) -> None:
        answers = dissect_samples(samples, self._tshark, directory)
        if answers is None:
            self.stats.failed += 1
            return
        self.stats.dissected += len(samples)
        named = {flow: PREFIX + layer for flow, layer in answers.items() if layer}
        self.stats.answered += len(named)
        self._answers.put(named)


def second_opinion(config: SecondOpinionConfig | None, *, wait: bool = False) -> SecondOpinion | None:
    """The collector's second opinion, or None when it is off or tshark is missing (said once in the log)."""
    if config is None or not config.dissect:
        return None
    tshark = shutil.which("tshark")
    if tshark is None:
        log.warning("second opinion off: tshark not found (sudo apt-get install -y tshark)")
        return None
    return SecondOpinion(config, tshark, wait=wait).start()
