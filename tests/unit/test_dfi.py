"""DFI on hand-built flow rows: collectives and their jobs from burst timing, p2p chains, bulk by rate,
control and interactive by behaviour and app role, and none of it depending on payloads."""

from __future__ import annotations

import ipaddress
import itertools
from typing import Any

import numpy as np

from collectors.dfi import ROW_COLUMNS, FlowWindow, classify_flows
from collectors.dfi_jobs import BurstTrains
from pipeline.labels import TRAFFIC_CLASSES

T0_US = 1_768_471_200_000_000  # 2026-01-15T10:00:00Z
RNG = np.random.default_rng(3)


def ip(address: str) -> bytes:
    value = ipaddress.ip_address(address)
    mapped = ipaddress.IPv6Address(f"::ffff:{value}") if value.version == 4 else value
    return mapped.packed


def row(src: str, dst: str, *, sport: int = 40000, dport: int = 4791, proto: int = 17, qp: int = 0,
        packets: int = 100, size: int = 1000, duration_us: int = 400_000, app: str = "unknown", dscp: int = 0,
        bursts: list[int] | None = None, **counters: int) -> dict[str, Any]:
    """One flow row; `counters` sets cnp/roce_* (RoCE data rows default to all-WRITE)."""
    roce = dport == 4791 and proto == 17
    values = {"roce_write": packets if roce and not counters else 0, "roce_read": 0, "roce_send": 0,
              "roce_ack": 0, "cnp": 0, **counters}
    return {
        "ts_start": np.datetime64(T0_US, "us"), "ts_end": np.datetime64(T0_US + duration_us, "us"),
        "src_ip": ip(src), "dst_ip": ip(dst), "src_port": sport, "dst_port": dport, "proto": proto, "vni": 0,
        "dscp": dscp, "roce_qp": qp, "packets": packets, "bytes": packets * size, "app": app,
        "confidence": 0.0 if app == "unknown" else 0.5,
        "bursts": bursts or [], **values,
    }


def window(rows: list[dict[str, Any]]) -> FlowWindow:
    columns: dict[str, np.ndarray] = {}
    for name in ROW_COLUMNS:
        values = [r[name] for r in rows]
        columns[name] = np.array(values, dtype=object) if name in ("src_ip", "dst_ip", "app") else np.array(values)
    trains = [np.asarray(r["bursts"], dtype=np.int64) for r in rows]
    offsets = np.concatenate([[0], np.cumsum([len(t) for t in trains])]).astype(np.int64)
    starts = np.concatenate(trains) if trains else np.zeros(0, dtype=np.int64)
    return FlowWindow(columns, BurstTrains(starts.astype(np.int64), offsets))


def periodic(period_us: int, count: int = 5, phase_us: int = 0, jitter_us: int = 300) -> list[int]:
    base = T0_US + phase_us + np.arange(count) * period_us
    return (base + RNG.integers(0, jitter_us + 1, count)).tolist()


def ring(hosts: list[str], period_us: int = 100_000, phase_us: int = 0, qp_base: int = 0x100) -> list[dict]:
    """Ring all-reduce rows: i writes to i+1, the ACKs come back; each data flow mirrored on two links."""
    rows = []
    for i, src in enumerate(hosts):
        dst = hosts[(i + 1) % len(hosts)]
        bursts = periodic(period_us, phase_us=phase_us)
        for link_delay in (0, 5):
            rows.append(row(src, dst, sport=50000 + i, qp=qp_base + i, bursts=[b + link_delay for b in bursts]))
        rows.append(row(dst, src, sport=51000 + i, qp=qp_base + 0x80 + i, packets=25, size=60, roce_ack=25,
                        bursts=bursts))
    return rows


def classes(rows: list[dict]) -> tuple[list[str], list[str]]:
    result = classify_flows(window(rows))
    return [TRAFFIC_CLASSES[c] for c in result.traffic_class], list(result.job)


def test_ring_all_reduce_is_one_collective_job_acks_included() -> None:
    hosts = ["10.0.1.3", "10.0.2.3", "10.0.3.3", "10.0.4.3"]
    labels, jobs = classes(ring(hosts))
    assert set(labels) == {"collective"}
    assert set(jobs) == {"job-10.0.1.3"}


