"""RoCEv2 traffic: ring all-reduce jobs (RC RDMA WRITE + ACK) and pipeline p2p (RC SEND), sent in
periodic bursts; each QP's PSN keeps counting, so packets lost in the fabric show as PSN gaps."""

from __future__ import annotations

from itertools import pairwise

import numpy as np

from simulator import frames
from simulator.context import Context, Job, Stretch
from simulator.fabric import Host
from simulator.flows import Flow
from simulator.scenario import Item
from simulator.templates import OPCODE_ACK, OPCODE_CNP, TemplateTable

WRITE = {"first": 0x06, "middle": 0x07, "last": 0x08, "only": 0x0A}
SEND = {"first": 0x00, "middle": 0x01, "last": 0x02, "only": 0x04}
CNP_DSCP = 48
ACK_DELAY_NS = (4000, 9000)  # responder ACK after the message's last packet, path included
PSN_SPACE = 1 << 24


class QueuePair:
    """One RC connection: data flow requester->responder, ACK and CNP flows back, their templates."""

    def __init__(self, ctx: Context, templates: TemplateTable, requester: Host, responder: Host, item: Item,
                 job: str) -> None:
        p = item.params
        self.opcodes = WRITE if item.kind == "allreduce" else SEND
        traffic_class = "collective" if item.kind == "allreduce" else "p2p"
        rng = ctx.rng
        local_qpn, remote_qpn = (int(q) for q in rng.integers(0x100, 0xFFFFFF, 2))
        self.psn0 = int(rng.integers(0, PSN_SPACE // 2))
        common = {"dst_port": frames.ROCE_PORT, "proto": 17, "dscp": p["dscp"]}
        data = Flow(requester.ip4, responder.ip4, ctx.flows.port(), app="rocev2", traffic_class=traffic_class,
                    src_leaf=requester.leaf, dst_leaf=responder.leaf, roce_qp=remote_qpn, job=job, **common)
        ack = Flow(responder.ip4, requester.ip4, ctx.flows.port(), app="rocev2", traffic_class=traffic_class,
                   src_leaf=responder.leaf, dst_leaf=requester.leaf, roce_qp=local_qpn, job=job, **common)
        cnp = Flow(responder.ip4, requester.ip4, ctx.flows.port(), frames.ROCE_PORT, 17, app="rocev2-cnp",
                   traffic_class="control", src_leaf=responder.leaf, dst_leaf=requester.leaf, roce_qp=local_qpn,
                   dscp=CNP_DSCP)
        self.data, self.ack, cnp_id = (ctx.flows.add(f) for f in (data, ack, cnp))
        payload = bytes((i * 7 + remote_qpn) & 0xFF for i in range(p["payload"]))
        size = p["payload"] * p["message_packets"]
        self.template: dict[str, int] = {}
        for role, opcode in self.opcodes.items():
            header = frames.bth(opcode, remote_qpn, 0, ackreq=role in ("last", "only"))
            if role in ("first", "only") and item.kind == "allreduce":
                header += frames.reth(0x7F00_0000_0000 + remote_qpn * 4096, 0x1000 + local_qpn & 0xFFFF, size)
            packet, bth_off = frames.roce(data, requester.mac, responder.mac, opcode, header + payload)
            self.template[role] = templates.add(packet, bth_off=bth_off, opcode=opcode)
        packet, bth_off = frames.roce(ack, responder.mac, requester.mac, OPCODE_ACK,
                                      frames.bth(OPCODE_ACK, local_qpn, 0) + frames.aeth(1))
        self.ack_template = templates.add(packet, bth_off=bth_off, opcode=OPCODE_ACK)
        packet, bth_off = frames.roce(cnp, responder.mac, requester.mac, OPCODE_CNP,
                                      frames.bth(OPCODE_CNP, local_qpn, 0, becn=True) + bytes(16))
        ctx.cnp_of[self.data] = (cnp_id, templates.add(packet, bth_off=bth_off, opcode=OPCODE_CNP))


class RdmaGroup:
    """A ring all-reduce job (every host writes to the next) or a p2p pipeline (stage i sends to i+1)."""

    def __init__(self, item: Item, ctx: Context, templates: TemplateTable) -> None:
        p = item.params
        self.item = item
        hosts = ctx.spread_hosts(p["hosts"])
        self.job = p["job"] if item.kind == "allreduce" else ""
        pairs = ([(hosts[i], hosts[(i + 1) % len(hosts)]) for i in range(len(hosts))] if item.kind == "allreduce"
                 else list(pairwise(hosts)))
        self.qps = [QueuePair(ctx, templates, a, b, item, self.job)
                    for a, b in pairs for _ in range(p["qps_per_pair"])]
        if self.job:
            ctx.jobs[self.job] = Job(self.job, hosts, p["period_ms"], [qp.data for qp in self.qps])

    def emit(self, ctx: Context, stretch: Stretch) -> None:
        p = self.item.params
        period, burst, gap = round(p["period_ms"] * 1e6), round(p["burst_ms"] * 1e6), p["packet_gap_us"] * 1e3
        first = ctx.ms(p["start_ms"])
        # iterations start until the job's end; the last one runs to completion (a job stops cleanly)
        starts = np.arange(first, ctx.until(self.item), period, dtype=np.int64)
        flows = [qp.data for qp in self.qps]
        factors = np.array([stretch.factor(flows, int(t)) for t in starts])
        per_burst = max(1, int(burst // gap))
        mp = p["message_packets"]
        position = np.arange(per_burst)
        role = np.where(position % mp == 0, 0, np.where((position % mp == mp - 1) | (position == per_burst - 1), 2, 1))
        role[(position % mp == 0) & ((mp == 1) | (position == per_burst - 1))] = 3
        ends_message = role >= 2
        rng = ctx.rng
        for qp in self.qps:
            offset = rng.uniform(0, gap)
            jitter = rng.uniform(0, 0.1 * gap, (len(starts), per_burst))
            t = (starts[:, None] + offset + position[None, :] * gap * factors[:, None] + jitter).astype(np.int64)
            iteration = np.broadcast_to(np.arange(len(starts))[:, None], t.shape)
            roles = np.broadcast_to(role, t.shape)
            keep = t < ctx.scenario.end_ns
            t, iteration, roles = t[keep], iteration[keep], roles[keep]
            psn = (qp.psn0 + np.arange(len(t))) % (1 << 24)
            table = np.array([qp.template[r] for r in ("first", "middle", "last", "only")], dtype=np.int32)
            ctx.emissions.add(t, qp.data, table[roles], psn=psn, iteration=iteration)
            acked = np.broadcast_to(ends_message, keep.shape)[keep]
            t_ack = t[acked] + rng.integers(*ACK_DELAY_NS, int(acked.sum()))
            ctx.emissions.add(t_ack, qp.ack, qp.ack_template, psn=psn[acked])
