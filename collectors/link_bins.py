"""Per-link 10 ms bins of RoCE ECN, CNP and PFC counts, aggregated per batch with a vectorised group-by.

Bins are keyed by (link, direction, epoch-aligned 10 ms slot). A bin stays open until the capture's
watermark (latest timestamp seen minus `lateness_us`) has passed its end, so packets of one bin that
arrive in two batches are still counted once. Keys are grouped with numpy; the per-packet sums, minima and
maxima into those groups are one compiled pass (ufunc.at per column cost ~5x more than the rest of the stage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from collectors.packets import DecodedPackets
from pipeline.records import LINK_BIN_US
from pipeline.topology import DIRECTIONS, Topology

CNP_OPCODE = 0x81
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


class LinkBins:
    """Accumulates decoded packets into link bins and hands out the bins that can no longer change."""

    def __init__(self, topology: Topology, config: LinkBinsConfig | None = None) -> None:
        self.topology = topology
        self.config = config or LinkBinsConfig()
        self._keys = np.empty(0, dtype=np.int64)
        self._sums = np.empty((0, len(_SUMS)), dtype=np.int64)
        self._first = np.empty(0, dtype=np.int64)
        self._last = np.empty(0, dtype=np.int64)
        self._first_ce = np.empty(0, dtype=np.int64)
        self._last_ce = np.empty(0, dtype=np.int64)
        self._watermark_us = np.iinfo(np.int64).min

    def update(self, packets: DecodedPackets) -> dict[str, np.ndarray]:
        """Add a batch; return the bins closed by it as `link_bins` columns (possibly empty)."""
        keep = packets.ok & (packets.link >= 0)
        if keep.any():
            self._merge(*self._aggregate(packets, keep))
            self._watermark_us = max(self._watermark_us, int(packets.ts_ns[packets.ok].max() // 1000))
        closing = self._slot_start(self._keys) + LINK_BIN_US <= self._watermark_us - self.config.lateness_us
        return self._take(closing)

    def flush(self) -> dict[str, np.ndarray]:
        """Every open bin, at the end of input."""
        return self._take(np.ones(len(self._keys), dtype=bool))

    @staticmethod
    def _slot_start(keys: np.ndarray) -> np.ndarray:
        return (keys >> 16) * LINK_BIN_US

    def _aggregate(self, p: DecodedPackets, keep: np.ndarray) -> tuple[np.ndarray, ...]:
        ts_us = p.ts_ns[keep] // 1000
        slot = ts_us // LINK_BIN_US
        keys = (slot << 16) | (p.link[keep].astype(np.int64) << 2) | p.direction[keep].astype(np.int64)
        unique, inverse = np.unique(keys, return_inverse=True)
        sums = np.zeros((len(unique), len(_SUMS)), dtype=np.int64)
        first = np.full(len(unique), np.iinfo(np.int64).max, dtype=np.int64)
        last = np.full(len(unique), np.iinfo(np.int64).min, dtype=np.int64)
        first_ce = np.full(len(unique), _NO_CE, dtype=np.int64)
        last_ce = np.full(len(unique), -1, dtype=np.int64)
        _accumulate(
            keep, inverse, ts_us, p.wire_len, p.is_roce, p.ecn, p.bth_opcode, p.pfc_enable, p.pfc_quanta,
            sums, first, last, first_ce, last_ce,
        )
        return unique, sums, first, last, first_ce, last_ce

    def _merge(
        self,
        keys: np.ndarray,
        sums: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        first_ce: np.ndarray,
        last_ce: np.ndarray,
    ) -> None:
        all_keys = np.concatenate([self._keys, keys])
        unique, inverse = np.unique(all_keys, return_inverse=True)
        merged = np.zeros((len(unique), len(_SUMS)), dtype=np.int64)
        np.add.at(merged, inverse, np.concatenate([self._sums, sums]))
        self._first = _reduce(np.minimum, unique, inverse, np.concatenate([self._first, first]), np.iinfo(np.int64).max)
        self._last = _reduce(np.maximum, unique, inverse, np.concatenate([self._last, last]), np.iinfo(np.int64).min)
        self._first_ce = _reduce(np.minimum, unique, inverse, np.concatenate([self._first_ce, first_ce]), _NO_CE)
        self._last_ce = _reduce(np.maximum, unique, inverse, np.concatenate([self._last_ce, last_ce]), -1)
        self._keys, self._sums = unique, merged

    def _take(self, mask: np.ndarray) -> dict[str, np.ndarray]:
        keys, sums = self._keys[mask], self._sums[mask]
        first, last = self._first[mask], self._last[mask]
        first_ce, last_ce = self._first_ce[mask], self._last_ce[mask]
        rest = ~mask
        self._keys, self._sums = self._keys[rest], self._sums[rest]
        self._first, self._last = self._first[rest], self._last[rest]
        self._first_ce, self._last_ce = self._first_ce[rest], self._last_ce[rest]
        return self._columns(keys, sums, first, last, first_ce, last_ce)

    def _columns(
        self,
        keys: np.ndarray,
        sums: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        first_ce: np.ndarray,
        last_ce: np.ndarray,
    ) -> dict[str, np.ndarray]:
        link_index = (keys >> 2) & 0x3FFF
        links = self.topology.links
        rate = self.config.sampling_rate
        has_ce = sums[:, _SUMS.index("roce_ce")] > 0
        columns: dict[str, np.ndarray] = {
            "ts": self._slot_start(keys).astype("datetime64[us]"),
            "exporter": np.full(len(keys), self.config.exporter, dtype=object),
            "link": np.array([links[i].id for i in link_index], dtype=object),
            "direction": np.array([DIRECTIONS[d] for d in keys & 0x3], dtype=object),
            "leaf": np.array([links[i].leaf for i in link_index], dtype=object),
            "spine": np.array([links[i].spine for i in link_index], dtype=object),
            "ts_first": first.astype("datetime64[us]"),
            "ts_last": last.astype("datetime64[us]"),
        }
        for i, name in enumerate(_SUMS):
            scale = rate if name in ("packets", "bytes") else 1
            columns[name] = (sums[:, i] * scale).astype(np.uint64)
        columns["ts_first_ce"] = np.where(has_ce, first_ce, 0).astype("datetime64[us]")
        columns["ts_last_ce"] = np.where(has_ce, last_ce, 0).astype("datetime64[us]")
        columns["sampling_rate"] = np.full(len(keys), rate, dtype=np.uint32)
        order = np.argsort(keys, kind="stable")
        return {name: column[order] for name, column in columns.items()}


def _reduce(ufunc: np.ufunc, unique: np.ndarray, inverse: np.ndarray, values: np.ndarray, identity: int) -> np.ndarray:
    out = np.full(len(unique), identity, dtype=np.int64)
    ufunc.at(out, inverse, values)
    return out


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
