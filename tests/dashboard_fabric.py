"""A minute of the sample fabric around a link failure, as the pipeline would store it, for dashboard tests.

An hour ago (so no TTL drops it): all 8 links of samples/topology.yaml carry traffic in 10 ms link bins;
leaf1-spine1 fails at FAIL (its bins stop, its leaf port reports down, a fast_recovery event records
local 1.2 ms / remote 3.4 ms); the flows that crossed it reappear on leaf1-spine2 after exactly those
delays; leaf2-spine2 down is congested from +20 s to +25 s (CE, CNP, PFC, an event naming job-a), and
job-a's all-reduce slows down then; leaf3-spine1 counts FCS errors.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipeline import records
from pipeline.store import Store
from pipeline.topology import Topology, load_topology

TOPOLOGY_FILE = Path(__file__).resolve().parents[1] / "samples" / "topology.yaml"
SECONDS = 60
UTILISATION = {  # share of 400 Gb/s per direction; leaf2 hashes unevenly, leaf1-spine2 takes over at the failure
    "leaf1-spine1": 0.45, "leaf1-spine2": 0.40, "leaf2-spine1": 0.30, "leaf2-spine2": 0.75,
    "leaf3-spine1": 0.35, "leaf3-spine2": 0.33, "leaf4-spine1": 0.20, "leaf4-spine2": 0.22,
}
BIN_BYTES_AT_FULL_SPEED = 500_000_000  # 400 Gb/s for 10 ms
FAILED_LINK = "leaf1-spine1"
BACKUP_LINK = "leaf1-spine2"
CONGESTED_LINK = "leaf2-spine2"
ERROR_LINK = "leaf3-spine1"
LOCAL_MS, REMOTE_MS = 1.2, 3.4
PACKETS_LOST = 12
CONGESTION_CE_RATIO = 0.35
FCS_ERRORS = 42
JOBS = {"job-a": 12.0, "job-b": 8.0}  # normal all-reduce ms
SLOW_MS = 30.0
PERIOD_MS = 500


def topology() -> Topology:
    return load_topology(TOPOLOGY_FILE)


@dataclass(frozen=True)
class Fabric:
    """The times the rows were written at, for tests to compute what the dashboard must show."""

    start: datetime
    fail: datetime

    @property
    def end(self) -> datetime:
        return self.start + timedelta(seconds=SECONDS)

    @property
    def congestion(self) -> tuple[datetime, datetime]:
        return self.start + timedelta(seconds=20), self.start + timedelta(seconds=25)


def _us(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


def _ip(address: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{address}").packed


def _table(name: str, columns: dict[str, np.ndarray | list[object]]) -> pa.Table:
    schema = records.arrow_schema(name)
    arrays = []
    for field in schema:
        values = columns[field.name]
        if pa.types.is_timestamp(field.type):
            arrays.append(pa.array(np.asarray(values).astype("datetime64[us]"), type=field.type))
        else:
            arrays.append(pa.array(list(values) if isinstance(values, np.ndarray) and values.dtype == object
                                   else values, type=field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def link_bins(fabric: Fabric, topo: Topology) -> pa.Table:
    start_us, fail_us = _us(fabric.start), _us(fabric.fail)
    slots = np.arange(SECONDS * 100, dtype=np.int64) * records.LINK_BIN_US + start_us
    c0, c1 = (_us(t) for t in fabric.congestion)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in records.column_names("link_bins")}
    for link in topo.links:
        for direction in ("up", "down"):
            ts = slots[slots < fail_us] if link.id == FAILED_LINK else slots
            n = len(ts)
            congested = (link.id == CONGESTED_LINK) & (direction == "down") & (ts >= c0) & (ts < c1)
            nbytes = np.full(n, UTILISATION[link.id] * BIN_BYTES_AT_FULL_SPEED, dtype=np.uint64)
            if link.id == BACKUP_LINK:
                nbytes[ts >= fail_us] += np.uint64(UTILISATION[FAILED_LINK] * BIN_BYTES_AT_FULL_SPEED)
            packets = nbytes // np.uint64(4000)
            ect = packets.copy()
            ce = np.where(congested, (ect * CONGESTION_CE_RATIO).astype(np.uint64), 0).astype(np.uint64)
            values = {
                "ts": ts, "exporter": np.full(n, "test", dtype=object), "link": np.full(n, link.id, dtype=object),
                "direction": np.full(n, direction, dtype=object), "leaf": np.full(n, link.leaf, dtype=object),
                "spine": np.full(n, link.spine, dtype=object), "ts_first": ts + 5,
                "ts_last": np.minimum(ts + 9_995, fail_us) if link.id == FAILED_LINK else ts + 9_995,
                "packets": packets, "bytes": nbytes, "roce_packets": packets,
                "roce_ect": ect, "roce_ce": ce, "cnp": np.where(congested, 20, 0).astype(np.uint64),
                "pfc_pause": np.where(congested, 3, 0).astype(np.uint64),
                "pfc_quanta": np.where(congested, 3 * 65535, 0).astype(np.uint64),
                "ts_first_ce": np.where(congested, ts + 100, 0), "ts_last_ce": np.where(congested, ts + 9_000, 0),
                "sampling_rate": np.ones(n, dtype=np.uint32),
            }
            for name, column in values.items():
                rows[name].append(np.asarray(column))
    columns = {name: np.concatenate(parts) for name, parts in rows.items()}
    for name in ("ts", "ts_first", "ts_last", "ts_first_ce", "ts_last_ce"):
        columns[name] = columns[name].astype("datetime64[us]")
    return _table("link_bins", columns)


def affected_flows() -> list[tuple[str, str, int, str]]:
    """(src, dst, roce_qp, direction on the failed link) of the flows leaf1-spine1 carried."""
    up = [(f"10.0.1.{i + 1}", f"10.0.3.{i + 1}", 100 + i, "up") for i in range(4)]
    down = [(f"10.0.2.{i + 1}", f"10.0.1.{i + 11}", 200 + i, "down") for i in range(4)]
    return up + down


BACKGROUND = (  # src, dst, link, direction, app, traffic_class, job, dst_port, bytes per second
    ("10.0.2.5", "10.0.4.5", "leaf2-spine2", "up", "rocev2", "collective", "job-a", 4791, 9_000_000_000),
    ("10.0.2.6", "10.0.4.6", "leaf2-spine1", "up", "rocev2", "collective", "job-a", 4791, 7_000_000_000),
    ("10.0.3.7", "10.0.2.7", "leaf3-spine1", "up", "nvme-tcp", "bulk", "", 4420, 3_000_000_000),
    ("10.0.4.8", "10.0.3.8", "leaf4-spine2", "up", "tls", "interactive", "", 443, 50_000_000),
    ("10.0.4.9", "10.0.1.9", "leaf4-spine1", "up", "ssh", "interactive", "", 22, 1_000_000),
)


def flows(fabric: Fabric) -> pa.Table:
    start_us, fail_us = _us(fabric.start), _us(fabric.fail)
    out: list[dict[str, object]] = []

    def row(t0: int, t1: int, link: str, direction: str, src: str, dst: str, dport: int, qp: int, app: str,
            traffic_class: str, job: str, nbytes: int) -> None:
        leaf, spine = link.split("-")
        out.append({"ts_start": t0, "ts_end": t1, "link": link, "direction": direction, "leaf": leaf,
                    "spine": spine, "src_ip": _ip(src), "dst_ip": _ip(dst), "src_port": 49152 + qp % 1000,
                    "dst_port": dport, "proto": 17 if dport == 4791 else 6, "roce_qp": qp, "packets": nbytes // 4000,
                    "bytes": nbytes, "app": app, "traffic_class": traffic_class, "job": job,
                    "ts_tail": max(t0, t1 - 200), "psn_first": 0, "psn_last": nbytes // 4000})

    for src, dst, qp, direction in affected_flows():
        delay = LOCAL_MS if direction == "up" else REMOTE_MS
        for second in range(SECONDS):
            t0 = start_us + second * 1_000_000
            t1 = t0 + 999_000
            if t1 < fail_us:
                row(t0, t1, FAILED_LINK, direction, src, dst, 4791, qp, "rocev2", "collective", "job-b", 2_000_000)
            elif t0 < fail_us:
                row(t0, fail_us, FAILED_LINK, direction, src, dst, 4791, qp, "rocev2", "collective", "job-b",
                    1_000_000)
                back = fail_us + int(delay * 1000)
                row(back, t1, BACKUP_LINK, direction, src, dst, 4791, qp, "rocev2", "collective", "job-b", 900_000)
            else:
                row(t0, t1, BACKUP_LINK, direction, src, dst, 4791, qp, "rocev2", "collective", "job-b", 2_000_000)
    for index, (src, dst, link, direction, app, traffic_class, job, dport, rate) in enumerate(BACKGROUND):
        for second in range(SECONDS):
            t0 = start_us + second * 1_000_000
            row(t0, t0 + 999_000, link, direction, src, dst, dport, 300 + index if dport == 4791 else 0, app,
                traffic_class, job, rate)
    columns: dict[str, object] = {name: [] for name in records.column_names("flows")}
    defaults = {"exporter": "test", "app_detail": "", "confidence": 1.0, "sampling_rate": 1,
                "outer_src_ip": bytes(16), "outer_dst_ip": bytes(16), "time_source": "capture"}
    for item in out:
        for name in columns:
            columns[name].append(item.get(name, defaults.get(name, 0)))  # type: ignore[attr-defined]
    for name in ("ts_start", "ts_end", "ts_tail"):
        columns[name] = np.array(columns[name], dtype=np.int64).astype("datetime64[us]")
    return _table("flows", columns)  # type: ignore[arg-type]


def events(fabric: Fabric) -> pa.Table:
    c0, c1 = fabric.congestion
    rows = [
        dict(ts=fabric.fail, ts_end=fabric.fail + timedelta(milliseconds=REMOTE_MS), kind="fast_recovery",
             severity="critical", link=FAILED_LINK, direction="", device="leaf1", job="",
             summary=f"{FAILED_LINK} failed; flows back in {REMOTE_MS} ms", convergence_ms=REMOTE_MS,
             local_convergence_ms=LOCAL_MS, remote_convergence_ms=REMOTE_MS, flows_affected=8, flows_recovered=8,
             packets_lost=PACKETS_LOST, value=None, details="{}"),
        dict(ts=c0, ts_end=c1, kind="congestion", severity="warning", link=CONGESTED_LINK, direction="down",
             device="", job="job-a", summary=f"ECN-CE on {CONGESTED_LINK} down", convergence_ms=None,
             local_convergence_ms=None, remote_convergence_ms=None, flows_affected=0, flows_recovered=0,
             packets_lost=0, value=CONGESTION_CE_RATIO, details=json.dumps({"jobs": ["job-a"]})),
        dict(ts=c0, ts_end=c1 + timedelta(seconds=1), kind="collective_slowdown", severity="warning", link="",
             direction="", device="", job="job-a", summary="job-a all-reduce 2.5x baseline", convergence_ms=None,
             local_convergence_ms=None, remote_convergence_ms=None, flows_affected=0, flows_recovered=0,
             packets_lost=0, value=SLOW_MS, details=json.dumps({"links": [CONGESTED_LINK]})),
    ]
    for number, row in enumerate(rows):
        row.update(event_id=f"incident-{number}", state="closed", updated=row["ts_end"])
    return pa.Table.from_pylist(rows, schema=records.arrow_schema("events"))


def iterations(fabric: Fabric) -> pa.Table:
    c0, c1 = fabric.congestion
    rows = []
    for job, normal in JOBS.items():
        for i in range(SECONDS * 1000 // PERIOD_MS):
            ts = fabric.start + timedelta(milliseconds=i * PERIOD_MS + (0 if job == "job-a" else 100))
            ms = SLOW_MS if job == "job-a" and c0 <= ts < c1 else normal
            links = [CONGESTED_LINK, "leaf2-spine1"] if job == "job-a" else [FAILED_LINK, BACKUP_LINK]
            rows.append(dict(ts=ts, ts_end=ts + timedelta(milliseconds=ms), exporter="test", job=job, iteration=i,
                             allreduce_ms=ms, period_ms=0.0 if i == 0 else float(PERIOD_MS), packets=1000,
                             bytes=4_000_000, flows=8, links=links))
    return pa.Table.from_pylist(rows, schema=records.arrow_schema("iterations"))


def counters(fabric: Fabric, topo: Topology) -> pa.Table:
    rows = []
    for (device, ifname), link in topo.counter_ports.items():
        for second in range(0, SECONDS + 1, 10):
            ts = fabric.start + timedelta(seconds=second)
            down = link == FAILED_LINK and device == "leaf1" and ts >= fabric.fail
            fcs = FCS_ERRORS * second // SECONDS if link == ERROR_LINK and device.startswith("leaf") else 0
            rows.append(dict(ts=ts, device=device, ifname=ifname, link=link, oper_up=0 if down else 1,
                             speed_bps=400_000_000_000, in_octets=second * 10**9, out_octets=second * 10**9,
                             in_pkts=second * 10**6, out_pkts=second * 10**6, in_errors=0, out_errors=0,
                             in_discards=0, out_discards=0, fcs_errors=fcs, pfc_rx_pause=0, pfc_tx_pause=0,
                             ecn_marked=0, source="gnmi"))
    return pa.Table.from_pylist(rows, schema=records.arrow_schema("counters"))


def fill(store: Store, now: datetime | None = None) -> Fabric:
    """Insert the minute into a migrated store; returns its times."""
    base = (now or datetime.now(UTC)) - timedelta(hours=1)
    start = base.replace(microsecond=0)
    fabric = Fabric(start=start, fail=start + timedelta(seconds=30, microseconds=123_456))
    topo = topology()
    store.insert_arrow("link_bins", link_bins(fabric, topo))
    store.insert_arrow("flows", flows(fabric))
    store.insert_arrow("events", events(fabric))
    store.insert_arrow("iterations", iterations(fabric))
    store.insert_arrow("counters", counters(fabric, topo))
    return fabric
