"""`replay --workers N` decodes every packet once: each worker decodes a share of every batch and the workers
swap the decoded rows by flow.

Every worker reads the same batches. Worker i decodes only the i-th of N contiguous slices of each, finds
the worker each of those packets belongs to (collectors.shard), and writes the slice's decoded columns to
memory all workers share (an anonymous mapping made before the fork). Once all have written (a barrier),
each gathers its own packets from every slice, in packet order, and the whole batch's packet time from what
each worker wrote beside its slice (its newest packet, and whether any had a link). The memory holds two
rounds, alternately: a worker that has passed round t's barrier has gathered round t-1 and every other
worker has too, so writing round t+1 never overwrites rows still being read. A batch larger than one round
(N × `rows`) goes through in several.

A worker that fails aborts the barrier, so the others stop (threading.BrokenBarrierError) rather than wait.
"""

from __future__ import annotations

import dataclasses
import mmap
from dataclasses import dataclass
from multiprocessing.synchronize import Barrier
from typing import Any

import numpy as np

from collectors.decode import Decoder
from collectors.packets import DecodedPackets, PacketBatch
from collectors.pcapfile import DEFAULT_BATCH_SIZE
from collectors.shard import shard_of

ROUNDS = 2  # memory for two rounds, used alternately (see the module docstring)
# DecodedPackets' columns as the decoder makes them: name, dtype, and the shape of one row (pfc_quanta holds 8
# values a packet). A test checks them against a decoded batch.
_FIELDS: tuple[tuple[str, np.dtype, tuple[int, ...]], ...] = (
    ("ok", np.dtype(np.bool_), ()), ("ts_ns", np.dtype(np.int64), ()), ("capture_ts_ns", np.dtype(np.int64), ()),
    ("switch_timed", np.dtype(np.bool_), ()), ("link", np.dtype(np.int16), ()), ("direction", np.dtype(np.int8), ()),
    ("erspan_session", np.dtype(np.int16), ()), ("wire_len", np.dtype(np.uint32), ()),
    ("vlan", np.dtype(np.uint16), ()), ("ethertype", np.dtype(np.uint16), ()), ("src_hi", np.dtype(np.uint64), ()),
    ("src_lo", np.dtype(np.uint64), ()), ("dst_hi", np.dtype(np.uint64), ()), ("dst_lo", np.dtype(np.uint64), ()),
    ("proto", np.dtype(np.uint8), ()), ("outer_src_hi", np.dtype(np.uint64), ()),
    ("outer_src_lo", np.dtype(np.uint64), ()), ("outer_dst_hi", np.dtype(np.uint64), ()),
    ("outer_dst_lo", np.dtype(np.uint64), ()), ("src_port", np.dtype(np.uint16), ()),
    ("dst_port", np.dtype(np.uint16), ()), ("dscp", np.dtype(np.uint8), ()), ("ecn", np.dtype(np.uint8), ()),
    ("tcp_flags", np.dtype(np.uint8), ()), ("vni", np.dtype(np.uint32), ()), ("vxlan", np.dtype(np.bool_), ()),
    ("is_roce", np.dtype(np.bool_), ()), ("bth_opcode", np.dtype(np.uint8), ()), ("dqpn", np.dtype(np.uint32), ()),
    ("psn", np.dtype(np.uint32), ()), ("fecn", np.dtype(np.bool_), ()), ("becn", np.dtype(np.bool_), ()),
    ("aeth_syndrome", np.dtype(np.uint8), ()), ("pfc_enable", np.dtype(np.uint8), ()),
    ("pfc_quanta", np.dtype(np.uint16), (8,)), ("app_proto", np.dtype(np.uint8), ()),
    ("app_src_port", np.dtype(np.uint16), ()), ("app_dst_port", np.dtype(np.uint16), ()),
    ("payload_offset", np.dtype(np.int64), ()), ("payload_caplen", np.dtype(np.int32), ()),
)
_SHARD = np.dtype(np.int16)
_SUMMARY = 2  # int64s before a slice's rows: its newest packet time and whether it binned
NO_TIME = np.iinfo(np.int64).min  # a slice without a well-formed packet
_BATCH_FIELDS = ("offset", "caplen", "wirelen", "ts_ns", "interface")


@dataclass(frozen=True, slots=True)
class ShardStep:
    """A worker's packets of one batch (a batch on the same buffer, and its decoded columns), and what the
    whole batch says: its newest good packet's time (None: none) and whether any good packet has a link."""

    batch: PacketBatch
    decoded: DecodedPackets
    now_ns: int | None
    binned: bool


