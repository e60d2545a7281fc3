"""Link-local control traffic on every leaf-spine link, both ends: BGP keepalives and BFD between
the link's /31 addresses (direction unknown), LLDP, and ARP for the BGP neighbour."""

from __future__ import annotations

from typing import TypedDict

import numpy as np
from scapy.layers.inet import IP

from simulator import frames
from simulator.context import Context, Stretch
from simulator.fabric import Fabric, FabricLink
from simulator.flows import Flow
from simulator.scenario import Item
from simulator.templates import TemplateTable

BGP_PORT = 179
BFD_PORT = 3784
NO_IP = "::"


class Where(TypedDict):
    """The link a control flow stays on and which end sends it (Flow's link-local fields)."""

    link: int
    from_leaf: bool


class ControlTraffic:
    """One control protocol on every link; each end sends every `interval_ms` with its own phase."""

    def __init__(self, item: Item, ctx: Context, templates: TemplateTable) -> None:
        self.item = item
        self.senders: list[tuple[int, int]] = []  # (flow, template)
        for link in ctx.fabric.links:
            for from_leaf in (True, False):
                self.senders.append(self._sender(ctx, templates, link, from_leaf))

    def _sender(self, ctx: Context, templates: TemplateTable, link: FabricLink, from_leaf: bool) -> tuple[int, int]:
        kind = self.item.kind
        mine, peer = (link.leaf_ip, link.spine_ip) if from_leaf else (link.spine_ip, link.leaf_ip)
        mac, peer_mac = ((Fabric.leaf_mac(link.leaf), Fabric.spine_mac(link.spine)) if from_leaf
                         else (Fabric.spine_mac(link.spine), Fabric.leaf_mac(link.leaf)))
        where = Where(link=link.index, from_leaf=from_leaf)
        if kind == "bgp":
            leaf_port = 40000 + link.index
            ports = (leaf_port, BGP_PORT) if from_leaf else (BGP_PORT, leaf_port)
            flow = Flow(mine, peer, *ports, 6, app="bgp", traffic_class="control", dscp=48, **where)
            packet = frames.tcp(flow, mac, peer_mac, frames.bgp_keepalive(), tos=48 << 2)
            packet[IP].ttl = 1
        elif kind == "bfd":
            flow = Flow(mine, peer, 49152 + link.index, BFD_PORT, 17, app="bfd", traffic_class="control", dscp=48,
                        **where)
            packet = frames.udp(flow, mac, peer_mac, frames.bfd_control(link.index + 1 + 1000 * (not from_leaf),
                                                                        link.index + 1 + 1000 * from_leaf), 48 << 2)
            packet[IP].ttl = 255
        elif kind == "lldp":
            flow = Flow(NO_IP, NO_IP, 0, frames.ETH_LLDP, 0, app="lldp", traffic_class="control", **where)
            device = f"leaf{link.leaf + 1}" if from_leaf else f"spine{link.spine + 1}"
            packet = frames.lldp(mac, device, link.leaf_port if from_leaf else link.spine_port)
        else:
            flow = Flow(mine, peer, 0, frames.ETH_ARP, 0, app="arp", traffic_class="control", **where)
            packet = frames.arp(mac, "ff:ff:ff:ff:ff:ff" if from_leaf else peer_mac, mine, peer, reply=not from_leaf)
        return ctx.flows.add(flow), templates.add(packet)

    def emit(self, ctx: Context, stretch: Stretch) -> None:
        interval = round(self.item.params["interval_ms"] * 1e6)
        first = ctx.ms(self.item.params["start_ms"])
        until = ctx.until(self.item)
        for flow, template in self.senders:
            t = first + int(ctx.rng.integers(0, interval)) + np.arange(0, until - first, interval)
            t = t[t < until]
            ctx.emissions.add(t, flow, template)
