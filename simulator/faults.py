"""Congestion episodes: ECN CE marks at the congested egress (ramping up and down), CNPs from the
receivers back to each marked QP's sender, and PFC pause frames on the congested link."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator import frames
from simulator.context import Context
from simulator.emissions import Emissions, EmissionsBuilder
from simulator.fabric import Fabric
from simulator.flows import Flow
from simulator.routing import FIRST_HOP, SECOND_HOP, Records
from simulator.scenario import Item
from simulator.templates import ROCE_DATA_OPCODES, TemplateArrays, TemplateTable

CNP_INTERVAL_NS = 50_000  # a receiver sends at most one CNP per QP per 50 µs
CNP_DELAY_NS = (1500, 4000)
PAUSE_QUANTA = 0x2000
NO_HOP = 9


@dataclass(frozen=True, slots=True)
class Episode:
    fault: Item
    link: int
    up: bool
    start: int
    end: int
    pfc_flow: int
    pfc_template: int

    def ratio(self, t_ns: np.ndarray) -> np.ndarray:
        """CE marking probability: ramps up over the first third, holds the peak, ramps down over the last."""
        x = (t_ns - self.start) / (self.end - self.start)
        return self.fault.params["peak_ce_ratio"] * np.clip(np.minimum(3 * x, 3 * (1 - x)), 0, 1)


@dataclass(frozen=True, slots=True)
class Marks:
    ce: np.ndarray  # bool per record: carries CE
    marked_here: np.ndarray  # bool per record: this link's egress set CE
    episode: np.ndarray  # int16 per record: episode that marked it, -1 if none


def episodes(ctx: Context, templates: TemplateTable) -> list[Episode]:
    """One Episode per congestion fault, with its PFC flow: pauses sent by the receiving end of the
    congested direction (the leaf for `down`, the spine for `up`) towards the sender."""
    result = []
    for fault in ctx.scenario.faults:
        if fault.kind != "congestion":
            continue
        p = fault.params
        link = next(link for link in ctx.fabric.links if link.id == p["link"])
        up = p["direction"] == "up"
        mac = Fabric.spine_mac(link.spine) if up else Fabric.leaf_mac(link.leaf)
        flow = Flow("::", "::", 0, frames.ETH_PAUSE, 0, app="pfc", traffic_class="control", link=link.index,
                    from_leaf=not up)
        result.append(Episode(fault, link.index, up, ctx.ms(p["start_ms"]), ctx.ms(p["end_ms"]),
                              ctx.flows.add(flow), templates.add(frames.pfc_pause(mac, PAUSE_QUANTA))))
    return result


def mark(records: Records, emissions: Emissions, templates: TemplateArrays, eps: list[Episode],
         rng: np.random.Generator) -> Marks:
    """CE-mark ECN-capable RoCE data packets leaving a congested egress; CE sticks for later hops."""
    template = emissions.template[records.packet]
    data = np.isin(templates.opcode[template], list(ROCE_DATA_OPCODES)) & (templates.ecn[template] != 0)
    marked_here = np.zeros(len(records), dtype=bool)
    episode = np.full(len(records), -1, dtype=np.int16)
    for number, ep in enumerate(eps):
        hop = FIRST_HOP if ep.up else SECOND_HOP
        rows = np.flatnonzero(data & (records.link == ep.link) & (records.hop == hop)
                              & (records.t_ns >= ep.start) & (records.t_ns < ep.end))
        hit = rows[rng.random(len(rows)) < ep.ratio(records.t_ns[rows])]
        marked_here[hit] = True
        episode[hit] = number
    first_hop = np.full(len(emissions), NO_HOP, dtype=np.int8)
    np.minimum.at(first_hop, records.packet[marked_here], records.hop[marked_here])
    packet_episode = np.full(len(emissions), -1, dtype=np.int16)
    packet_episode[records.packet[marked_here]] = episode[marked_here]
    ce = records.hop >= first_hop[records.packet]
    return Marks(ce=ce, marked_here=marked_here, episode=np.where(ce, packet_episode[records.packet], -1))


def notifications(ctx: Context, records: Records, marks: Marks, emissions: Emissions, delivered: np.ndarray,
                  rng: np.random.Generator) -> tuple[Emissions, np.ndarray]:
    """CNPs for delivered CE packets (one per QP per CNP_INTERVAL_NS), and the episode behind each."""
    arrival = np.zeros(len(emissions), dtype=np.int64)
    np.maximum.at(arrival, records.packet, records.t_ns)
    ce_packet = np.zeros(len(emissions), dtype=bool)
    ce_packet[records.packet[marks.ce]] = True
    episode = np.full(len(emissions), -1, dtype=np.int16)
    episode[records.packet[marks.ce]] = marks.episode[marks.ce]
    rows = np.flatnonzero(ce_packet & delivered)
    bucket = arrival[rows] // CNP_INTERVAL_NS
    _, first = np.unique(np.stack([emissions.flow[rows].astype(np.int64), bucket]), axis=1, return_index=True)
    rows = rows[np.sort(first)]
    builder = EmissionsBuilder()
    cnp = np.array([ctx.cnp_of[int(f)] for f in emissions.flow[rows]], dtype=np.int64).reshape(-1, 2)
    t = arrival[rows] + rng.integers(*CNP_DELAY_NS, len(rows))
    builder.add(t, cnp[:, 0], cnp[:, 1])
    order = np.argsort(t, kind="stable")
    return builder.build(), episode[rows][order]


def pauses(eps: list[Episode]) -> Emissions:
    """PFC pause frames every `pfc_interval_us` while the episode is at least half its peak."""
    builder = EmissionsBuilder()
    for ep in eps:
        span = ep.end - ep.start
        interval = round(ep.fault.params["pfc_interval_us"] * 1e3)
        builder.add(np.arange(ep.start + span // 6, ep.end - span // 6, interval, dtype=np.int64), ep.pfc_flow,
                    ep.pfc_template)
    return builder.build()
