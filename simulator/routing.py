"""Where each packet goes: ECMP over the spines, link failures with local and remote convergence, and
the mirrored copies (records) each leaf-spine link sees."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from simulator.emissions import Emissions
from simulator.fabric import Fabric
from simulator.flows import Flow, FlowTable
from simulator.scenario import Item

HOP_DELAY_NS = (1000, 3001)  # per-hop delay range: the second link sees a packet 1-3 µs after the first
LINK_LOCAL, FIRST_HOP, SECOND_HOP = 0, 1, 2
NEVER = np.iinfo(np.int64).max


@dataclass(frozen=True, slots=True)
class LinkDown:
    """A link out of service over [t_down, t_up); convergence delays are counted from t_down."""

    link: int
    t_down: int
    t_up: int
    local_ns: int
    remote_ns: int
    fault: Item


@dataclass(frozen=True, slots=True)
class Records:
    """Mirrored copies, one per packet per link crossed, sorted by time."""

    packet: np.ndarray  # int64, row in the Emissions
    link: np.ndarray  # int16, Fabric link index
    hop: np.ndarray  # int8, LINK_LOCAL / FIRST_HOP (leaf to spine) / SECOND_HOP (spine to leaf)
    from_leaf: np.ndarray  # bool, the leaf end transmitted it
    t_ns: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.packet)

    def take(self, index: np.ndarray) -> Records:
        return Records(self.packet[index], self.link[index], self.hop[index], self.from_leaf[index], self.t_ns[index])

    @staticmethod
    def concat(parts: list[Records]) -> Records:
        """Parts appended in order (not re-sorted: callers keep per-record columns aligned via `time_order`)."""
        return Records(*(np.concatenate(cols) for cols in zip(*((p.packet, p.link, p.hop, p.from_leaf, p.t_ns)
                                                                 for p in parts), strict=True)))

    def time_order(self) -> np.ndarray:
        """Permutation sorting by time, then packet, then hop: deterministic for equal times."""
        return np.lexsort((self.hop, self.packet, self.t_ns))


def link_downs(fabric: Fabric, faults: tuple[Item, ...], start_ns: int) -> list[LinkDown]:
    downs = []
    for fault in faults:
        p = fault.params
        if fault.kind not in ("link_failure", "link_flap"):
            continue
        leaf, spine = (int(name.removeprefix(prefix)) - 1 for name, prefix in
                       zip(p["link"].split("-"), ("leaf", "spine"), strict=True))
        t_down = start_ns + round((p["at_ms"] if fault.kind == "link_failure" else p["down_ms"]) * 1e6)
        up_ms = p["recover_ms"] if fault.kind == "link_failure" else p["up_ms"]
        downs.append(LinkDown(
            link=fabric.link_index(leaf, spine),
            t_down=t_down,
            t_up=NEVER if up_ms < 0 else start_ns + round(up_ms * 1e6),
            local_ns=round(p["local_convergence_ms"] * 1e6),
            remote_ns=round(p["remote_convergence_ms"] * 1e6),
            fault=fault,
        ))
    return downs


def link_is_down(downs: list[LinkDown], link: np.ndarray, t_ns: np.ndarray) -> np.ndarray:
    down = np.zeros(len(link), dtype=bool)
    for event in downs:
        down |= (link == event.link) & (t_ns >= event.t_down) & (t_ns < event.t_up)
    return down


class Ecmp:
    """Spine choice per flow by a deterministic hash of its 5-tuple (salted by the seed); an
    ecmp_imbalance fault sends `share` of one leaf's flows to one spine."""

    def __init__(self, fabric: Fabric, faults: tuple[Item, ...], seed: int) -> None:
        self.spines = fabric.spec.spines
        self.seed = seed
        self.skew: dict[int, tuple[int, float]] = {
            int(f.params["leaf"].removeprefix("leaf")) - 1: (int(f.params["spine"].removeprefix("spine")) - 1,
                                                             f.params["share"])
            for f in faults if f.kind == "ecmp_imbalance"
        }

    def _hash(self, flow: Flow, salt: str) -> int:
        return zlib.crc32(f"{self.seed}|{salt}|{flow.fabric.key}".encode())

    def spine(self, flow: Flow) -> int:
        h = self._hash(flow, "ecmp")
        if flow.src_leaf in self.skew:
            target, share = self.skew[flow.src_leaf]
            if (h % 10_000) / 10_000 < share:
                return target
            others = [s for s in range(self.spines) if s != target]
            return others[(h // 10_000) % len(others)]
        return h % self.spines

    def alternate(self, flow: Flow, excluded: int) -> int:
        """The spine a flow moves to when its spine's link fails."""
        others = [s for s in range(self.spines) if s != excluded] or [excluded]
        return others[self._hash(flow, "rehash") % len(others)]


class Router:
    def __init__(self, fabric: Fabric, flows: FlowTable, ecmp: Ecmp, downs: list[LinkDown]) -> None:
        self.fabric = fabric
        self.downs = downs
        n_spines = fabric.spec.spines
        self.src_leaf = np.array([f.src_leaf for f in flows.flows], dtype=np.int64)
        self.dst_leaf = np.array([f.dst_leaf for f in flows.flows], dtype=np.int64)
        self.link = np.array([f.link for f in flows.flows], dtype=np.int64)
        self.from_leaf = np.array([f.from_leaf for f in flows.flows], dtype=bool)
        self.spine = np.array([ecmp.spine(f) if f.routed else -1 for f in flows.flows], dtype=np.int64)
        self.alternate = np.array([[ecmp.alternate(f, s) for s in range(n_spines)] for f in flows.flows],
                                  dtype=np.int64).reshape(len(flows), n_spines)

    def crosses(self, flow: int, link: int, up: bool) -> bool:
        """Whether a routed flow's usual path crosses `link` in that direction."""
        fabric_link = self.fabric.links[link]
        leaf = self.src_leaf[flow] if up else self.dst_leaf[flow]
        inter_leaf = self.src_leaf[flow] != self.dst_leaf[flow] and self.link[flow] < 0
        return bool(inter_leaf and leaf == fabric_link.leaf and self.spine[flow] == fabric_link.spine)

    def route(self, emissions: Emissions, rng: np.random.Generator,
              first_packet: int = 0) -> tuple[Records, np.ndarray]:
        """Records of every copy a link mirrors, and per packet whether it reached its destination."""
        flow = emissions.flow
        t = emissions.t_ns
        n = len(t)
        d1 = rng.integers(*HOP_DELAY_NS, n)
        d2 = rng.integers(*HOP_DELAY_NS, n)
        index = np.arange(n, dtype=np.int64) + first_packet
        local = self.link[flow] >= 0
        x, y = self.src_leaf[flow], self.dst_leaf[flow]
        routed = ~local & (x != y) & (x >= 0) & (y >= 0)
        spine = self.spine[flow].copy()
        h1 = t + d1
        for event in self.downs:
            a, s = self.fabric.links[event.link].leaf, self.fabric.links[event.link].spine
            window = (h1 >= event.t_down) & (h1 < event.t_up) & (spine == s) & routed
            moved = window & (((x == a) & (h1 >= event.t_down + event.local_ns))
                              | ((y == a) & (h1 >= event.t_down + event.remote_ns)))
            spine[moved] = self.alternate[flow[moved], s]
        h2 = h1 + d2
        n_spines = self.fabric.spec.spines
        link1, link2 = x * n_spines + spine, y * n_spines + spine
        hop1 = routed & ~link_is_down(self.downs, link1, h1)
        hop2 = hop1 & ~link_is_down(self.downs, link2, h2)
        local_ok = local & ~link_is_down(self.downs, self.link[flow], t)
        delivered = hop2 | local_ok | (~local & ~routed)
        parts = [
            Records(index[local_ok], self.link[flow][local_ok].astype(np.int16),
                    np.full(int(local_ok.sum()), LINK_LOCAL, np.int8), self.from_leaf[flow][local_ok], t[local_ok]),
            Records(index[hop1], link1[hop1].astype(np.int16), np.full(int(hop1.sum()), FIRST_HOP, np.int8),
                    np.ones(int(hop1.sum()), bool), h1[hop1]),
            Records(index[hop2], link2[hop2].astype(np.int16), np.full(int(hop2.sum()), SECOND_HOP, np.int8),
                    np.zeros(int(hop2.sum()), bool), h2[hop2]),
        ]
        records = Records.concat(parts)
        return records.take(records.time_order()), delivered
