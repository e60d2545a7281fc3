"""Switch interface counters from gNMI / OpenConfig (openconfig-interfaces) as `counters` batches: live
SAMPLE subscriptions through pygnmi, or notifications saved as JSON lines.

A switch streams leaves as it likes: one update per leaf, or a whole container as one JSON (IETF) value,
and not every leaf in every notification. So the last-known value of every leaf is kept per (device,
interface) and each notification that touches an interface yields a full row of it; an interface's rows
start once both its octet counters are known, so a half-known row never reads as a counter reset.

A notification is one JSON object, in either of the two shapes collectors produce:

1. pygnmi's (``telemetryParser`` of a SubscribeResponse; what `GnmiSource` receives)::

     {"update": {"timestamp": 1700000000000000000,                     # ns since the epoch
                 "prefix": "interfaces/interface[name=Ethernet1]",      # optional
                 "update": [{"path": "state/counters", "val": {"in-octets": "123", "out-octets": "45"}},
                            {"path": "state/oper-status", "val": "UP"}]}}

2. gnmic's ``--format json`` (one message per line)::

     {"source": "leaf1:6030", "subscription-name": "counters", "timestamp": 1700000000000000000,
      "time": "2023-11-14T22:13:20Z", "prefix": "openconfig-interfaces:interfaces/interface[name=Ethernet1]",
      "updates": [{"Path": "state/counters/in-octets", "values": {"state/counters/in-octets": "123"}}]}

``{"sync_response": true}`` / ``{"sync-response": true}`` are skipped. Paths may carry module prefixes
(``openconfig-interfaces:``) and JSON values module-qualified keys; both are dropped. Counters may be JSON
numbers or decimal strings (RFC 7951 encodes uint64 as strings). Leaves read under
``interfaces/interface[name=X]``: ``state/oper-status``, ``state/counters/{in,out}-{octets,unicast-pkts,
multicast-pkts,broadcast-pkts,errors,discards}``, ``state/counters/{in,out}-pkts`` (used when the
per-cast counters are absent), ``state/counters/in-fcs-errors``, ``ethernet/state/port-speed``
(``SPEED_400GB``) and ``state/speed`` (bits/s, as ietf-interfaces has it).

PFC and ECN counters are read where switches put them, and summed over their queues or priorities:
``qos/interfaces/interface[interface-id=X]/output/queues/queue[name=Q]/state/ecn-marked-pkts``
(openconfig-qos) or NVIDIA Cumulus's per-interface ``interfaces/interface[name=X]/state/counters/
ecn-marked-pkts`` (taken instead of the queues when both come, so nothing counts twice), and
``qos/interfaces/interface[interface-id=X]/pfc/pfc-priorities/pfc-priority[dot1p=P]/state/statistics/
pause-frames-{rx,tx}`` (the openconfig-qos-ext PFC counters of SONiC's management framework).
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pygnmi.client import gNMIclient, telemetryParser

from collectors.snmp import counters_batch
from pipeline.errors import InputError
from pipeline.jsonlines import json_lines, json_value
from pipeline.settings import IN_CODE, Origin
from pipeline.source import Columns, Step
from pipeline.topology import Topology

DEFAULT_PATHS = ("interfaces/interface/state", "interfaces/interface/ethernet/state/port-speed")
DEFAULT_SAMPLE_INTERVAL_S = 10.0
DEFAULT_TICK_S = 0.5
DEFAULT_BATCH_ROWS = 10_000
DEFAULT_PORT = 6030
DEFAULT_ENCODING = "json_ietf"
DEFAULT_CONNECT_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0

# openconfig-interfaces leaf (relative to the interface) → counters column
COUNTER_LEAVES: dict[str, str] = {
    "state/counters/in-octets": "in_octets",
    "state/counters/out-octets": "out_octets",
    "state/counters/in-errors": "in_errors",
    "state/counters/out-errors": "out_errors",
    "state/counters/in-discards": "in_discards",
    "state/counters/out-discards": "out_discards",
    "state/counters/in-fcs-errors": "fcs_errors",
}
PACKET_LEAVES = ("unicast-pkts", "multicast-pkts", "broadcast-pkts")
# counters column → the leaves (relative to the interface, list keys left out) that count it, each summed over
# its list entries; the first one a device reports is used.
SUMMED_LEAVES: dict[str, tuple[str, ...]] = {
    "ecn_marked": ("state/counters/ecn-marked-pkts", "output/queues/queue/state/ecn-marked-pkts"),
    "pfc_rx_pause": ("pfc/pfc-priorities/pfc-priority/state/statistics/pause-frames-rx",),
    "pfc_tx_pause": ("pfc/pfc-priorities/pfc-priority/state/statistics/pause-frames-tx",),
}
_SUMMED = {leaf for leaves in SUMMED_LEAVES.values() for leaf in leaves}
LIST_KEYS = ("name", "interface-id", "dot1p")  # the keys of the YANG lists on these paths
_SPEED = re.compile(r"SPEED_(\d+)(MB|GB)$")
_UNITS = {"MB": 10**6, "GB": 10**9}


@dataclass
class _Interface:
    """Last-known leaves of one interface (relative path → value)."""

    leaves: dict[str, int] = field(default_factory=dict)
    summed: dict[str, dict[str, int]] = field(default_factory=dict)  # SUMMED_LEAVES leaf → {entry path: value}
    oper_up: bool = False
    speed_bps: int = 0


def split_path(path: str) -> list[tuple[str, dict[str, str]]]:
    """gNMI path text → [(element name without module prefix, keys)]; '/' inside [k=v] is part of the key."""
    elements: list[tuple[str, dict[str, str]]] = []
    part, depth = "", 0
    for char in path + "/":
        if char == "/" and depth == 0:
            if part:
                name, _, rest = part.partition("[")
                keys = dict(re.findall(r"\[([^=\]]+)=([^\]]*)\]", "[" + rest))
                elements.append((name.rsplit(":", 1)[-1], keys))
            part = ""
            continue
        depth += {"[": 1, "]": -1}.get(char, 0)
        part += char
    return elements


def join_path(elements: Sequence[tuple[str, dict[str, str]]]) -> str:
    return "/".join(name + "".join(f"[{key}={value}]" for key, value in keys.items()) for name, keys in elements)


def _leaves(elements: list[tuple[str, dict[str, str]]], value: Any) -> Iterator[tuple[list[tuple[str, dict[str, str]]],
                                                                                         Any]]:
    """Every scalar under a JSON value, with its full path; a YANG list entry keyed by its LIST_KEYS member (or, with
    none, by its position)."""
    if isinstance(value, dict):
        for key, item in value.items():
            name = str(key).rsplit(":", 1)[-1]
            if isinstance(item, list):
                for position, entry in enumerate(item):
                    if isinstance(entry, dict):
                        list_key = next((key for key in LIST_KEYS if key in entry), None)
                        keys = {list_key: str(entry[list_key])} if list_key else {"#": str(position)}
                        yield from _leaves([*elements, (name, keys)], entry)
            else:
                yield from _leaves([*elements, (name, {})], item)
    else:
        yield elements, value


def notification_updates(item: Any) -> tuple[int | None, list[tuple[str, Any]]]:
    """(timestamp ns or None, [(path, value)]) of one notification in either shape; ValueError if neither."""
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    if item.get("sync_response") or item.get("sync-response"):
        return None, []
    if isinstance(item.get("update"), dict):
        body = item["update"]
        updates = [(update.get("path") or "", update.get("val")) for update in _list(body, "update")]
    elif "updates" in item:
        body = item
        updates = [(update.get("Path") or "", value) for update in _list(body, "updates")
                   for value in _values(update).values()]
    else:
        raise ValueError("no 'update' or 'updates': not a gNMI notification")
    prefix = str(body.get("prefix") or "")
    timestamp = body.get("timestamp")
    if timestamp is not None and (isinstance(timestamp, bool) or not isinstance(timestamp, int)
                                  or not 0 <= timestamp < 2**63):
        raise ValueError(f"timestamp: expected nanoseconds, got {timestamp!r}")
    return timestamp or None, [(f"{prefix}/{path}" if prefix else str(path), value) for path, value in updates]


def _list(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    updates = body.get(key) or []
    if not isinstance(updates, list) or not all(isinstance(update, dict) for update in updates):
        raise ValueError(f"{key}: expected a list of objects")
    return updates


def _values(update: dict[str, Any]) -> dict[str, Any]:
    values = update.get("values") or {}
    if not isinstance(values, dict):
        raise ValueError(f"updates: values of {update.get('Path')!r} is not an object")
    return values


def _counter(path: str, value: Any) -> int:
    """A uint64 leaf: a JSON number or a decimal string (RFC 7951)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**64:
        return value
    raise ValueError(f"{path}: expected a non-negative integer below 2^64, got {value!r}")


