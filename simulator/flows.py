"""Flows of a synthetic capture: one per flow key, with the labels the ground truth reports."""

from __future__ import annotations

from dataclasses import dataclass

FlowKey = tuple[str, str, int, int, int, int, int]
NO_LEAF = -1
EPHEMERAL_PORT = 49152


@dataclass(frozen=True, slots=True)
class Flow:
    """A directional flow. Host flows are routed over the fabric; link-local flows (BGP, BFD, LLDP,
    ARP, PFC) stay on `link`, sent by its leaf when `from_leaf`, else by its spine. A tenant flow carried in
    a tunnel (VXLAN) is keyed by its own 5-tuple and `vni`, and `outer` is the VTEP-to-VTEP flow carrying it."""

    src_ip: str
    dst_ip: str
    src_port: int
    dst_port: int
    proto: int
    app: str
    traffic_class: str
    src_leaf: int = NO_LEAF
    dst_leaf: int = NO_LEAF
    vlan: int = 0
    vni: int = 0
    roce_qp: int = 0
    dscp: int = 0
    app_detail: str = ""
    job: str = ""
    link: int = -1
    from_leaf: bool = True
    outer: Flow | None = None

    @property
    def key(self) -> FlowKey:
        return (self.src_ip, self.dst_ip, self.src_port, self.dst_port, self.proto, self.vlan, self.vni)

    @property
    def fabric(self) -> Flow:
        """The flow whose headers the fabric's switches read (ECMP hash, direction): the tunnel's, else this."""
        return self.outer if self.outer is not None else self

    @property
    def routed(self) -> bool:
        return self.link < 0


class FlowTable:
    """Flows by id, and source ports handed out once each so distinct flows never share a key."""

    def __init__(self) -> None:
        self.flows: list[Flow] = []
        self._next_port = EPHEMERAL_PORT

    def add(self, flow: Flow) -> int:
        self.flows.append(flow)
        return len(self.flows) - 1

    def port(self) -> int:
        """A fresh ephemeral port (also used as RoCEv2 UDP source port: per-QP entropy for ECMP)."""
        port = self._next_port
        self._next_port = port + 1 if port < 65535 else EPHEMERAL_PORT
        return port

    def __len__(self) -> int:
        return len(self.flows)

    def __getitem__(self, index: int) -> Flow:
        return self.flows[index]
