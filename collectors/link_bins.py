"""Per-link 10 ms bins of RoCE ECN, CNP and PFC counts, aggregated per batch with a vectorised group-by.

Bins are keyed by (link, direction, epoch-aligned 10 ms slot). A bin stays open until the capture's
watermark (latest timestamp seen minus `lateness_us`) has passed its end, so packets of one bin that
arrive in two batches are still counted once. Keys are grouped through a table over the batch's slots and
links (bin_groups); the per-packet sums, minima and maxima into those groups are one compiled pass (ufunc.at
per column cost ~5x more than the rest of the stage).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np

from collectors.packets import DecodedPackets
from collectors.protocols import CNP_OPCODE
from pipeline.records import LINK_BIN_US, repeated
from pipeline.topology import DIRECTIONS, Topology

ECN_CE = 3
DEFAULT_LATENESS_US = 20_000
_NO_CE = np.iinfo(np.int64).max

# Per-bin sums, in this order, followed by min/max columns handled apart.
_SUMS = ("packets", "bytes", "roce_packets", "roce_ect", "roce_ce", "cnp", "pfc_pause", "pfc_quanta")


@dataclass(frozen=True, slots=True)
class LinkBinsConfig:
    """`lateness_us`: how far behind the newest packet a bin may still receive packets."""

    lateness_us: int = DEFAULT_LATENESS_US
    exporter: str = "fabricscope"
    sampling_rate: int = 1


@dataclass(frozen=True, slots=True)
class _Bins:
    """Open bins: their keys (slot << 16 | link << 2 | direction), the _SUMS columns, and the first/last
    packet and first/last CE-marked packet of each (µs)."""

    keys: np.ndarray
    sums: np.ndarray
    first: np.ndarray
    last: np.ndarray
    first_ce: np.ndarray
    last_ce: np.ndarray

    @staticmethod
    def empty(size: int = 0) -> _Bins:
        return _Bins(
            keys=np.empty(size, dtype=np.int64),
            sums=np.zeros((size, len(_SUMS)), dtype=np.int64),
            first=np.full(size, np.iinfo(np.int64).max, dtype=np.int64),
            last=np.full(size, np.iinfo(np.int64).min, dtype=np.int64),
            first_ce=np.full(size, _NO_CE, dtype=np.int64),
            last_ce=np.full(size, -1, dtype=np.int64),
        )

    def merge(self, other: _Bins) -> _Bins:
        """One bin per key: sums added, first/last the earliest/latest of both."""
        unique, inverse = np.unique(np.concatenate([self.keys, other.keys]), return_inverse=True)
        merged = _Bins.empty(len(unique))
        merged.keys[:] = unique
        np.add.at(merged.sums, inverse, np.concatenate([self.sums, other.sums]))
        np.minimum.at(merged.first, inverse, np.concatenate([self.first, other.first]))
        np.maximum.at(merged.last, inverse, np.concatenate([self.last, other.last]))
        np.minimum.at(merged.first_ce, inverse, np.concatenate([self.first_ce, other.first_ce]))
        np.maximum.at(merged.last_ce, inverse, np.concatenate([self.last_ce, other.last_ce]))
        return merged

    def select(self, mask: np.ndarray) -> _Bins:
        return _Bins(self.keys[mask], self.sums[mask], self.first[mask], self.last[mask], self.first_ce[mask],
                     self.last_ce[mask])


class LinkBins:
    """Accumulates decoded packets into link bins and hands out the bins that can no longer change."""

    def __init__(self, topology: Topology, config: LinkBinsConfig | None = None) -> None:
        self.topology = topology
        self.config = config or LinkBinsConfig()
        self._open = _Bins.empty()
        self._watermark_us = np.iinfo(np.int64).min
        self._link_ids = np.array([link.id for link in topology.links], dtype=object)
        self._leaves = np.array([link.leaf for link in topology.links], dtype=object)
        self._spines = np.array([link.spine for link in topology.links], dtype=object)
        self._directions = np.array(DIRECTIONS, dtype=object)

    @property
    def watermark_us(self) -> int:
        """The newest packet time the bins have been advanced to."""
        return self._watermark_us

    def update(self, packets: DecodedPackets) -> dict[str, np.ndarray]:
        """Add a batch; return the bins closed by it as `link_bins` columns (possibly empty)."""
        if self.add(packets):
            return self.advance(int(packets.ts_ns[packets.ok].max() // 1000))
        return self.advance(self._watermark_us)

    def add(self, packets: DecodedPackets) -> bool:
        """Add a batch's packets to their open bins without moving the watermark (a worker's share of a batch:
        the whole batch's time moves it); False when none of them belongs to a link."""
        keep = packets.ok & (packets.link >= 0)
        if keep.any():
            self._open = self._open.merge(self._aggregate(packets, keep))
        return bool(keep.any())

    def advance(self, now_us: int) -> dict[str, np.ndarray]:
        """Move the watermark to `now_us` with no packets (a live source's quiet moment); return the bins
        that closes."""
        self._watermark_us = max(self._watermark_us, now_us)
        closing = self._slot_start(self._open.keys) + LINK_BIN_US <= self._watermark_us - self.config.lateness_us
        return self._take(closing)

    def flush(self) -> dict[str, np.ndarray]:
        """Every open bin, at the end of input."""
        return self._take(np.ones(len(self._open.keys), dtype=bool))

    def merge(self, parts: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """`link_bins` columns closed by several workers in one step (collectors.workers), one row per bin as
        one LinkBins over every packet would give it: counts added, first/last packet and CE-marked packet the
        earliest/latest, rows in its order (slot, link, direction)."""
        parts = [part for part in parts if len(part["ts"])]
        if len(parts) <= 1:
            return parts[0] if parts else self._columns(_Bins.empty())
        rows = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
        links, link_of = np.unique(rows["link"].astype(str), return_inverse=True)
        index = {link_id: i for i, link_id in enumerate(self._link_ids.tolist())}
        directions = {name: i for i, name in enumerate(DIRECTIONS)}
        slot = rows["ts"].astype(np.int64) // LINK_BIN_US
        keys = (slot << 16) | (np.array([index[link] for link in links.tolist()], dtype=np.int64)[link_of] << 2) \
            | np.array([directions[name] for name in rows["direction"].tolist()], dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
        merged = {name: column[order][starts] for name, column in rows.items()}
        for name in _SUMS:
            merged[name] = np.add.reduceat(rows[name][order], starts).astype(np.uint64)
        for name, reduce in (("ts_first", np.minimum), ("ts_last", np.maximum), ("ts_last_ce", np.maximum)):
            merged[name] = reduce.reduceat(rows[name][order].astype(np.int64), starts).astype("datetime64[us]")
        first_ce = rows["ts_first_ce"][order].astype(np.int64)
        first_ce = np.minimum.reduceat(np.where(first_ce == 0, _NO_CE, first_ce), starts)
        merged["ts_first_ce"] = np.where(first_ce == _NO_CE, 0, first_ce).astype("datetime64[us]")
        return merged

    @staticmethod
    def _slot_start(keys: np.ndarray) -> np.ndarray:
        return (keys >> 16) * LINK_BIN_US

    @staticmethod
    def _aggregate(p: DecodedPackets, keep: np.ndarray) -> _Bins:
        ts_us = p.ts_ns[keep] // 1000
        slot = ts_us // LINK_BIN_US
        lane = (p.link[keep].astype(np.int64) << 2) | p.direction[keep].astype(np.int64)
        unique, inverse = bin_groups(slot, lane)
        bins = _Bins.empty(len(unique))
        bins.keys[:] = unique
        _accumulate(
            keep, inverse, ts_us, p.wire_len, p.is_roce, p.ecn, p.bth_opcode, p.pfc_enable, p.pfc_quanta,
            bins.sums, bins.first, bins.last, bins.first_ce, bins.last_ce,
        )
        return bins

    def _take(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        taken, self._open = self._open.select(mask), self._open.select(~mask)
        return self._columns(taken)

    def _columns(self, bins: _Bins) -> dict[str, np.ndarray]:
        keys = bins.keys
        link_index = (keys >> 2) & 0x3FFF
        rate = self.config.sampling_rate
        has_ce = bins.sums[:, _SUMS.index("roce_ce")] > 0
        columns: dict[str, np.ndarray] = {
            "ts": self._slot_start(keys).astype("datetime64[us]"),
            "exporter": repeated(self.config.exporter, len(keys)),
            "link": self._link_ids[link_index],
            "direction": self._directions[keys & 0x3],
            "leaf": self._leaves[link_index],
            "spine": self._spines[link_index],
            "ts_first": bins.first.astype("datetime64[us]"),
            "ts_last": bins.last.astype("datetime64[us]"),
        }
        for i, name in enumerate(_SUMS):
            scale = rate if name in ("packets", "bytes") else 1
            columns[name] = (bins.sums[:, i] * scale).astype(np.uint64)
        columns["ts_first_ce"] = np.where(has_ce, bins.first_ce, 0).astype("datetime64[us]")
        columns["ts_last_ce"] = np.where(has_ce, bins.last_ce, 0).astype("datetime64[us]")
        columns["sampling_rate"] = np.full(len(keys), rate, dtype=np.uint32)
        order = np.argsort(keys, kind="stable")
        return {name: column[order] for name, column in columns.items()}


def bin_groups(slot: np.ndarray, lane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bin keys (slot << 16 | lane) of the packets, sorted and unique, and each packet's index in them.
    A batch spans few slots, so a table over its slots and lanes groups it in linear time; np.unique's sort of
    every packet's key took ~0.3 s of a 3.8 s replay of 4M packets. A batch spread over many slots (a slow
    live source) is sorted."""
    first = int(slot.min())
    lanes = int(lane.max()) + 1
    cells = (int(slot.max()) - first + 1) * lanes
    if cells > 4 * len(slot) + 65_536:
        return np.unique((slot << 16) | lane, return_inverse=True)
    cell = (slot - first) * lanes + lane
    present = np.zeros(cells, dtype=np.bool_)
    present[cell] = True
    occupied = np.flatnonzero(present)
    index = np.cumsum(present) - 1
    return ((occupied // lanes + first) << 16) | (occupied % lanes), index[cell]


@numba.njit(cache=True)
def _accumulate(
    keep: np.ndarray,
    inverse: np.ndarray,
    ts_us: np.ndarray,
    wire_len: np.ndarray,
    is_roce: np.ndarray,
    ecn: np.ndarray,
    opcode: np.ndarray,
    pfc_enable: np.ndarray,
    pfc_quanta: np.ndarray,
    sums: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    first_ce: np.ndarray,
    last_ce: np.ndarray,
) -> None:
    """Add the kept packets into their bins (`inverse` numbers the kept packets' bins, `ts_us` their times),
    in the column order of _SUMS."""
    kept = 0
    for i in range(len(keep)):
        if not keep[i]:
            continue
        group = inverse[kept]
        ts = ts_us[kept]
        kept += 1
        roce = is_roce[i]
        ce = roce and ecn[i] == ECN_CE
        quanta = 0
        for priority in range(pfc_quanta.shape[1]):
            quanta += pfc_quanta[i, priority]
        row = sums[group]
        row[0] += 1
        row[1] += wire_len[i]
        row[2] += roce
        row[3] += roce and ecn[i] != 0
        row[4] += ce
        row[5] += roce and opcode[i] == CNP_OPCODE
        row[6] += pfc_enable[i] != 0 and quanta > 0
        row[7] += quanta
        first[group] = min(first[group], ts)
        last[group] = max(last[group], ts)
        if ce:
            first_ce[group] = min(first_ce[group], ts)
            last_ce[group] = max(last_ce[group], ts)
