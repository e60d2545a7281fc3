"""Scenario files: the fabric, capture settings, traffic and faults of one synthetic capture.

Every value is checked here, once, so the generator can trust it; a bad file is rejected with
ScenarioError naming the file, the line and the reason (CLI exit code 2).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pipeline.errors import ScenarioError
from pipeline.yamlfile import LineDict, LineList, line_of, load_yaml

ROCE_KINDS = ("allreduce", "p2p")
APP_KINDS = ("nvme_tcp", "nfs", "tls", "c10d", "ssh", "dns", "ntp", "ptp", "icmp", "vxlan", "unknown")
CONTROL_KINDS = ("bgp", "bfd", "lldp", "arp")
FAULT_KINDS = ("congestion", "link_failure", "link_flap", "ecmp_imbalance")
MIN_SNAPLEN = 128
MAX_DURATION_MS = 3_600_000.0  # an hour of fabric time: long enough for a soak
_T = MAX_DURATION_MS  # upper bound of every scenario time
DEFAULT_COLLECTOR = "198.51.100.10"
LAST_PCAP_SECOND = 2**32 - 1  # pcap record headers hold unsigned 32-bit seconds since 1970

_Num = (int, float)
# kind -> {parameter: (python types, default or None when required, low, high)}
_ParamSpec = dict[str, tuple[tuple[type, ...], Any, float, float]]
_ROCE_COMMON: _ParamSpec = {
    "hosts": ((int,), 8, 2, 64),
    "qps_per_pair": ((int,), 1, 1, 16),
    "period_ms": (_Num, 50.0, 0.1, 1e6),
    "burst_ms": (_Num, 10.0, 0.01, 1e6),
    "start_ms": (_Num, 0.0, 0.0, _T),
    "end_ms": (_Num, -1.0, -1.0, _T),
    "packet_gap_us": (_Num, 200.0, 0.1, 1e6),
    "payload": ((int,), 1024, 16, 4096),
    "message_packets": ((int,), 4, 1, 1024),
    "dscp": ((int,), 26, 0, 63),
}
_TRAFFIC_PARAMS: dict[str, _ParamSpec] = {
    "allreduce": {**_ROCE_COMMON, "job": ((str,), None, 0, 0)},
    "p2p": {**_ROCE_COMMON, "hosts": ((int,), 2, 2, 64)},
    **{
        kind: {
            "flows": ((int,), 1, 1, 256),
            "exchanges_per_s": (_Num, 100.0, 0.1, 1e6),
            "payload": ((int,), 256, 0, 8900),
            "ipv6": ((bool,), False, 0, 1),
            "vlan": ((int,), 0, 0, 4094),
            "start_ms": (_Num, 0.0, 0.0, _T),
            "end_ms": (_Num, -1.0, -1.0, _T),
        }
        for kind in APP_KINDS
    },
    **{kind: {"interval_ms": (_Num, 100.0, 0.01, 1e6), "start_ms": (_Num, 0.0, 0.0, _T),
              "end_ms": (_Num, -1.0, -1.0, _T)} for kind in CONTROL_KINDS},
}
_TRAFFIC_PARAMS["tls"]["sni"] = ((str,), "checkpoints.storage.example.com", 0, 0)
_TRAFFIC_PARAMS["unknown"]["port"] = ((int,), 47123, 1024, 65535)
_TRAFFIC_PARAMS["vxlan"]["vni"] = ((int,), 5001, 1, 2**24 - 1)

_FAULT_PARAMS: dict[str, _ParamSpec] = {
    "congestion": {
        "link": ((str,), None, 0, 0),
        "direction": ((str,), None, 0, 0),
        "start_ms": (_Num, None, 0.0, _T),
        "end_ms": (_Num, None, 0.0, _T),
        "peak_ce_ratio": (_Num, 0.5, 0.0, 1.0),
        "stretch": (_Num, 1.5, 1.0, 100.0),
        "pfc_interval_us": (_Num, 500.0, 1.0, 1e6),
    },
    "link_failure": {
        "link": ((str,), None, 0, 0),
        "at_ms": (_Num, None, 0.0, _T),
        "recover_ms": (_Num, -1.0, -1.0, _T),
        "local_convergence_ms": (_Num, 1.0, 0.0, 1e5),
        "remote_convergence_ms": (_Num, 5.0, 0.0, 1e5),
    },
    "link_flap": {
        "link": ((str,), None, 0, 0),
        "down_ms": (_Num, None, 0.0, _T),
        "up_ms": (_Num, None, 0.0, _T),
        "local_convergence_ms": (_Num, 1.0, 0.0, 1e5),
        "remote_convergence_ms": (_Num, 3.0, 0.0, 1e5),
    },
    "ecmp_imbalance": {
        "leaf": ((str,), None, 0, 0),
        "spine": ((str,), None, 0, 0),
        "share": (_Num, None, 0.0, 1.0),
    },
}
_TOP_KEYS = {"name", "start", "duration_ms", "seed", "capture", "fabric", "traffic", "faults", "incident_truth"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True, slots=True)
class Capture:
    """How the collector receives the mirrors: ERSPAN type, pcap snaplen (0 = full) and timestamp unit; and
    whether the switches also report oper-status changes the moment they happen (gNMI ON_CHANGE, SNMP
    traps) besides the 100 ms counter samples."""

    erspan_type: int = 2
    snaplen: int = 0
    ts_resolution: str = "us"
    collector: str = DEFAULT_COLLECTOR
    oper_on_change: bool = False


@dataclass(frozen=True, slots=True)
class FabricSpec:
    name: str = "pod1"
    leaves: int = 4
    spines: int = 2
    hosts_per_leaf: int = 8
    speed_gbps: float = 400.0


@dataclass(frozen=True, slots=True)
class Item:
    """One traffic model or fault: its kind, validated parameters and the line it starts on."""

    kind: str
    params: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    start_ns: int
    duration_ns: int
    seed: int
    capture: Capture
    fabric: FabricSpec
    traffic: tuple[Item, ...]
    faults: tuple[Item, ...] = field(default=())
    # truth with every incident's detail: fast recovery's interrupted flows apart from those resumed after
    # idle, and collective_slowdown events (off by default so the committed samples stay byte-identical)
    incident_truth: bool = False

    @property
    def end_ns(self) -> int:
        return self.start_ns + self.duration_ns


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raise ScenarioError with file, line and reason."""
    doc = load_yaml(path, ScenarioError)
    return _Parser(str(path), doc).parse()


