"""The leaf-spine fabric a scenario describes: names, addresses, ports, mirror sessions.

Numbering is fixed so the sample fabric derives exactly samples/topology.yaml: leafN hosts
10.0.N.0/24 and fd00:0:0:N::/64, leafN port Ethernet{48+s} faces spineS port Ethernet{N}, and the
ERSPAN session of link leafN-spineS is 10*N+S.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.topology import Topology, load_topology
from simulator.scenario import FabricSpec

HOST_BASE = 10  # first host address in each leaf's prefix


@dataclass(frozen=True, slots=True)
class Host:
    leaf: int  # 0-based leaf index
    ip4: str
    ip6: str
    mac: str


@dataclass(frozen=True, slots=True)
class FabricLink:
    """A leaf-spine link with the addresses of its two ends (a /31 for BGP and BFD)."""

    index: int
    id: str
    leaf: int
    spine: int
    leaf_port: str
    spine_port: str
    session: int
    leaf_ip: str
    spine_ip: str


class Fabric:
    """Derived from a FabricSpec; every name and address the generator and the topology use."""

    def __init__(self, spec: FabricSpec) -> None:
        self.spec = spec
        self.leaves = [f"leaf{i}" for i in range(1, spec.leaves + 1)]
        self.spines = [f"spine{i}" for i in range(1, spec.spines + 1)]
        self.hosts = [
            Host(
                leaf=leaf,
                ip4=f"10.0.{leaf + 1}.{HOST_BASE + h}",
                ip6=f"fd00:0:0:{leaf + 1:x}::{HOST_BASE + h:x}",
                mac=f"02:00:00:{leaf + 1:02x}:{h // 256:02x}:{h % 256:02x}",
            )
            for leaf in range(spec.leaves)
            for h in range(spec.hosts_per_leaf)
        ]
        self.links = [
            FabricLink(
                index=leaf * spec.spines + spine,
                id=f"leaf{leaf + 1}-spine{spine + 1}",
                leaf=leaf,
                spine=spine,
                leaf_port=f"Ethernet{49 + spine}",
                spine_port=f"Ethernet{leaf + 1}",
                session=10 * (leaf + 1) + spine + 1,
                leaf_ip=f"10.255.{leaf + 1}.{2 * spine}",
                spine_ip=f"10.255.{leaf + 1}.{2 * spine + 1}",
            )
            for leaf in range(spec.leaves)
            for spine in range(spec.spines)
        ]

    def link_index(self, leaf: int, spine: int) -> int:
        return leaf * self.spec.spines + spine

    @staticmethod
    def leaf_mac(leaf: int) -> str:
        return f"02:00:01:{leaf + 1:02x}:00:01"

    @staticmethod
    def spine_mac(spine: int) -> str:
        return f"02:00:02:{spine + 1:02x}:00:01"

    @staticmethod
    def loopback(leaf: int) -> str:
        """The leaf's loopback: the outer source of its ERSPAN mirrors."""
        return f"10.254.0.{leaf + 1}"

    def topology_yaml(self, *, mirrored: bool = True) -> str:
        """The fabric as a DESIGN.md section 4 topology file; without its ERSPAN mirrors when not `mirrored`
        (a dashboard-scale fabric of 1,024 links has more links than 10*N+S session numbers can name)."""
        spec = self.spec
        speed = f"{spec.speed_gbps:g}"
        lines = [
            f"# Derived from a scenario's fabric: {spec.leaves} leaves x {spec.spines} spines.",
            f"fabric: {spec.name}",
            f"speed_gbps: {speed}",
            f"spines: [{', '.join(self.spines)}]",
            "leaves:",
        ]
        lines += [f'  leaf{i}: {{hosts: ["10.0.{i}.0/24", "fd00:0:0:{i:x}::/64"]}}' for i in range(1, spec.leaves + 1)]
        lines.append("links:")
        lines += [
            f"  - {{leaf: leaf{link.leaf + 1}, spine: spine{link.spine + 1}, leaf_port: {link.leaf_port}, "
            f"spine_port: {link.spine_port}, speed_gbps: {speed}}}"
            for link in self.links
        ]
        if mirrored:
            lines.append("mirrors:")
            lines += [f"  - {{erspan_session: {link.session}, link: {link.id}}}" for link in self.links]
        lines.append("sflow:")
        lines += [
            f"  - {{agent: 192.0.2.{link.leaf + 1}, ifindex: {49 + link.spine}, link: {link.id}}}"
            for link in self.links
        ]
        lines.append("counters:")
        for link in self.links:
            lines.append(f"  - {{device: leaf{link.leaf + 1}, ifname: {link.leaf_port}, link: {link.id}}}")
            lines.append(f"  - {{device: spine{link.spine + 1}, ifname: {link.spine_port}, link: {link.id}}}")
        return "\n".join(lines) + "\n"

    def write_topology(self, path: Path, *, mirrored: bool = True) -> Topology:
        """Write the topology file and return it as the loader reads it (so it is valid by construction)."""
        path.write_text(self.topology_yaml(mirrored=mirrored), encoding="utf-8")
        return load_topology(path)
