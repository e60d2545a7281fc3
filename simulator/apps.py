"""Host-to-host application traffic: storage, checkpoints, rendezvous, management, overlay, unknown.

Each conversation is an opening (handshake-like packets, once) and an exchange (request and
response packets) repeated `exchanges_per_s` times a second, with real protocol headers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

from simulator import frames
from simulator.context import Context, Stretch
from simulator.fabric import Host
from simulator.flows import Flow
from simulator.scenario import Item
from simulator.templates import TemplateTable

# kind -> (app, traffic class, server port, IP protocol)
KINDS: dict[str, tuple[str, str, int, int]] = {
    "nvme_tcp": ("nvme-tcp", "bulk", 4420, 6),
    "nfs": ("nfs", "bulk", 2049, 6),
    "tls": ("tls", "bulk", 443, 6),
    "c10d": ("torch-c10d", "control", 29500, 6),
    "ssh": ("ssh", "interactive", 22, 6),
    "dns": ("dns", "interactive", 53, 17),
    "ntp": ("ntp", "control", 123, 17),
    "ptp": ("ptp", "control", 319, 17),
    "icmp": ("icmp", "control", 0, 1),
    "vxlan": ("vxlan", "interactive", frames.VXLAN_PORT, 17),
    "unknown": ("unknown", "other", 47123, 17),
}
STEP_GAP_NS = 30_000  # spacing of opening packets
SSH_SERVER_BANNER = b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"
SSH_CLIENT_BANNER = b"SSH-2.0-OpenSSH_9.6\r\n"


@dataclass(frozen=True, slots=True)
class Step:
    flow: int
    template: int
    tcp_payload: int  # TCP payload bytes (advances the sequence number), -1 when not TCP
    delay_ns: int = 0


@dataclass
class Conversation:
    opening: list[Step] = field(default_factory=list)
    exchange: list[Step] = field(default_factory=list)


class _Builder:
    """Flows and templates of one conversation between a client and a server host."""

    def __init__(self, ctx: Context, templates: TemplateTable, item: Item, client: Host, server: Host) -> None:
        self.ctx, self.templates, self.item = ctx, templates, item
        self.client, self.server = client, server
        self.app, self.traffic_class, self.server_port, self.proto = KINDS[item.kind]
        if item.kind == "unknown":
            self.server_port = item.params["port"]
        self.ipv6 = item.params["ipv6"]
        self.vlan = item.params["vlan"]

    def flow(self, to_server: bool, src_port: int, dst_port: int, *, detail: str = "", vni: int = 0) -> Flow:
        a, b = (self.client, self.server) if to_server else (self.server, self.client)
        src, dst = (a.ip6, b.ip6) if self.ipv6 else (a.ip4, b.ip4)
        return Flow(src, dst, src_port, dst_port, self.proto, app=self.app, traffic_class=self.traffic_class,
                    src_leaf=a.leaf, dst_leaf=b.leaf, vlan=self.vlan, vni=vni, app_detail=detail)

    def pair(self, *, detail: str = "", client_port: int | None = None) -> tuple[Flow, Flow]:
        port = self.ctx.flows.port() if client_port is None else client_port
        return (self.flow(True, port, self.server_port, detail=detail), self.flow(False, self.server_port, port))

    def macs(self, flow: Flow) -> tuple[str, str]:
        from_client = flow.src_ip in (self.client.ip4, self.client.ip6)
        return (self.client.mac, self.server.mac) if from_client else (self.server.mac, self.client.mac)

    def tcp(self, flow_id: int, flow: Flow, payload: bytes, delay_us: float = 0, flags: str = "PA") -> Step:
        packet = frames.tcp(flow, *self.macs(flow), payload, flags)
        return Step(flow_id, self.templates.add(packet), len(payload), round(delay_us * 1e3))

    def udp(self, flow_id: int, flow: Flow, payload: Packet | bytes, delay_us: float = 0) -> Step:
        packet = frames.udp(flow, *self.macs(flow), payload)
        return Step(flow_id, self.templates.add(packet), -1, round(delay_us * 1e3))

    def add(self, flow: Flow) -> int:
        return self.ctx.flows.add(flow)


def _filler(rng: np.random.Generator, size: int) -> bytes:
    return rng.integers(0, 256, size, dtype=np.uint8).tobytes()


def _nvme_tcp(b: _Builder, size: int) -> Conversation:
    c2s, s2c = b.pair()
    up, down = b.add(c2s), b.add(s2c)
    icreq = frames.nvme_tcp_pdu(0x00, bytes(120))
    icresp = frames.nvme_tcp_pdu(0x01, bytes(120))
    sqe = bytes([0x01, 0, 0x12, 0x34]) + bytes(60)  # NVMe Write, command id 0x3412
    return Conversation(
        opening=[b.tcp(up, c2s, icreq), b.tcp(down, s2c, icresp)],
        exchange=[
            b.tcp(up, c2s, frames.nvme_tcp_pdu(0x04, sqe)),
            b.tcp(up, c2s, frames.nvme_tcp_pdu(0x06, bytes([0x12, 0x34, 0, 0]) + bytes(12),
                                               _filler(b.ctx.rng, size)), 5),
            b.tcp(down, s2c, frames.nvme_tcp_pdu(0x05, bytes(16)), 40),
        ],
    )


def _nfs(b: _Builder, size: int) -> Conversation:
    c2s, s2c = b.pair()
    up, down = b.add(c2s), b.add(s2c)
    xid = int(b.ctx.rng.integers(1, 2**31))
    handle = bytes(4) + bytes(range(28))
    args = (len(handle).to_bytes(4, "big") + handle + bytes(8) + size.to_bytes(4, "big") + bytes(4)
            + size.to_bytes(4, "big") + _filler(b.ctx.rng, size))
    return Conversation(exchange=[
        b.tcp(up, c2s, frames.onc_rpc_call(xid, 7, args)),
        b.tcp(down, s2c, frames.onc_rpc_reply(xid, _write_reply(size)), 60),
    ])


def _write_reply(size: int) -> bytes:
    """WRITE3resok: status OK, empty wcc_data, count, committed FILE_SYNC, write verifier."""
    return bytes(12) + size.to_bytes(4, "big") + (2).to_bytes(4, "big") + bytes(8)


def _tls(b: _Builder, size: int) -> Conversation:
    sni = b.item.params["sni"]
    c2s, s2c = b.pair(detail=sni)
    up, down = b.add(c2s), b.add(s2c)
    rng = b.ctx.rng
    return Conversation(
        opening=[b.tcp(up, c2s, frames.tls_client_hello(sni, _filler(rng, 32))),
                 b.tcp(down, s2c, frames.tls_server_hello(_filler(rng, 32)))],
        exchange=[b.tcp(up, c2s, frames.tls_record(23, _filler(rng, size))),
                  b.tcp(down, s2c, b"", 30, flags="A")],
    )


def _c10d(b: _Builder, size: int) -> Conversation:
    c2s, s2c = b.pair()
    up, down = b.add(c2s), b.add(s2c)
    key = b"/torch/rendezvous/worker_heartbeat"
    return Conversation(exchange=[b.tcp(up, c2s, b"\x03" + len(key).to_bytes(8, "little") + key),
                                  b.tcp(down, s2c, b"\x01" + bytes(8), 50)])


def _ssh(b: _Builder, size: int) -> Conversation:
    c2s, s2c = b.pair()
    up, down = b.add(c2s), b.add(s2c)
    rng = b.ctx.rng
    return Conversation(
        opening=[b.tcp(down, s2c, SSH_SERVER_BANNER), b.tcp(up, c2s, SSH_CLIENT_BANNER),
                 b.tcp(up, c2s, frames.ssh_kexinit(_filler(rng, 16))),
                 b.tcp(down, s2c, frames.ssh_kexinit(_filler(rng, 16))),
                 b.tcp(up, c2s, frames.ssh_packet(b"\x15")), b.tcp(down, s2c, frames.ssh_packet(b"\x15"))],
        exchange=[b.tcp(up, c2s, _filler(rng, 36)), b.tcp(down, s2c, _filler(rng, 36 + 16 * (size // 64)), 200)],
    )


def _dns(b: _Builder, size: int) -> Conversation:
    c2s, s2c = b.pair()
    up, down = b.add(c2s), b.add(s2c)
    name = f"node{b.server.leaf + 1}.train.cluster.local"
    ident = int(b.ctx.rng.integers(1, 65535))
    return Conversation(exchange=[b.udp(up, c2s, frames.dns_query(name, ident)),
                                  b.udp(down, s2c, frames.dns_answer(name, ident, b.server.ip4), 80)])


def _ntp(b: _Builder, size: int) -> Conversation:
    c2s, s2c = b.pair(client_port=123)
    up, down = b.add(c2s), b.add(s2c)
    start = b.ctx.scenario.start_ns / 1e9
    return Conversation(exchange=[b.udp(up, c2s, frames.ntp(3, start)), b.udp(down, s2c, frames.ntp(4, start), 40)])


def _ptp(b: _Builder, size: int) -> Conversation:
    """Grandmaster (the server) sends Sync on 319 and Follow_Up on 320; the client asks Delay_Req."""
    event = b.add(b.flow(False, 319, 319))
    general = b.add(b.flow(False, 320, 320))
    request = b.add(b.flow(True, 319, 319))
    flows = b.ctx.flows
    return Conversation(exchange=[
        b.udp(event, flows[event], frames.ptp(0, 1)),
        b.udp(general, flows[general], frames.ptp(8, 1), 20),
        b.udp(request, flows[request], frames.ptp(1, 1), 300),
        b.udp(general, flows[general], frames.ptp(9, 1), 340),
    ])


def _icmp(b: _Builder, size: int) -> Conversation:
    request, reply = b.flow(True, 0, 0), b.flow(False, 0, 0)
    up, down = b.add(request), b.add(reply)
    payload = bytes(range(56 if size > 56 else size))
    return Conversation(exchange=[
        Step(up, b.templates.add(frames.icmp_echo(request, *b.macs(request), False, payload)), -1),
        Step(down, b.templates.add(frames.icmp_echo(reply, *b.macs(reply), True, payload)), -1, 30_000),
    ])


def _vxlan(b: _Builder, size: int) -> Conversation:
    """HTTP between two tenant VMs, carried between the hosts' VTEPs (UDP 4789, VNI from the scenario). The
    tenant flows are the flows (inner 5-tuple + VNI); the fabric routes and marks their VTEP-to-VTEP flows."""
    vni = b.item.params["vni"]
    vtep_c2s = b.flow(True, b.ctx.flows.port(), frames.VXLAN_PORT, vni=vni)
    vtep_s2c = b.flow(False, b.ctx.flows.port(), frames.VXLAN_PORT, vni=vni)
    vm_client, vm_server = f"192.168.{vni % 250}.{b.client.leaf + 10}", f"192.168.{vni % 250}.{b.server.leaf + 100}"
    port = b.ctx.flows.port()
    c2s = dataclasses.replace(vtep_c2s, src_ip=vm_client, dst_ip=vm_server, src_port=port, dst_port=80,
                              proto=frames.IP_TCP, app_detail="inner=http", outer=vtep_c2s)
    s2c = dataclasses.replace(vtep_s2c, src_ip=vm_server, dst_ip=vm_client, src_port=80, dst_port=port,
                              proto=frames.IP_TCP, app_detail="inner=http", outer=vtep_s2c)
    up, down = b.add(c2s), b.add(s2c)
    request = b"GET /v1/metrics HTTP/1.1\r\nHost: metrics.tenant.local\r\nUser-Agent: curl/8.5\r\n\r\n"
    body = bytes(size)
    response = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % size
    inner_up = (Ether(src="02:aa:00:00:00:01", dst="02:aa:00:00:00:02") / IP(src=c2s.src_ip, dst=c2s.dst_ip)
                / TCP(sport=c2s.src_port, dport=c2s.dst_port, flags="PA", seq=1, ack=1) / Raw(request))
    inner_down = (Ether(src="02:aa:00:00:00:02", dst="02:aa:00:00:00:01") / IP(src=s2c.src_ip, dst=s2c.dst_ip)
                  / TCP(sport=s2c.src_port, dport=s2c.dst_port, flags="PA", seq=1, ack=1) / Raw(response + body))
    return Conversation(exchange=[
        Step(up, b.templates.add(frames.vxlan(vtep_c2s, *b.macs(vtep_c2s), inner_up)), len(request)),
        Step(down, b.templates.add(frames.vxlan(vtep_s2c, *b.macs(vtep_s2c), inner_down)), len(response) + size,
             150_000),
    ])


def _unknown(b: _Builder, size: int) -> Conversation:
    c2s, s2c = b.pair()
    up, down = b.add(c2s), b.add(s2c)
    rng = b.ctx.rng
    return Conversation(exchange=[b.udp(up, c2s, _filler(rng, size)), b.udp(down, s2c, _filler(rng, 32), 90)])


_CONVERSATIONS = {
    "nvme_tcp": _nvme_tcp, "nfs": _nfs, "tls": _tls, "c10d": _c10d, "ssh": _ssh, "dns": _dns, "ntp": _ntp,
    "ptp": _ptp, "icmp": _icmp, "vxlan": _vxlan, "unknown": _unknown,
}


class AppTraffic:
    """`flows` conversations of one application kind between random host pairs on different leaves."""

    def __init__(self, item: Item, ctx: Context, templates: TemplateTable) -> None:
        self.item = item
        self.conversations = []
        for _ in range(item.params["flows"]):
            client, server = ctx.host_pair()
            builder = _Builder(ctx, templates, item, client, server)
            self.conversations.append(_CONVERSATIONS[item.kind](builder, item.params["payload"]))

    def emit(self, ctx: Context, stretch: Stretch) -> None:
        rate = self.item.params["exchanges_per_s"]
        interval = 1e9 / rate
        first = ctx.ms(self.item.params["start_ms"])
        until = ctx.until(self.item)
        for conversation in self.conversations:
            t0 = first + int(ctx.rng.uniform(0, interval))
            n = max(0, int((until - t0 - len(conversation.opening) * STEP_GAP_NS) // interval))
            begin = t0 + len(conversation.opening) * STEP_GAP_NS + (np.arange(n) * interval).astype(np.int64)
            begin += ctx.rng.integers(0, int(interval * 0.2) + 1, n)
            steps = conversation.opening + conversation.exchange
            times = [np.array([t0 + i * STEP_GAP_NS], dtype=np.int64) for i in range(len(conversation.opening))]
            times += [begin + step.delay_ns for step in conversation.exchange]
            t = np.concatenate(times) if times else np.zeros(0, np.int64)
            sizes = [len(column) for column in times]
            flow = np.repeat([s.flow for s in steps], sizes).astype(np.int32)
            template = np.repeat([s.template for s in steps], sizes).astype(np.int32)
            payload = np.repeat([s.tcp_payload for s in steps], sizes).astype(np.int64)
            keep = t < until
            t, flow, template, payload = t[keep], flow[keep], template[keep], payload[keep]
            seq, ack = _tcp_numbers(ctx, t, flow, payload)
            ctx.emissions.add(t, flow, template, seq=seq, ack=ack)


def _tcp_numbers(ctx: Context, t: np.ndarray, flow: np.ndarray,
                 payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TCP sequence numbers (a random start plus the payload bytes sent before, in time order) and
    acknowledgments (the peer's start plus what the peer sent before) of a two-way conversation."""
    seq = np.full(len(t), -1, dtype=np.int64)
    ack = np.full(len(t), -1, dtype=np.int64)
    sides = [int(flow_id) for flow_id in np.unique(flow[payload >= 0])]
    streams = {}
    for flow_id in sides:
        rows = np.flatnonzero((flow == flow_id) & (payload >= 0))
        rows = rows[np.argsort(t[rows], kind="stable")]
        start = int(ctx.rng.integers(0, 2**32))
        sent = np.cumsum(payload[rows])
        seq[rows] = (start + sent - payload[rows]) % (1 << 32)
        streams[flow_id] = (rows, start, sent)
    if len(sides) == 2:
        for mine, peer in (sides, sides[::-1]):
            rows, _, _ = streams[mine]
            peer_rows, peer_start, peer_sent = streams[peer]
            before = np.searchsorted(t[peer_rows], t[rows], side="left")
            received = np.where(before > 0, peer_sent[np.maximum(before - 1, 0)], 0)
            ack[rows] = (peer_start + received) % (1 << 32)
    return seq, ack
