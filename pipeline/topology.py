"""The fabric's topology file (DESIGN.md section 4, a contract): leaves, spines, links and how a
mirrored packet, sFlow sample or counter is attributed to a link, and a packet's direction on it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.addresses import IPNetwork, PrefixTable
from pipeline.errors import TopologyError
from pipeline.yamlfile import LineDict, LineList, line_of, load_yaml

DEFAULT_SPEED_GBPS = 400.0
MAX_SPEED_GBPS = 1_000_000.0  # a petabit: anything above is a typo, not a link
DIRECTIONS = ("unknown", "up", "down")
UNKNOWN, UP, DOWN = 0, 1, 2
NO_LINK = -1
ERSPAN_SESSIONS = 1024
VLAN_IDS = 4096

_TOP_KEYS = {"fabric", "speed_gbps", "spines", "leaves", "links", "mirrors", "sflow", "counters"}
_LINK_KEYS = {"leaf", "spine", "leaf_port", "spine_port", "speed_gbps"}
_MIRROR_KINDS = ("erspan_session", "vlan", "interface")


@dataclass(frozen=True, slots=True)
class Link:
    """One leaf-spine link; `id` is `<leaf>-<spine>`, or `<leaf>-<spine>#N` for the Nth parallel link. A
    parallel link is told apart from a line written twice by its ports: the same leaf, spine, leaf_port and
    spine_port twice, or a port used by two links, is an error."""

    id: str
    leaf: str
    spine: str
    leaf_port: str
    spine_port: str
    speed_gbps: float
    index: int


@dataclass(frozen=True, slots=True)
class Leaf:
    name: str
    hosts: tuple[IPNetwork, ...]


@dataclass(frozen=True)
class Topology:
    """A validated topology with lookup tables for attributing packets to links, scalar and vectorised."""

    fabric: str
    speed_gbps: float
    spines: tuple[str, ...]
    leaves: tuple[Leaf, ...]
    links: tuple[Link, ...]
    erspan_sessions: dict[int, str]
    vlans: dict[int, str]
    interfaces: dict[str, str]
    sflow_ports: dict[tuple[str, int], str]
    counter_ports: dict[tuple[str, str], str]
    source: str = ""
    _link_by_id: dict[str, Link] = field(init=False, repr=False)
    _leaf_prefixes: PrefixTable = field(init=False, repr=False, compare=False)
    _link_leaves: np.ndarray = field(init=False, repr=False, compare=False)  # int16: each link's leaf index

    def __post_init__(self) -> None:
        object.__setattr__(self, "_link_by_id", {link.id: link for link in self.links})
        object.__setattr__(self, "_leaf_prefixes", PrefixTable(
            [(network, index) for index, leaf in enumerate(self.leaves) for network in leaf.hosts]))
        positions = {leaf.name: i for i, leaf in enumerate(self.leaves)}
        object.__setattr__(self, "_link_leaves", np.array([positions[link.leaf] for link in self.links],
                                                          dtype=np.int16))

    # -- scalar lookups -------------------------------------------------------------------------
    def link(self, link_id: str) -> Link:
        return self._link_by_id[link_id]

    def link_ids(self) -> list[str]:
        return [link.id for link in self.links]

    def link_for_erspan(self, session: int) -> str | None:
        return self.erspan_sessions.get(session)

    def link_for_vlan(self, vlan: int) -> str | None:
        return self.vlans.get(vlan)

    def link_for_interface(self, name: str) -> str | None:
        return self.interfaces.get(name)

    def link_for_sflow(self, agent: str, ifindex: int) -> str | None:
        return self.sflow_ports.get((str(ipaddress.ip_address(agent)), ifindex))

    def link_for_counter(self, device: str, ifname: str) -> str | None:
        return self.counter_ports.get((device, ifname))

    def leaf_of(self, address: str) -> str | None:
        """The leaf whose host prefixes contain `address`, or None."""
        ip = ipaddress.ip_address(address)
        for leaf in self.leaves:
            if any(ip.version == net.version and ip in net for net in leaf.hosts):
                return leaf.name
        return None

    def direction(self, link_id: str, src: str, dst: str) -> str:
        """`down` if dst is behind the link's leaf, `up` if src is, else `unknown`."""
        leaf = self.link(link_id).leaf
        if self.leaf_of(dst) == leaf:
            return "down"
        if self.leaf_of(src) == leaf:
            return "up"
        return "unknown"

    # -- vectorised lookups ---------------------------------------------------------------------
    def erspan_table(self) -> np.ndarray:
        """int16[1024]: ERSPAN session id -> link index, NO_LINK where unmapped."""
        return self._table(ERSPAN_SESSIONS, self.erspan_sessions)

    def vlan_table(self) -> np.ndarray:
        """int16[4096]: outer VLAN id -> link index, NO_LINK where unmapped."""
        return self._table(VLAN_IDS, self.vlans)

    def _table(self, size: int, mapping: dict[int, str]) -> np.ndarray:
        table = np.full(size, NO_LINK, dtype=np.int16)
        for key, link_id in mapping.items():
            table[key] = self._link_by_id[link_id].index
        return table

    def leaf_index(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """int16 column: index into `leaves` of the leaf each address sits behind, -1 if none."""
        return self._leaf_prefixes.lookup(hi, lo).astype(np.int16)

    def directions(self, link_index: np.ndarray, src_hi: np.ndarray, src_lo: np.ndarray, dst_hi: np.ndarray,
                   dst_lo: np.ndarray) -> np.ndarray:
        """int8 column of UNKNOWN/UP/DOWN given link indexes and the address words of each packet's source and
        destination: down where the destination sits behind the link's leaf, else up where the source does.
        One compiled pass (pipeline.prefix_search), searching an address only when the answer needs it."""
        from pipeline import prefix_search  # numba: only the processes that decode packets search

        out = np.empty(len(link_index), dtype=np.int8)
        src_hi, src_lo, dst_hi, dst_lo = (np.ascontiguousarray(words, dtype=np.uint64)
                                          for words in (src_hi, src_lo, dst_hi, dst_lo))
        mask_hi, mask_lo, fixed_hi, starts, keys, values = self._leaf_prefixes.tables
        prefix_search.directions(np.ascontiguousarray(link_index, dtype=np.int16), self._link_leaves, src_hi, src_lo,
                                 dst_hi, dst_lo, mask_hi, mask_lo, fixed_hi, starts, keys, values, (UNKNOWN, UP, DOWN),
                                 out)
        return out


def load_topology(path: str | Path) -> Topology:
    """Load and validate a topology file; raise TopologyError naming the file, line and reason."""
    doc = load_yaml(path, TopologyError)
    return _Parser(str(path), doc).parse()


class _Parser:
    def __init__(self, source: str, doc: LineDict) -> None:
        self.source = source
        self.doc = doc

    def fail(self, container: LineDict | LineList, key: str | int, reason: str) -> TopologyError:
        return TopologyError(self.source, reason, line=line_of(container, key))

    def parse(self) -> Topology:
        doc = self.doc
        self._no_unknown_keys(doc, _TOP_KEYS, "top level")
        fabric = doc.get("fabric")
        if not isinstance(fabric, str) or not fabric:
            raise self.fail(doc, "fabric", "'fabric' must be a non-empty name")
        speed = self._speed(doc, DEFAULT_SPEED_GBPS)
        spines = self._spines()
        leaves = self._leaves(set(spines))
        links = self._links(leaves, spines, speed)
        by_id = {link.id for link in links}
        erspan, vlans, interfaces = self._mirrors(by_id)
        return Topology(
            fabric=fabric,
            speed_gbps=speed,
            spines=tuple(spines),
            leaves=tuple(leaves),
            links=tuple(links),
            erspan_sessions=erspan,
            vlans=vlans,
            interfaces=interfaces,
            sflow_ports=self._sflow(by_id),
            counter_ports=self._counters(by_id),
            source=self.source,
        )

    def _no_unknown_keys(self, mapping: LineDict, allowed: set[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.fail(mapping, key, f"unknown key '{key}' in {where} (allowed: {', '.join(sorted(allowed))})")

    def _speed(self, mapping: LineDict, default: float) -> float:
        value = mapping.get("speed_gbps", default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_SPEED_GBPS:
            raise self.fail(mapping, "speed_gbps", f"'speed_gbps' must be a positive number up to {MAX_SPEED_GBPS:g}")
        return float(value)

    def _spines(self) -> list[str]:
        spines = self.doc.get("spines")
        if not isinstance(spines, LineList) or not spines:
            raise self.fail(self.doc, "spines", "'spines' must be a non-empty list of names")
        seen: set[str] = set()
        for i, name in enumerate(spines):
            if not isinstance(name, str) or not name:
                raise self.fail(spines, i, "spine names must be non-empty strings")
            if name in seen:
                raise self.fail(spines, i, f"spine '{name}' listed twice")
            seen.add(name)
        return list(spines)

    def _leaves(self, spine_names: set[str]) -> list[Leaf]:
        leaves = self.doc.get("leaves")
        if not isinstance(leaves, LineDict) or not leaves:
            raise self.fail(self.doc, "leaves", "'leaves' must be a non-empty mapping of leaf name to {hosts: [...]}")
        result: list[Leaf] = []
        seen_networks: list[tuple[IPNetwork, str]] = []
        for name, spec in leaves.items():
            if name in spine_names:
                raise self.fail(leaves, name, f"'{name}' is both a leaf and a spine")
            if spec is None:
                spec = LineDict()
                spec.line, spec.key_lines = line_of(leaves, name), {}
            if not isinstance(spec, LineDict):
                raise self.fail(leaves, name, f"leaf '{name}' must be a mapping like {{hosts: [\"10.0.1.0/24\"]}}")
            self._no_unknown_keys(spec, {"hosts"}, f"leaf '{name}'")
            hosts = spec.get("hosts", LineList())
            if not isinstance(hosts, LineList):
                raise self.fail(spec, "hosts", f"leaf '{name}': 'hosts' must be a list of prefixes")
            networks: list[IPNetwork] = []
            for i, prefix in enumerate(hosts):
                try:
                    network = ipaddress.ip_network(str(prefix), strict=False)
                except ValueError:
                    raise self.fail(hosts, i, f"leaf '{name}': '{prefix}' is not an IP prefix") from None
                for other, other_leaf in seen_networks:
                    if other.version == network.version and other.overlaps(network):
                        raise self.fail(hosts, i, f"leaf '{name}': {network} overlaps {other} of leaf '{other_leaf}'")
                seen_networks.append((network, name))
                networks.append(network)
            result.append(Leaf(name=name, hosts=tuple(networks)))
        return result

    def _links(self, leaves: list[Leaf], spines: list[str], speed: float) -> list[Link]:
        spec = self.doc.get("links")
        if spec is None:
            return [Link(f"{leaf.name}-{spine}", leaf.name, spine, "", "", speed, index)
                    for index, (leaf, spine) in enumerate((leaf, spine) for leaf in leaves for spine in spines)]
        if not isinstance(spec, LineList) or not spec:
            raise self.fail(self.doc, "links", "'links' must be a non-empty list of {leaf, spine, ...}")
        leaf_names = {leaf.name for leaf in leaves}
        links: list[Link] = []
        lines: dict[tuple[str, str, str, str], int] = {}  # a link as cabled → the line it is written on
        ports: dict[tuple[str, str], tuple[str, int]] = {}  # (switch, port) → the link using it, its line
        count: dict[str, int] = {}  # links of each leaf-spine pair so far
        for i, item in enumerate(spec):
            if not isinstance(item, LineDict):
                raise self.fail(spec, i, "each link must be a mapping {leaf: ..., spine: ...}")
            self._no_unknown_keys(item, _LINK_KEYS, "link")
            leaf, spine = item.get("leaf"), item.get("spine")
            if not isinstance(leaf, str) or leaf not in leaf_names:
                raise self.fail(item, "leaf", f"link names leaf '{leaf}', which is not under 'leaves'")
            if not isinstance(spine, str) or spine not in spines:
                raise self.fail(item, "spine", f"link names spine '{spine}', which is not under 'spines'")
            leaf_port, spine_port = self._port(item, "leaf_port"), self._port(item, "spine_port")
            base, line = f"{leaf}-{spine}", spec.item_lines[i]
            cabled = (leaf, spine, leaf_port, spine_port)
            if cabled in lines:
                raise self.fail(spec, i, f"link {base} is listed twice (lines {lines[cabled]} and {line}); a "
                                         "parallel link needs its own leaf_port or spine_port")
            lines[cabled] = line
            count[base] = count.get(base, 0) + 1
            link_id = base if count[base] == 1 else f"{base}#{count[base]}"
            for switch, port, key in ((leaf, leaf_port, "leaf_port"), (spine, spine_port, "spine_port")):
                if port and (switch, port) in ports:
                    other, other_line = ports[(switch, port)]
                    raise self.fail(item, key, f"{switch} {port} is already the port of link {other} "
                                               f"(line {other_line})")
                ports[(switch, port)] = (link_id, line)
            links.append(Link(link_id, leaf, spine, leaf_port, spine_port, self._speed(item, speed), len(links)))
        return links

    def _port(self, item: LineDict, key: str) -> str:
        value = item.get(key, "")
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise self.fail(item, key, f"'{key}' must be an interface name")
        return str(value)

    def _link_ref(self, item: LineDict, link_ids: set[str], where: str) -> str:
        link = item.get("link")
        if not isinstance(link, str) or link not in link_ids:
            raise self.fail(item, "link", f"{where} names link '{link}', which is not in the fabric")
        return str(link)

    def _int_field(self, item: LineDict, key: str, low: int, high: int) -> int:
        value = item.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(item, key, f"'{key}' must be an integer in {low}..{high}")
        return value

    def _mirrors(self, link_ids: set[str]) -> tuple[dict[int, str], dict[int, str], dict[str, str]]:
        erspan: dict[int, str] = {}
        vlans: dict[int, str] = {}
        interfaces: dict[str, str] = {}
        for item in self._items("mirrors"):
            kinds = [kind for kind in _MIRROR_KINDS if kind in item]
            self._no_unknown_keys(item, {*_MIRROR_KINDS, "link"}, "mirror")
            if len(kinds) != 1:
                raise self.fail(item, "link", "a mirror needs exactly one of erspan_session, vlan, interface")
            link = self._link_ref(item, link_ids, "mirror")
            kind = kinds[0]
            if kind == "erspan_session":
                self._put(erspan, self._int_field(item, kind, 0, ERSPAN_SESSIONS - 1), link, item, kind)
            elif kind == "vlan":
                self._put(vlans, self._int_field(item, kind, 1, VLAN_IDS - 2), link, item, kind)
            else:
                name = item.get(kind)
                if not isinstance(name, str) or not name:
                    raise self.fail(item, kind, "'interface' must be a non-empty name")
                self._put(interfaces, name, link, item, kind)
        return erspan, vlans, interfaces

    def _sflow(self, link_ids: set[str]) -> dict[tuple[str, int], str]:
        ports: dict[tuple[str, int], str] = {}
        for item in self._items("sflow"):
            self._no_unknown_keys(item, {"agent", "ifindex", "link"}, "sflow entry")
            try:
                agent = str(ipaddress.ip_address(str(item.get("agent"))))
            except ValueError:
                raise self.fail(item, "agent", f"sflow agent '{item.get('agent')}' is not an IP address") from None
            key = (agent, self._int_field(item, "ifindex", 0, 2**32 - 1))
            self._put(ports, key, self._link_ref(item, link_ids, "sflow entry"), item, "ifindex")
        return ports

    def _counters(self, link_ids: set[str]) -> dict[tuple[str, str], str]:
        ports: dict[tuple[str, str], str] = {}
        for item in self._items("counters"):
            self._no_unknown_keys(item, {"device", "ifname", "link"}, "counters entry")
            device, ifname = item.get("device"), item.get("ifname")
            if not isinstance(device, str) or not isinstance(ifname, str) or not device or not ifname:
                raise self.fail(item, "device", "a counters entry needs 'device' and 'ifname' names")
            self._put(ports, (device, ifname), self._link_ref(item, link_ids, "counters entry"), item, "ifname")
        return ports

    def _items(self, key: str) -> list[LineDict]:
        items = self.doc.get(key)
        if items is None:
            return []
        if not isinstance(items, LineList):
            raise self.fail(self.doc, key, f"'{key}' must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, LineDict):
                raise self.fail(items, i, f"each entry of '{key}' must be a mapping")
        return list(items)

    def _put(self, table: dict[Any, str], key: Any, link: str, item: LineDict, field_name: str) -> None:
        if key in table:
            raise self.fail(item, field_name, f"{field_name} {key} is already mapped to link '{table[key]}'")
        table[key] = link