class _Parser:
    def __init__(self, source: str, doc: LineDict) -> None:
        self.source = source
        self.doc = doc

    def fail(self, container: LineDict | LineList, key: str | int, reason: str) -> ScenarioError:
        return ScenarioError(self.source, reason, line=line_of(container, key))

    def parse(self) -> Scenario:
        doc = self.doc
        self._known(doc, _TOP_KEYS, "top level")
        name = doc.get("name")
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.fail(doc, "name", "'name' must be a word of letters, digits, '_', '.' or '-'")
        duration = self._number(doc, "duration_ms", None, 1.0, MAX_DURATION_MS)
        seed = self._integer(doc, "seed", 1, 0, 2**32 - 1)
        fabric = self._fabric()
        traffic = self._items("traffic", _TRAFFIC_PARAMS)
        faults = self._items("faults", _FAULT_PARAMS)
        for item, container in traffic:
            self._check_traffic_window(item, container, duration)
        for item, container in faults:
            self._check_fault(item, container, fabric, duration)
        self._check_rdma(traffic, faults, fabric)
        return Scenario(
            name=name,
            source=self.source,
            start_ns=self._start(),
            duration_ns=round(duration * 1e6),
            seed=seed,
            capture=self._capture(),
            fabric=fabric,
            traffic=tuple(item for item, _ in traffic),
            faults=tuple(item for item, _ in faults),
            incident_truth=self._flag(doc, "incident_truth"),
        )

    def _known(self, mapping: LineDict, allowed: set[str] | dict[str, Any], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                raise self.fail(mapping, key, f"unknown key '{key}' in {where} (allowed: {', '.join(sorted(allowed))})")

    def _flag(self, mapping: LineDict, key: str) -> bool:
        value = mapping.get(key, False)
        if not isinstance(value, bool):
            raise self.fail(mapping, key, f"'{key}' must be true or false")
        return value

    def _integer(self, mapping: LineDict, key: str, default: int | None, low: int, high: int) -> int:
        value = mapping.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(mapping, key, f"'{key}' must be an integer in {low}..{high}")
        return value

    def _number(self, mapping: LineDict, key: str, default: float | None, low: float, high: float) -> float:
        value = mapping.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
            raise self.fail(mapping, key, f"'{key}' must be a number in {low:g}..{high:g}")
        return float(value)

    def _section(self, key: str) -> LineDict:
        section = self.doc.get(key)
        if section is None:
            section = LineDict()
            section.line, section.key_lines = line_of(self.doc, key), {}
        if not isinstance(section, LineDict):
            raise self.fail(self.doc, key, f"'{key}' must be a mapping")
        return section

    def _start(self) -> int:
        """Nanoseconds since the epoch; the whole capture must fit the pcap's seconds (1970 to 2106)."""
        text = self.doc.get("start", "2026-01-15T10:00:00Z")
        try:
            moment = datetime.fromisoformat(str(text))
        except ValueError:
            raise self.fail(self.doc, "start", f"'start' must be an ISO-8601 time, not '{text}'") from None
        if moment.tzinfo is None:
            raise self.fail(self.doc, "start", "'start' needs a time zone, e.g. 2026-01-15T10:00:00Z")
        out_of_range = self.fail(self.doc, "start", "'start' must fall between 1970 and 2106 (what a pcap can hold)")
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # its time zone pushes it past year 1 or 9999
            raise out_of_range from None
        seconds = int(moment.timestamp())
        if not 0 <= seconds <= LAST_PCAP_SECOND - MAX_DURATION_MS // 1000:
            raise out_of_range
        return seconds * 1_000_000_000 + moment.microsecond * 1000

    def _capture(self) -> Capture:
        section = self._section("capture")
        self._known(section, {"erspan_type", "snaplen", "ts_resolution", "collector", "oper_on_change"}, "capture")
        erspan = section.get("erspan_type", 2)
        if erspan not in (2, 3) or isinstance(erspan, bool):
            raise self.fail(section, "erspan_type", "'erspan_type' must be 2 or 3")
        snaplen = self._integer(section, "snaplen", 0, 0, 262144)
        if 0 < snaplen < MIN_SNAPLEN:
            raise self.fail(section, "snaplen", f"'snaplen' must be 0 (full frames) or at least {MIN_SNAPLEN}")
        resolution = section.get("ts_resolution", "us")
        if resolution not in ("us", "ns"):
            raise self.fail(section, "ts_resolution", "'ts_resolution' must be 'us' or 'ns'")
        collector = str(section.get("collector", DEFAULT_COLLECTOR))
        try:
            ipaddress.IPv4Address(collector)
        except ValueError:
            raise self.fail(section, "collector", f"'collector' must be an IPv4 address, not '{collector}'") from None
        on_change = section.get("oper_on_change", False)
        if not isinstance(on_change, bool):
            raise self.fail(section, "oper_on_change", "'oper_on_change' must be true or false")
        return Capture(erspan_type=int(erspan), snaplen=snaplen, ts_resolution=str(resolution), collector=collector,
                       oper_on_change=on_change)

    def _fabric(self) -> FabricSpec:
        section = self._section("fabric")
        self._known(section, {"name", "leaves", "spines", "hosts_per_leaf", "speed_gbps"}, "fabric")
        name = section.get("name", "pod1")
        if not isinstance(name, str) or not _NAME.match(name):
            raise self.fail(section, "name", "fabric 'name' must be a word")
        return FabricSpec(
            name=name,
            leaves=self._integer(section, "leaves", 4, 1, 99),
            spines=self._integer(section, "spines", 2, 1, 9),
            hosts_per_leaf=self._integer(section, "hosts_per_leaf", 8, 1, 200),
            speed_gbps=self._number(section, "speed_gbps", 400.0, 0.001, 1600.0),
        )

    def _items(self, key: str, specs: dict[str, _ParamSpec]) -> list[tuple[Item, LineDict]]:
        items = self.doc.get(key, LineList())
        if not isinstance(items, LineList):
            raise self.fail(self.doc, key, f"'{key}' must be a list of {{kind: ..., ...}}")
        result: list[tuple[Item, LineDict]] = []
        for i, entry in enumerate(items):
            if not isinstance(entry, LineDict):
                raise self.fail(items, i, f"each entry of '{key}' must be a mapping with a 'kind'")
            kind = entry.get("kind")
            if not isinstance(kind, str) or kind not in specs:
                raise self.fail(entry, "kind", f"unknown {key} kind '{kind}' (known: {', '.join(specs)})")
            spec = specs[kind]
            self._known(entry, {"kind", *spec}, f"{key} kind '{kind}'")
            params = {name: self._param(entry, name, rule) for name, rule in spec.items()}
            result.append((Item(kind=str(kind), params=params, line=entry.line), entry))
        return result

    def _param(self, entry: LineDict, name: str, rule: tuple[tuple[type, ...], Any, float, float]) -> Any:
        types, default, low, high = rule
        if name not in entry and default is None:
            raise self.fail(entry, "kind", f"{entry.get('kind')}: '{name}' is required")
        value = entry.get(name, default)
        if str in types:
            if not isinstance(value, str) or not value:
                raise self.fail(entry, name, f"'{name}' must be a non-empty string")
            return value
        if bool in types:
            if not isinstance(value, bool):
                raise self.fail(entry, name, f"'{name}' must be true or false")
            return value
        if (isinstance(value, bool) or not isinstance(value, types) or not isinstance(value, int | float)
                or not low <= value <= high):
            what = "an integer" if types == (int,) else "a number"
            raise self.fail(entry, name, f"'{name}' must be {what} in {low:g}..{high:g}")
        return float(value) if float in types else value

    def _check_fault(self, item: Item, entry: LineDict, fabric: FabricSpec, duration_ms: float) -> None:
        p = item.params
        leaves = {f"leaf{i}" for i in range(1, fabric.leaves + 1)}
        spines = {f"spine{i}" for i in range(1, fabric.spines + 1)}
        if "link" in p:
            leaf, _, spine = p["link"].partition("-")
            if leaf not in leaves or spine not in spines:
                raise self.fail(entry, "link", f"'{p['link']}' is not a link of the fabric (e.g. leaf1-spine1)")
        if item.kind == "congestion":
            if p["direction"] not in ("up", "down"):
                raise self.fail(entry, "direction", "'direction' must be 'up' or 'down'")
            self._window(entry, "start_ms", "end_ms", duration_ms)
        elif item.kind == "link_flap":
            self._window(entry, "down_ms", "up_ms", duration_ms)
        elif item.kind == "link_failure":
            if not p["at_ms"] < duration_ms:
                raise self.fail(entry, "at_ms", "'at_ms' must fall inside the capture")
            if p["recover_ms"] >= 0 and p["recover_ms"] <= p["at_ms"]:
                raise self.fail(entry, "recover_ms", "'recover_ms' must come after 'at_ms'")
        elif item.kind == "ecmp_imbalance":
            if p["leaf"] not in leaves:
                raise self.fail(entry, "leaf", f"'{p['leaf']}' is not a leaf of the fabric")
            if p["spine"] not in spines:
                raise self.fail(entry, "spine", f"'{p['spine']}' is not a spine of the fabric")
            if fabric.spines < 2:
                raise self.fail(entry, "kind", "ECMP imbalance needs at least two spines")

    def _check_rdma(self, traffic: list[tuple[Item, LineDict]], faults: list[tuple[Item, LineDict]],
                    fabric: FabricSpec) -> None:
        """Jobs are named once, fit in the fabric, and a burst stretched by congestion still ends before
        the next one starts (so each QP's PSNs stay in time order)."""
        stretch = max([f.params["stretch"] for f, _ in faults if f.kind == "congestion"], default=1.0)
        jobs: set[str] = set()
        for item, entry in traffic:
            if item.kind not in ROCE_KINDS:
                continue
            p = item.params
            if p["hosts"] > fabric.leaves * fabric.hosts_per_leaf:
                raise self.fail(entry, "hosts", f"'hosts' exceeds the fabric's {fabric.leaves * fabric.hosts_per_leaf}")
            if p["burst_ms"] * stretch >= p["period_ms"]:
                raise self.fail(entry, "burst_ms", f"'burst_ms' x congestion stretch {stretch:g} must stay below "
                                                   "'period_ms'")
            if item.kind == "allreduce":
                if p["job"] in jobs:
                    raise self.fail(entry, "job", f"job '{p['job']}' is named twice")
                jobs.add(p["job"])

    def _check_traffic_window(self, item: Item, entry: LineDict, duration_ms: float) -> None:
        """A traffic item sends from `start_ms` until `end_ms` (-1, the default: the end of the capture)."""
        start, end = item.params["start_ms"], item.params["end_ms"]
        if not start < duration_ms:
            raise self.fail(entry, "start_ms", "'start_ms' must fall inside the capture")
        if end >= 0 and not start < end <= duration_ms:
            raise self.fail(entry, "end_ms", "'end_ms' must come after 'start_ms' and within duration_ms")

    def _window(self, entry: LineDict, start: str, end: str, duration_ms: float) -> None:
        if not entry[start] < entry[end] <= duration_ms:
            raise self.fail(entry, end, f"'{end}' must come after '{start}' and within duration_ms")
