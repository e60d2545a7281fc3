"""What each chunk of a capture file holds, so a packet lookup decodes only the chunks it needs.

A chunk is a run of consecutive records (a reader batch for a replayed file, a whole segment for the
recorder): its time range, the links its packets were attributed to and the hashes of the 5-tuples it
holds. Link indexes depend on the topology, so an index is valid for one file (path, size, mtime) under
one topology, and its file name says so (`index_path`). Indexes are kept beside the store, never inside
the capture: for `replay` inputs the files themselves are the store and are only read.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from collectors.packets import DecodedPackets
from pipeline.topology import Topology

_MIX = np.uint64(0x9E3779B97F4A7C15)
TUPLE_FIELDS = ("src_hi", "src_lo", "dst_hi", "dst_lo", "src_port", "dst_port", "proto")


def tuple_hash(columns: dict[str, np.ndarray]) -> np.ndarray:
    """64-bit hash of the 5-tuple columns (TUPLE_FIELDS): equal tuples give equal hashes."""
    h = np.zeros(len(columns["proto"]), dtype=np.uint64)
    for name in TUPLE_FIELDS:
        h ^= np.asarray(columns[name]).astype(np.uint64)
        h *= _MIX
        h ^= h >> np.uint64(31)
    return h


@numba.njit(cache=True, nogil=True)  # the recorder runs it on its own thread
def _summarise(ok: np.ndarray, ts_ns: np.ndarray, link: np.ndarray, src_hi: np.ndarray, src_lo: np.ndarray,
               dst_hi: np.ndarray, dst_lo: np.ndarray, src_port: np.ndarray, dst_port: np.ndarray,
               proto: np.ndarray, touched: np.ndarray) -> tuple[int, int, np.ndarray]:  # pragma: no cover - compiled
    """(ts min, ts max, sorted unique `tuple_hash`es) of the `ok` rows, marking their links in `touched`: one
    pass with a hash set, where hashing every row then np.unique sorted them all (a batch holds ~100 flows)."""
    shift = np.uint64(31)
    n = len(ok)
    bits = 1
    while (1 << bits) < 2 * n:
        bits += 1
    mask = np.int64((1 << bits) - 1)
    table = np.empty(1 << bits, dtype=np.uint64)
    used = np.zeros(1 << bits, dtype=np.bool_)
    found = np.empty(n, dtype=np.uint64)
    count = 0
    low, high = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for i in range(n):
        if not ok[i]:
            continue
        low = min(low, ts_ns[i])
        high = max(high, ts_ns[i])
        if link[i] >= 0:
            touched[link[i]] = True
        h = np.uint64(0)
        for value in (np.uint64(src_hi[i]), np.uint64(src_lo[i]), np.uint64(dst_hi[i]), np.uint64(dst_lo[i]),
                      np.uint64(src_port[i]), np.uint64(dst_port[i]), np.uint64(proto[i])):
            h = (h ^ value) * _MIX
            h ^= h >> shift
        slot = np.int64((h * _MIX) >> np.uint64(64 - bits))
        while used[slot] and table[slot] != h:
            slot = (slot + 1) & mask
        if not used[slot]:
            used[slot] = True
            table[slot] = h
            found[count] = h
            count += 1
    return low, high, np.sort(found[:count])


def topology_fingerprint(topology: Topology) -> str:
    """Changes whenever a packet could be attributed to a different link index."""
    text = repr((tuple(link.id for link in topology.links), sorted(topology.erspan_sessions.items()),
                 sorted(topology.vlans.items()), sorted(topology.interfaces.items())))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def index_path(directory: Path, capture: Path, topology: Topology) -> Path:
    """Where the index of `capture` (as it is now: size, mtime) under `topology` lives in `directory`."""
    stat = capture.stat()
    key = f"{capture.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{topology_fingerprint(topology)}"
    return directory / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.npz"


@dataclass(frozen=True)
class ChunkIndex:
    """Per chunk i: records [first_record[i], first_record[i+1]), times [ts_min[i], ts_max[i]] (ns), the
    links it touches (`links[i, link]`) and its sorted unique tuple hashes
    `hashes[hash_start[i]:hash_start[i+1]]`. Records that did not decode count in a chunk's range only."""

    first_record: np.ndarray  # int64, n + 1 (the last is the total)
    ts_min: np.ndarray  # int64
    ts_max: np.ndarray  # int64
    links: np.ndarray  # bool (n, links)
    hash_start: np.ndarray  # int64, n + 1
    hashes: np.ndarray  # uint64

    def __len__(self) -> int:
        return len(self.ts_min)

    def matching(self, *, start_ns: int, end_ns: int, links: np.ndarray | None,
                 flow_hash: int | None) -> np.ndarray:
        """Bool per chunk: it may hold a packet in [start_ns, end_ns] on one of `links` (indexes; None: any)
        with the tuple hash `flow_hash` (None: any)."""
        match = (self.ts_max >= start_ns) & (self.ts_min <= end_ns)
        if links is not None:
            match &= self.links[:, links].any(axis=1) if len(links) else False
        if flow_hash is not None:
            for chunk in np.flatnonzero(match):
                own = self.hashes[self.hash_start[chunk] : self.hash_start[chunk + 1]]
                at = int(np.searchsorted(own, np.uint64(flow_hash)))
                match[chunk] = at < len(own) and own[at] == np.uint64(flow_hash)
        return match

    def save(self, path: Path) -> None:
        """Written whole or not at all (a reader never sees half an index)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial.npz")
        np.savez(partial, first_record=self.first_record, ts_min=self.ts_min, ts_max=self.ts_max,
                 links=self.links, hash_start=self.hash_start, hashes=self.hashes)
        os.replace(partial, path)

    @classmethod
    def load(cls, path: Path) -> ChunkIndex:
        with np.load(path) as saved:
            return cls(**{name: saved[name] for name in saved.files})


class ChunkIndexBuilder:
    """Accumulates chunks from decoded batches; `add` per chunk, `build` at the end."""

    def __init__(self, link_count: int) -> None:
        self.link_count = link_count
        self._first: list[int] = [0]
        self._ts_min: list[int] = []
        self._ts_max: list[int] = []
        self._links: list[np.ndarray] = []
        self._hashes: list[np.ndarray] = []

    def add(self, decoded: DecodedPackets) -> None:
        """One chunk: the records of `decoded` (the next ones in file order)."""
        self._first.append(self._first[-1] + len(decoded))
        touched = np.zeros(self.link_count, dtype=bool)
        low, high, hashes = _summarise(decoded.ok, decoded.ts_ns, decoded.link, decoded.src_hi, decoded.src_lo,
                                       decoded.dst_hi, decoded.dst_lo, decoded.src_port, decoded.dst_port,
                                       decoded.proto, touched)
        self._ts_min.append(low)
        self._ts_max.append(high)
        self._links.append(touched)
        self._hashes.append(hashes)

    def build(self) -> ChunkIndex:
        sizes = [len(h) for h in self._hashes]
        return ChunkIndex(
            first_record=np.array(self._first, dtype=np.int64),
            ts_min=np.array(self._ts_min, dtype=np.int64),
            ts_max=np.array(self._ts_max, dtype=np.int64),
            links=np.array(self._links, dtype=bool).reshape(len(self._links), self.link_count),
            hash_start=np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64),
            hashes=np.concatenate(self._hashes).astype(np.uint64) if self._hashes else np.empty(0, np.uint64),
        )