def _speed(path: str, value: Any) -> int:
    if isinstance(value, str):
        if value.rsplit(":", 1)[-1] == "SPEED_UNKNOWN":
            return 0
        match = _SPEED.search(value)
        if match:
            return int(match.group(1)) * _UNITS[match.group(2)]
    return _counter(path, value)


class NotificationParser:
    """One device's notifications → counters rows, keeping its interfaces' last-known leaves."""

    def __init__(self, device: str, topology: Topology | None = None, *, all_interfaces: bool = False,
                 source: str = "gnmi") -> None:
        self.device = device
        self.topology = topology
        self.all_interfaces = all_interfaces
        self.source = source
        self._interfaces: dict[str, _Interface] = {}

    def rows(self, item: Any, received_ns: int) -> list[dict[str, Any]]:
        """Rows for the interfaces this notification touched (ValueError names the bad field; then nothing
        of the notification is kept)."""
        timestamp, updates = notification_updates(item)
        changes: dict[str, dict[str, Any]] = {}
        for path, value in updates:
            for elements, leaf in _leaves(split_path(path), value):
                at = next((i for i, (name, keys) in enumerate(elements)
                           if name == "interface" and ("name" in keys or "interface-id" in keys)), None)
                if at is None:
                    continue
                relative = "/".join(name for name, _ in elements[at + 1:])
                parsed = self._leaf(join_path(elements), relative, leaf)
                if parsed is not None:
                    keys = elements[at][1]
                    entry = join_path(elements[at + 1:]) if relative in _SUMMED else relative
                    changes.setdefault(keys.get("name") or keys["interface-id"], {})[entry] = (relative, parsed)
        rows = []
        ts_us = (timestamp or received_ns) // 1000
        for ifname, leaves in changes.items():
            interface = self._interfaces.setdefault(ifname, _Interface())
            for entry, (relative, parsed) in leaves.items():
                if relative in _SUMMED:
                    interface.summed.setdefault(relative, {})[entry] = parsed
                elif relative == "state/oper-status":
                    interface.oper_up = parsed
                elif relative in ("ethernet/state/port-speed", "state/speed"):
                    interface.speed_bps = parsed or interface.speed_bps
                else:
                    interface.leaves[relative] = parsed
            row = self._row(ifname, interface, ts_us)
            if row is not None:
                rows.append(row)
        return rows

    @staticmethod
    def _leaf(path: str, relative: str, value: Any) -> Any:
        if relative == "state/oper-status":
            return str(value).rsplit(":", 1)[-1] == "UP"
        if relative in ("ethernet/state/port-speed", "state/speed"):
            return _speed(path, value)
        if relative.startswith("state/counters/") or relative in _SUMMED:
            return _counter(path, value)
        return None

    def _row(self, ifname: str, interface: _Interface, ts_us: int) -> dict[str, Any] | None:
        leaves = interface.leaves
        if "state/counters/in-octets" not in leaves or "state/counters/out-octets" not in leaves:
            return None
        link = self.topology.link_for_counter(self.device, ifname) if self.topology else None
        if link is None and self.topology is not None and not self.all_interfaces:
            return None
        row: dict[str, Any] = {column: leaves.get(leaf, 0) for leaf, column in COUNTER_LEAVES.items()}
        for direction in ("in", "out"):
            kinds = [f"state/counters/{direction}-{kind}" for kind in PACKET_LEAVES]
            if any(kind in leaves for kind in kinds):
                row[f"{direction}_pkts"] = sum(leaves.get(kind, 0) for kind in kinds)
            else:
                row[f"{direction}_pkts"] = leaves.get(f"state/counters/{direction}-pkts", 0)
        for column, sources in SUMMED_LEAVES.items():
            reported = next((interface.summed[leaf] for leaf in sources if interface.summed.get(leaf)), {})
            row[column] = sum(reported.values())
        row.update(ts=ts_us, device=self.device, ifname=ifname, link=link or "", oper_up=int(interface.oper_up),
                   speed_bps=interface.speed_bps, source=self.source)
        return row


