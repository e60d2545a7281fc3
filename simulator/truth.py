"""Ground truth, computed from the records actually written (never from intentions alone): flows per
link, job iterations, and events with the quantities of DESIGN.md section 6."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.topology import Topology
from simulator.context import Job
from simulator.emissions import Emissions
from simulator.fabric import Fabric
from simulator.faults import Episode, Marks
from simulator.flows import Flow, FlowTable
from simulator.imbalance import ImbalanceRule, imbalance_events
from simulator.pcap import Written
from simulator.rdma import SEND, WRITE
from simulator.routing import FIRST_HOP, SECOND_HOP, LinkDown, Records
from simulator.scenario import Scenario
from simulator.templates import OPCODE_CNP, ROCE_DATA_OPCODES, TemplateArrays

AFFECTED_WINDOW_NS = 10_000_000
AFFECTED_MIN_PACKETS = 3
CE_BIN_NS = 10_000_000
CE_BIN_MIN_PACKETS = 10
PSN_MOD = 1 << 24
MESSAGE_END_OPCODES = frozenset((*(WRITE[r] for r in ("last", "only")), *(SEND[r] for r in ("last", "only"))))


@dataclass(frozen=True)
class Capture:
    """Everything written, per record, aligned: the inputs of every truth computation."""

    scenario: Scenario
    seed: int
    fabric: Fabric
    topology: Topology
    flows: FlowTable
    emissions: Emissions
    templates: TemplateArrays
    records: Records
    written: Written
    marks: Marks
    cnp_episode: np.ndarray  # per emission row: congestion episode behind a CNP, -1 otherwise
    downs: list[LinkDown]
    episodes: list[Episode]
    jobs: dict[str, Job]


class _Columns:
    """Per-record columns derived once."""

    def __init__(self, cap: Capture) -> None:
        rec = cap.records
        self.flow = cap.emissions.flow[rec.packet].astype(np.int64)
        keys: dict[tuple[Any, ...], int] = {}
        flow_key = np.array([keys.setdefault(f.key, len(keys)) for f in cap.flows.flows], dtype=np.int64)
        self.key = flow_key[self.flow]
        self.n_keys = len(keys)
        template = cap.emissions.template[rec.packet]
        self.opcode = cap.templates.opcode[template]
        self.data = np.isin(self.opcode, list(ROCE_DATA_OPCODES))
        self.roce = self.opcode >= 0
        self.ce = cap.marks.ce
        self.ect = (cap.templates.ecn[template] != 0) | self.ce
        self.cnp = self.opcode == OPCODE_CNP
        self.psn = cap.emissions.psn[rec.packet]
        self.ts = cap.written.ts_ns
        self.wire = cap.written.wire_len
        self.link = rec.link.astype(np.int64)


def _us(t_ns: int | np.integer) -> int:
    return int(t_ns) // 1000


def _psn_gaps(order: np.ndarray, group: np.ndarray, psn: np.ndarray) -> np.ndarray:
    """PSN numbers skipped between consecutive packets of the same group (rows in time order)."""
    same = group[order][1:] == group[order][:-1]
    delta = (psn[order][1:] - psn[order][:-1]) % PSN_MOD
    gap = np.where(same & (delta > 0) & (delta < PSN_MOD // 2), delta - 1, 0)
    return np.bincount(group[order][1:], weights=gap, minlength=int(group.max()) + 1 if len(group) else 0)


def _direction(cap: Capture, link: str, flow: Flow) -> str:
    """As the collector judges it, from the addresses the fabric routes on (a tunnel's outer endpoints)."""
    fabric = flow.fabric
    return cap.topology.direction(link, fabric.src_ip, fabric.dst_ip) if fabric.src_ip != "::" else "unknown"


def flows(cap: Capture, c: _Columns) -> list[dict[str, Any]]:
    group_id = c.link * c.n_keys + c.key
    groups, first_row, inverse = np.unique(group_id, return_index=True, return_inverse=True)
    n = len(groups)

    def total(weights: np.ndarray) -> np.ndarray:
        return np.bincount(inverse, weights=weights, minlength=n).astype(np.int64)

    first = np.full(n, np.iinfo(np.int64).max)
    last = np.zeros(n, dtype=np.int64)
    np.minimum.at(first, inverse, c.ts)
    np.maximum.at(last, inverse, c.ts)
    data_rows = np.flatnonzero(c.data)
    gaps = np.zeros(n, dtype=np.int64)
    if len(data_rows):
        order = np.lexsort((c.ts[data_rows], inverse[data_rows]))
        counted = _psn_gaps(order, inverse[data_rows], c.psn[data_rows])
        gaps[: len(counted)] = counted
    representative = c.flow[first_row]  # flows sharing a key (LLDP from both ends) share their labels
    result = []
    packets, size = total(np.ones(len(inverse))), total(c.wire.astype(np.float64))
    ect, ce, cnp = total(c.ect.astype(np.float64)), total(c.ce.astype(np.float64)), total(c.cnp.astype(np.float64))
    for g in range(n):
        flow = cap.flows[int(representative[g])]
        link = cap.fabric.links[int(groups[g] // c.n_keys)]
        row = {
            "link": link.id, "direction": _direction(cap, link.id, flow),
            "src_ip": flow.src_ip, "dst_ip": flow.dst_ip, "src_port": flow.src_port, "dst_port": flow.dst_port,
            "proto": flow.proto, "vlan": flow.vlan, "vni": flow.vni, "roce_qp": flow.roce_qp, "dscp": flow.dscp,
            "app": flow.app, "app_detail": flow.app_detail, "traffic_class": flow.traffic_class, "job": flow.job,
            "packets": int(packets[g]), "bytes": int(size[g]), "ecn_ect": int(ect[g]), "ecn_ce": int(ce[g]),
            "cnp": int(cnp[g]), "psn_gaps": int(gaps[g]),
            "first_ts_us": _us(first[g]), "last_ts_us": _us(last[g]),
        }
        if flow.outer is not None:
            row.update(outer_src_ip=flow.outer.src_ip, outer_dst_ip=flow.outer.dst_ip)
        result.append(row)
    result.sort(key=lambda f: (f["link"], f["first_ts_us"], f["src_ip"], f["dst_ip"], f["src_port"], f["dst_port"]))
    return result


def jobs(cap: Capture, c: _Columns) -> dict[str, Any]:
    iteration = cap.emissions.iteration[cap.records.packet]
    result = {}
    for name, job in cap.jobs.items():
        mine = np.isin(c.flow, job.flows) & c.data & (iteration >= 0)
        numbers, inverse = np.unique(iteration[mine], return_inverse=True)
        first = np.full(len(numbers), np.iinfo(np.int64).max)
        last = np.zeros(len(numbers), dtype=np.int64)
        np.minimum.at(first, inverse, c.ts[mine])
        np.maximum.at(last, inverse, c.ts[mine])
        iterations = [{"iteration": int(k), "start_us": _us(t0), "end_us": _us(t1),
                       "allreduce_ms": round(float(t1 - t0) / 1e6, 3)}
                      for k, t0, t1 in zip(numbers.tolist(), first.tolist(), last.tolist(), strict=True)]
        result[name] = {"hosts": [h.ip4 for h in job.hosts], "period_ms": job.period_ms, "iterations": iterations}
    return result


def fast_recovery(cap: Capture, c: _Columns, down: LinkDown) -> dict[str, Any] | None:
    """DESIGN.md section 6: ts = last packet on the link before it falls silent (or oper-down if first)."""
    on_link = c.link == down.link
    before = on_link & (cap.records.t_ns < down.t_down)
    if not before.any():
        return None
    ts = min(int(c.ts[before].max()), down.t_down)
    window = on_link & (c.ts >= ts - AFFECTED_WINDOW_NS) & (c.ts <= ts)
    keys, counts = np.unique(c.key[window], return_counts=True)
    affected = keys[counts >= AFFECTED_MIN_PACKETS]
    fabric_link = cap.fabric.links[down.link]
    leaf_links = [link.index for link in cap.fabric.links if link.leaf == fabric_link.leaf]
    after = np.isin(c.link, leaf_links) & (c.ts > ts)
    local: list[float] = []  # ms from the failure to the flow's first packet elsewhere, by direction
    remote: list[float] = []
    recovered, lost = 0, 0
    interrupted, resumed, returned = 0, [], []
    for key in affected:
        rows = np.flatnonzero(window & (c.key == key))
        flow = cap.flows[int(c.flow[rows[0]])]
        direction = _direction(cap, fabric_link.id, flow)
        later = np.flatnonzero(after & (c.key == key)
                               & (cap.records.hop == (FIRST_HOP if direction == "up" else SECOND_HOP)))
        if direction == "unknown" or len(later) == 0:
            continue
        back = int(c.ts[later[0]]) - ts
        if c.link[later[0]] == down.link:  # idle through the outage, back on the repaired link
            returned.append(_flow_brief(flow, direction, back))
            continue
        recovered += 1
        if _interrupted(cap, c, rows[-1], later[0]):
            interrupted += 1
            (local if direction == "up" else remote).append(back / 1e6)
        else:  # its burst had ended; the next one took another link
            resumed.append(_flow_brief(flow, direction, back))
        if c.data[rows[-1]]:
            lost += int((c.psn[later[0]] - c.psn[rows[-1]] - 1) % PSN_MOD)
    local_ms = round(max(local), 3) if local else None
    remote_ms = round(max(remote), 3) if remote else None
    measured = [v for v in (local_ms, remote_ms) if v is not None]
    event = {
        "kind": "fast_recovery", "link": fabric_link.id, "ts_us": _us(ts), "failure_us": _us(down.t_down),
        "local_convergence_ms": local_ms, "remote_convergence_ms": remote_ms,
        "convergence_ms": max(measured) if measured else None,
        "flows_affected": len(affected), "flows_recovered": recovered, "packets_lost": lost,
        "configured_local_convergence_ms": down.local_ns / 1e6,
        "configured_remote_convergence_ms": down.remote_ns / 1e6,
    }
    if cap.scenario.incident_truth:
        event |= {"flows_interrupted": interrupted, "resumed_after_idle": resumed, "returned_after_repair": returned}
    return event


def _flow_brief(flow: Flow, direction: str, back_ns: int) -> dict[str, Any]:
    return {"src_ip": flow.src_ip, "dst_ip": flow.dst_ip, "src_port": flow.src_port, "dst_port": flow.dst_port,
            "roce_qp": flow.roce_qp, "direction": direction, "back_ms": round(back_ns / 1e6, 3)}


def _interrupted(cap: Capture, c: _Columns, last_row: int, next_row: int) -> bool:
    """Whether the failure cut the flow (DESIGN.md section 6) rather than finding it idle. A RoCE data
    flow was cut unless its last packet on the failed link ended a message (LAST/ONLY) and its first
    packet elsewhere follows it without a PSN skipped. Another flow (ACK, TCP, UDP) was cut when packets
    it sent in between were lost, or when it came back within the affected window (its own spacing)."""
    if c.data[last_row] and c.data[next_row]:
        ended = int(c.opcode[last_row]) in MESSAGE_END_OPCODES
        return not ended or int((c.psn[next_row] - c.psn[last_row] - 1) % PSN_MOD) > 0
    sent = np.flatnonzero(cap.emissions.flow == c.flow[last_row])
    before, after = int(cap.records.packet[last_row]), int(cap.records.packet[next_row])
    lost = bool(((sent > before) & (sent < after)).any())
    return lost or int(c.ts[next_row] - c.ts[last_row]) <= AFFECTED_WINDOW_NS


def congestion(cap: Capture, c: _Columns, number: int, ep: Episode) -> dict[str, Any] | None:
    hop = FIRST_HOP if ep.up else SECOND_HOP
    here = (c.link == ep.link) & (cap.records.hop == hop)
    marked = here & cap.marks.marked_here & (cap.marks.episode == number)
    if not marked.any():
        return None
    ts, ts_end = int(c.ts[marked].min()), int(c.ts[marked].max())
    capable = here & c.roce & c.ect & (c.ts >= ts // CE_BIN_NS * CE_BIN_NS) & (c.ts < (ts_end // CE_BIN_NS + 1)
                                                                             * CE_BIN_NS)
    bins, inverse = np.unique(c.ts[capable] // CE_BIN_NS, return_inverse=True)
    ect = np.bincount(inverse, minlength=len(bins))
    ce = np.bincount(inverse, weights=c.ce[capable], minlength=len(bins))
    full = ect >= CE_BIN_MIN_PACKETS
    peak = float((ce[full] / ect[full]).max()) if full.any() else 0.0
    cnp_rows = np.flatnonzero(cap.cnp_episode == number)
    cnps = int(np.isin(cnp_rows, cap.records.packet).sum())
    pauses = int((cap.emissions.flow[cap.records.packet] == ep.pfc_flow).sum())
    job_names = sorted({cap.flows[int(f)].job for f in np.unique(c.flow[marked])} - {""})
    return {
        "kind": "congestion", "link": cap.fabric.links[ep.link].id, "direction": "up" if ep.up else "down",
        "ts_us": _us(ts), "ts_end_us": _us(ts_end), "peak_ce_ratio": round(peak, 4), "ce": int(marked.sum()),
        "cnp": cnps, "pfc_pauses": pauses, "jobs": job_names,
        "configured_peak_ce_ratio": ep.fault.params["peak_ce_ratio"], "configured_stretch": ep.fault.params["stretch"],
    }


def slowdowns(cap: Capture, c: _Columns, job_truth: dict[str, Any]) -> list[dict[str, Any]]:
    """One collective_slowdown per congestion fault and job it stretches: the job's data crosses the
    congested link and direction during the episode, and the iterations starting in it are listed with
    their all-reduce times against the job's baseline (the median of its iterations outside every episode)."""
    events: list[dict[str, Any]] = []
    spans = [(_us(ep.start), _us(ep.end)) for ep in cap.episodes]
    for name, job in cap.jobs.items():
        iterations = job_truth[name]["iterations"]
        normal = [i["allreduce_ms"] for i in iterations
                  if not any(start <= i["start_us"] < end for start, end in spans)]
        if not normal:
            continue
        baseline = float(np.median(normal))
        mine = np.isin(c.flow, job.flows) & c.data
        for ep, (start, end) in zip(cap.episodes, spans, strict=True):
            hop = FIRST_HOP if ep.up else SECOND_HOP
            crosses = mine & (c.link == ep.link) & (cap.records.hop == hop) & (c.ts >= ep.start) & (c.ts < ep.end)
            during = [i for i in iterations if start <= i["start_us"] < end]
            if ep.fault.params["stretch"] <= 1.0 or not crosses.any() or not during:
                continue
            worst = max(i["allreduce_ms"] for i in during)
            events.append({
                "kind": "collective_slowdown", "job": name, "link": cap.fabric.links[ep.link].id,
                "direction": "up" if ep.up else "down", "ts_us": during[0]["start_us"],
                "ts_end_us": during[-1]["end_us"], "iterations": [i["iteration"] for i in during],
                "allreduce_ms": [i["allreduce_ms"] for i in during], "baseline_ms": round(baseline, 3),
                "peak_ratio": round(worst / baseline, 3), "configured_stretch": ep.fault.params["stretch"],
            })
    return events


def link_events(cap: Capture, down: LinkDown) -> list[dict[str, Any]]:
    link = cap.fabric.links[down.link].id
    events: list[dict[str, Any]] = [{"kind": "link_down", "link": link, "ts_us": _us(down.t_down)}]
    if down.t_up < cap.scenario.end_ns:
        events.append({"kind": "link_up", "link": link, "ts_us": _us(down.t_up)})
        if down.fault.kind == "link_flap":
            events.append({"kind": "link_flap", "link": link, "ts_us": _us(down.t_down), "ts_end_us": _us(down.t_up)})
    return events


def uplinks(cap: Capture, c: _Columns) -> np.ndarray:
    """Per record: its fabric link index when the collector counts it `up` (source behind the link's leaf),
    -1 otherwise; direction is judged once per flow and link, as for the flow rows."""
    n_flows = len(cap.flows)
    groups, inverse = np.unique(c.link * n_flows + c.flow, return_inverse=True)
    up = np.zeros(len(groups), dtype=bool)
    for g, group in enumerate(groups.tolist()):
        link, flow = cap.fabric.links[group // n_flows], cap.flows[group % n_flows]
        up[g] = _direction(cap, link.id, flow) == "up"
    return np.where(up[inverse], c.link, -1)


def ground_truth(cap: Capture, imbalance: ImbalanceRule) -> dict[str, Any]:
    """Every truth the capture's consumers check against; `imbalance` is the ECMP detector's parameters."""
    c = _Columns(cap)
    events: list[dict[str, Any]] = []
    for down in cap.downs:
        recovery = fast_recovery(cap, c, down)
        events += ([recovery] if recovery else []) + link_events(cap, down)
    for number, ep in enumerate(cap.episodes):
        episode = congestion(cap, c, number, ep)
        if episode:
            events.append(episode)
    injected = {f.params["leaf"]: (f.params["spine"], f.params["share"])
                for f in cap.scenario.faults if f.kind == "ecmp_imbalance"}
    links = [(link.id, cap.topology.link(link.id).leaf) for link in cap.fabric.links]
    events += imbalance_events(c.ts, c.wire, uplinks(cap, c), links, injected, imbalance)
    job_truth = jobs(cap, c)
    if cap.scenario.incident_truth:
        events += slowdowns(cap, c, job_truth)
    events.sort(key=lambda e: (e.get("ts_us", 0), e["kind"]))
    apps = Counter(cap.flows[int(f)].app for f in c.flow)
    s = cap.scenario
    return {
        "scenario": s.name,
        "seed": cap.seed,
        "fabric": s.fabric.name,
        "start_us": _us(s.start_ns),
        "duration_ms": s.duration_ns / 1e6,
        "snaplen": s.capture.snaplen,
        "erspan_type": s.capture.erspan_type,
        "ts_resolution": s.capture.ts_resolution,
        "packets": len(cap.records),
        "erspan_sessions": sorted({cap.fabric.links[int(link)].session for link in np.unique(c.link)}),
        "apps": dict(sorted(apps.items())),
        "ecn_ce": int(c.ce.sum()),
        "cnp": int(c.cnp.sum()),
        "flows": flows(cap, c),
        "jobs": job_truth,
        "events": events,
    }