class _Slice:
    """One worker's decoded rows of one round, as arrays on the shared memory, and what they say of packet
    time: the newest well-formed packet's (NO_TIME: none) and whether any well-formed packet has a link."""

    def __init__(self, memory: mmap.mmap, offset: int, rows: int) -> None:
        self.time = np.frombuffer(memory, np.int64, _SUMMARY, offset)  # [newest, binned]
        offset += _SUMMARY * np.dtype(np.int64).itemsize
        self.columns: dict[str, np.ndarray] = {}
        for name, dtype, shape in _FIELDS:
            count = rows * int(np.prod(shape, dtype=np.int64))
            self.columns[name] = np.frombuffer(memory, dtype, count, offset).reshape((rows, *shape))
            offset += count * dtype.itemsize
        self.shard = np.frombuffer(memory, _SHARD, rows, offset)

    @staticmethod
    def size(rows: int) -> int:
        return _SUMMARY * np.dtype(np.int64).itemsize + rows * (
            sum(dtype.itemsize * int(np.prod(shape, dtype=np.int64)) for _, dtype, shape in _FIELDS) + _SHARD.itemsize)


@dataclass(frozen=True, slots=True)
class Shard:
    """This process is worker `index` of those that share `exchange`."""

    index: int
    exchange: ShardExchange

    def decode(self, decoder: Decoder, batch: PacketBatch) -> ShardStep:
        return self.exchange.decode(self.index, decoder, batch)


class ShardExchange:
    """The shared memory and barrier of `workers` workers, each decoding at most `rows` packets a round; made
    before the fork, used by every worker through `decode` with its own index."""

    def __init__(self, workers: int, barrier: Barrier, *, rows: int | None = None) -> None:
        self.workers = workers
        self.rows = rows or -(-DEFAULT_BATCH_SIZE // workers)  # default: a capture file's batch in one round
        self._barrier = barrier
        size = _Slice.size(self.rows)
        self._memory = mmap.mmap(-1, ROUNDS * workers * size)
        self._slices = [[_Slice(self._memory, (round_ * workers + worker) * size, self.rows)
                         for worker in range(workers)] for round_ in range(ROUNDS)]
        self._round = 0

    def abort(self) -> None:
        """Break the barrier: every worker waiting at it, or coming to it, stops."""
        self._barrier.abort()

    def decode(self, index: int, decoder: Decoder, batch: PacketBatch) -> ShardStep:
        """Worker `index`'s packets of `batch`, decoded by all workers together (every worker calls this with
        the same batches, in the same order)."""
        per_round = self.workers * self.rows
        rounds = [self._round_of(index, decoder, batch, start, min(start + per_round, len(batch)))
                  for start in range(0, max(len(batch), 1), per_round)]
        return rounds[0] if len(rounds) == 1 else _joined(rounds)

    def _round_of(self, index: int, decoder: Decoder, batch: PacketBatch, first: int, end: int) -> ShardStep:
        """One round over the batch's packets `first:end`: decode this worker's slice of them, publish it, and
        gather this worker's packets from every slice."""
        slices = self._slices[self._round]
        self._round = (self._round + 1) % ROUNDS
        bounds = [first + (end - first) * worker // self.workers for worker in range(self.workers + 1)]
        start, stop = bounds[index], bounds[index + 1]
        mine = decoder.decode(_rows(batch, np.s_[start:stop]))
        for name, _, _ in _FIELDS:
            slices[index].columns[name][: stop - start] = getattr(mine, name)
        slices[index].shard[: stop - start] = shard_of(mine, self.workers)
        good = mine.ok
        slices[index].time[:] = (int(mine.ts_ns[good].max()) if good.any() else NO_TIME,
                                 bool(np.any(good & (mine.link >= 0))))
        self._barrier.wait()
        counts = np.diff(bounds)
        picks = [np.flatnonzero(part.shard[:count] == index) for part, count in zip(slices, counts, strict=True)]
        decoded = {}
        for name, dtype, shape in _FIELDS:
            column = np.empty((sum(map(len, picks)), *shape), dtype)
            at = 0
            for part, pick in zip(slices, picks, strict=True):
                np.take(part.columns[name], pick, axis=0, out=column[at : at + len(pick)], mode="clip")
                at += len(pick)
            decoded[name] = column
        times = [int(part.time[0]) for part in slices if part.time[0] != NO_TIME]
        binned = any(bool(part.time[1]) for part in slices)
        rows = np.concatenate([bound + pick for bound, pick in zip(bounds[:-1], picks, strict=True)])
        return ShardStep(_rows(batch, rows), DecodedPackets(**decoded), max(times) if times else None, binned)


def _joined(rounds: list[ShardStep]) -> ShardStep:
    """The steps of a batch's rounds as one."""
    packets: dict[str, Any] = {name: np.concatenate([getattr(step.batch, name) for step in rounds])
                               for name in _BATCH_FIELDS}
    batch = dataclasses.replace(rounds[0].batch, **packets)
    decoded = DecodedPackets(**{name: np.concatenate([getattr(step.decoded, name) for step in rounds])
                                for name, _, _ in _FIELDS})
    times = [step.now_ns for step in rounds if step.now_ns is not None]
    return ShardStep(batch, decoded, max(times) if times else None, any(step.binned for step in rounds))


def _rows(batch: PacketBatch, rows: slice | np.ndarray) -> PacketBatch:
    """The batch's packets `rows` (a slice, or indices), on the same buffer."""
    return dataclasses.replace(batch, **{name: getattr(batch, name)[rows] for name in _BATCH_FIELDS})