def read_gnmi_file(path: str | Path, device: str, *, topology: Topology | None = None, all_interfaces: bool = False,
                   batch_rows: int = DEFAULT_BATCH_ROWS) -> Iterator[Columns]:
    """Counters batches from a file of gNMI notifications, one JSON object per line (either shape above).

    Without a topology every interface is kept (link ''). A bad line is bad input: InputError names the
    file, the line and the field. A notification without a timestamp takes the file's modification time.
    """
    source = str(path)
    try:
        modified_ns = Path(path).stat().st_mtime_ns
    except OSError as exc:
        raise InputError(source, f"cannot read: {exc.strerror or exc}") from exc
    parser = NotificationParser(device, topology, all_interfaces=all_interfaces)
    rows: list[dict[str, Any]] = []
    for number, line in json_lines(path):
        try:
            rows.extend(parser.rows(json_value(line), modified_ns))
        except (ValueError, RecursionError) as exc:  # the rows before the bad line are still given
            if rows:
                yield counters_batch(rows)
            raise InputError(source, str(exc), line=number) from exc
        if len(rows) >= batch_rows:
            yield counters_batch(rows)
            rows = []
    if rows:
        yield counters_batch(rows)


@dataclass(frozen=True)
class GnmiTarget:
    """One switch's gNMI server. Unless `insecure`, TLS: the server's certificate is verified against
    `path_root` (a CA or the server's own certificate; `override` names the host it must be issued to), and
    `path_cert` + `path_key` add a client certificate. With neither, pygnmi fetches the server's
    certificate and trusts it (no verification: say `path_root` in production)."""

    device: str
    host: str
    port: int = DEFAULT_PORT
    username: str = ""
    password: str = ""
    insecure: bool = False
    path_cert: str | None = None
    path_key: str | None = None
    path_root: str | None = None
    skip_verify: bool = False
    override: str | None = None
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S

    def tls_files(self) -> dict[str, str | None]:
        """pygnmi's path_cert/path_key/path_root: it reads a lone `path_cert` as the certificate to trust
        and `path_root` only together with a client key, so a lone root goes in as its path_cert."""
        if self.path_cert and self.path_key:
            return {"path_cert": self.path_cert, "path_key": self.path_key, "path_root": self.path_root}
        return {"path_cert": self.path_root or self.path_cert, "path_key": None, "path_root": None}