def test_two_jobs_with_one_period_are_told_apart_by_phase() -> None:
    first = ["10.0.1.1", "10.0.2.1", "10.0.3.1"]
    second = ["10.0.1.2", "10.0.2.2", "10.0.3.2"]
    rows = ring(first, phase_us=0) + ring(second, phase_us=40_000, qp_base=0x400)
    labels, jobs = classes(rows)
    assert set(labels) == {"collective"}
    members = {name: set() for name in jobs}
    for r, name in zip(rows, jobs, strict=True):
        members[name] |= {r["src_ip"], r["dst_ip"]}
    assert members == {"job-10.0.1.1": {ip(h) for h in first}, "job-10.0.1.2": {ip(h) for h in second}}


def test_pipeline_chain_in_step_is_p2p_without_job() -> None:
    stages = ["10.0.1.4", "10.0.2.4", "10.0.3.4"]
    rows = [row(a, b, sport=52000 + i, qp=0x200 + i, bursts=periodic(50_000))
            for i, (a, b) in enumerate(itertools.pairwise(stages))]
    assert classes(rows) == (["p2p", "p2p"], ["", ""])


def test_ring_with_irregular_bursts_is_p2p() -> None:
    hosts = ["10.0.1.5", "10.0.2.5", "10.0.3.5"]
    rows = [row(h, hosts[(i + 1) % 3], sport=53000 + i, qp=0x300 + i,
                bursts=(T0_US + np.cumsum(RNG.integers(10_000, 200_000, 6))).tolist())
            for i, h in enumerate(hosts)]
    labels, jobs = classes(rows)
    assert labels == ["p2p"] * 3
    assert jobs == [""] * 3


def test_ring_whose_flows_burst_out_of_step_is_not_a_job() -> None:
    hosts = ["10.0.1.6", "10.0.2.6", "10.0.3.6"]
    rows = [row(h, hosts[(i + 1) % 3], sport=54000 + i, qp=0x500 + i, bursts=periodic(100_000, phase_us=30_000 * i))
            for i, h in enumerate(hosts)]
    assert classes(rows)[0] == ["p2p"] * 3


def test_cnp_and_l2_flows_are_control() -> None:
    rows = [
        row("10.0.2.3", "10.0.1.3", qp=0x900, packets=12, size=66, roce_write=0, cnp=12),
        {**row("::", "::", sport=0, dport=0x88CC, proto=0, packets=2, size=120), "app": "lldp"},
    ]
    assert classes(rows)[0] == ["control", "control"]


def test_fast_or_large_conversations_are_bulk_whatever_their_app() -> None:
    fast = row("10.0.1.7", "10.0.3.7", sport=41000, dport=47123, proto=6, packets=400_000, size=1500,
               duration_us=400_000)
    ack = row("10.0.3.7", "10.0.1.7", sport=47123, dport=41000, proto=6, packets=200_000, size=66,
              duration_us=400_000)
    assert classes([fast, ack])[0] == ["bulk", "bulk"]


def test_small_slow_conversations_take_the_role_of_their_app() -> None:
    rows = [
        row("10.0.1.8", "10.0.2.8", sport=41001, dport=22, proto=6, packets=20, size=120, app="ssh"),
        row("10.0.1.8", "10.0.2.8", sport=41002, dport=29500, proto=6, packets=20, size=90, app="torch-c10d"),
        row("10.0.1.8", "10.0.2.8", sport=41003, dport=4420, proto=6, packets=60, size=600, app="nvme-tcp"),
        row("10.0.1.8", "10.0.2.8", sport=41004, dport=47123, proto=17, packets=20, size=250),
        row("10.0.1.8", "10.0.2.8", sport=41005, dport=6000, proto=6, packets=20, size=100),
        row("10.0.1.8", "10.0.2.8", sport=41006, dport=47124, proto=17, packets=20, size=100, dscp=48),
    ]
    assert classes(rows)[0] == ["interactive", "control", "bulk", "other", "interactive", "control"]


def test_roce_classes_do_not_depend_on_the_app_label() -> None:
    hosts = ["10.0.1.9", "10.0.2.9", "10.0.3.9"]
    labelled = ring(hosts)
    truncated = [{**r, "app": "unknown"} for r in labelled]
    assert classes(labelled) == classes(truncated)
    assert set(classes(truncated)[0]) == {"collective"}


def test_a_flow_takes_the_app_of_its_most_confident_row() -> None:
    early = {**row("10.0.1.8", "10.0.2.8", sport=41007, dport=53, proto=17, packets=2, size=80), "app": ""}
    later = row("10.0.1.8", "10.0.2.8", sport=41007, dport=53, proto=17, packets=2, size=80, app="dns")
    assert classes([early, later])[0] == ["interactive", "interactive"]


def test_empty_window() -> None:
    result = classify_flows(window([]))
    assert len(result.traffic_class) == len(result.job) == 0