@dataclass(frozen=True, kw_only=True)
class GnmiConfig:
    """The `gnmi` command's settings (config section `gnmi:`): the targets and the credentials of those that
    give none, the SAMPLE subscription, and the reconnect backoff; or `file` + `device` to read saved
    notifications instead."""

    targets: tuple[GnmiTarget, ...] = ()
    username: str = ""
    password: str = ""
    insecure: bool = False
    skip_verify: bool = False
    root_cert: str | None = None
    interval: float = DEFAULT_SAMPLE_INTERVAL_S
    path: tuple[str, ...] = DEFAULT_PATHS
    all_interfaces: bool = False
    file: str | None = None
    device: str | None = None
    tick_s: float = DEFAULT_TICK_S
    encoding: str = DEFAULT_ENCODING
    first_backoff_s: float = FIRST_BACKOFF_S
    max_backoff_s: float = MAX_BACKOFF_S

    def validate(self, origin: Origin = IN_CODE) -> None:
        if self.file:
            if not self.device:
                raise origin.error("device", "required with --file: the device the notifications come from")
            if not Path(self.file).is_file():
                raise InputError(self.file, "no such file")
            return
        if not self.targets:
            raise origin.error("targets", "at least one DEVICE=HOST:PORT (or gnmi.targets in --config), or --file")
        for key in ("interval", "tick_s", "first_backoff_s", "max_backoff_s"):
            if getattr(self, key) <= 0:
                raise origin.error(key, "must be positive")
        if not self.path:
            raise origin.error("path", "at least one subscription path")


class GnmiSource:
    """pipeline.source.Source over one SAMPLE subscription per target, each in its own thread.

    A dropped or ended stream is subscribed again after a backoff that doubles up to `max_backoff_s` (and
    starts over once notifications flow). Steps carry the rows that arrived since the last one. Nothing
    connects before `steps` runs.
    """

    name = "gnmi"

    def __init__(self, topology: Topology, config: GnmiConfig) -> None:
        self.config = config
        self.topology = topology
        self.targets = list(config.targets)
        self.paths = list(config.path)
        self.sample_interval_s = config.interval
        self.tick_s = config.tick_s
        self.all_interfaces = config.all_interfaces
        self.encoding = config.encoding
        self.first_backoff_s = config.first_backoff_s
        self.max_backoff_s = config.max_backoff_s
        self._rows: queue.Queue[list[dict[str, Any]]] = queue.Queue()
        self._lock = threading.Lock()
        self._totals = {"notifications": 0, "rows": 0, "errors": 0, "reconnects": 0, "malformed": 0}
        self._streams: dict[GnmiTarget, tuple[gNMIclient, Any]] = {}
        self._halt = threading.Event()

    def start(self) -> GnmiSource:
        """Nothing to open ahead: each target's thread connects when `steps` runs."""
        return self

    def stop(self) -> None:
        """Ask every target's thread to end its stream (`steps` does it too when it returns)."""
        self._halt.set()

    def request(self) -> dict[str, Any]:
        """pygnmi's subscribe request: STREAM mode, every path SAMPLEd every `sample_interval_s`."""
        interval_ns = round(self.sample_interval_s * 1e9)
        return {"mode": "stream", "encoding": self.encoding, "subscription": [
            {"path": path, "mode": "sample", "sample_interval": interval_ns} for path in self.paths]}

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        self._halt.clear()
        threads = [threading.Thread(target=self._follow, args=(target,), name=f"gnmi-{target.device}", daemon=True)
                   for target in self.targets]
        for thread in threads:
            thread.start()
        try:
            while not stop.is_set():
                yield self._step(wait=True)
        finally:
            self._halt.set()
            with self._lock:
                streams = list(self._streams.values())
            for client, stream in streams:
                stream.cancel()
                client.close()
            for thread in threads:
                thread.join(timeout=max(target.connect_timeout_s for target in self.targets) + 1)
        final = self._step(wait=False)
        if final:
            yield final

    def _step(self, *, wait: bool) -> Step:
        rows: list[dict[str, Any]] = []
        try:
            rows.extend(self._rows.get(timeout=self.tick_s) if wait else self._rows.get_nowait())
            while True:
                rows.extend(self._rows.get_nowait())
        except queue.Empty:
            pass
        if not rows:
            return []
        self._count("rows", len(rows))
        return [("counters", counters_batch(rows))]

    def _count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._totals[name] += amount

    def _follow(self, target: GnmiTarget) -> None:
        """Subscribe, read, and on any end of the stream subscribe again after the backoff, until halted."""
        parser = NotificationParser(target.device, self.topology, all_interfaces=self.all_interfaces)
        delay = self.first_backoff_s
        attempt = 0
        while not self._halt.is_set():
            if attempt:
                self._count("reconnects")
            attempt += 1
            try:
                if self._read(target, parser):
                    delay = self.first_backoff_s
            except Exception:  # grpc.RpcError, a connect timeout, pygnmi's gNMIException or its TypeError when
                # Capabilities fails: whatever ends the stream is counted, and the target subscribed again
                if not self._halt.is_set():
                    self._count("errors")
            finally:
                with self._lock:
                    self._streams.pop(target, None)
            self._halt.wait(delay)
            delay = min(delay * 2, self.max_backoff_s)

    def _read(self, target: GnmiTarget, parser: NotificationParser) -> bool:
        """One subscription until the stream ends; True if notifications arrived."""
        client = gNMIclient(target=(target.host, target.port), username=target.username, password=target.password,
                            insecure=target.insecure, **target.tls_files(), skip_verify=target.skip_verify,
                            override=target.override, gnmi_timeout=target.connect_timeout_s)
        received = False
        try:
            client.connect()
            stream = client.subscribe(subscribe=self.request())
            with self._lock:
                self._streams[target] = (client, stream)
            if self._halt.is_set():
                stream.cancel()
            for response in stream:
                item = telemetryParser(response)
                if item is None or "sync_response" in item:
                    if item is None:
                        self._count("malformed")
                    continue
                received = True
                self._count("notifications")
                try:
                    rows = parser.rows(item, time.time_ns())
                except ValueError:
                    self._count("malformed")
                    continue
                if rows:
                    self._rows.put(rows)
        finally:
            client.close()
        return received

    def counts(self) -> Mapping[str, int]:
        with self._lock:
            return dict(self._totals)


class GnmiFileSource:
    """The notifications of a file as a Source that ends when the file does."""

    name = "gnmi"

    def __init__(self, batches: Iterator[Columns]) -> None:
        self._batches = batches
        self._rows = 0

    def start(self) -> GnmiFileSource:
        return self

    def stop(self) -> None:
        """Nothing held: the file is read as `steps` runs."""

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        for batch in self._batches:
            self._rows += len(batch["ts"])
            yield [("counters", batch)]
            if stop.is_set():
                return

    def counts(self) -> Mapping[str, int]:
        return {"rows": self._rows}
