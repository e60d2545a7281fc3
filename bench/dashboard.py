"""Dashboard query latency on a store holding ≥10M flow rows: p50/p95 per panel, for each time range.

Fills an embedded store (a fresh temporary directory unless --data-dir names a filled one) with an hour
of a busy 8-link fabric generated with numpy: `--rows` flow rows (2,800 flows exporting every second),
10 ms link bins for every link direction, counters, events and iterations, all through the real
migrations so the rollups fill as in production. Then runs, for each panel, exactly the queries its
callback runs (dashboards/queries.py, read-only, bound), `--repeat` times per time range, and prints
p50/p95 in ms. Target (issue 6): every panel ≤150 ms p95.
With --leaves/--spines the fabric is generated at that size (issue 16: 64 × 16 = 1,024 links) and its 10 ms
bins cover only the last --bin-minutes (2,048 link directions make 204,800 bins a second).
Run from the repository root: .venv/bin/python -m bench.dashboard [--rows 10000000]
[--leaves 64 --spines 16 --bin-minutes 5].
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from dashboards import queries
from dashboards.search import MAX_MATCHES
from dashboards.state import RANGES
from pipeline import records
from pipeline.migrate import migrate
from pipeline.store import Store, StoreConfig, embedded_dsn
from pipeline.topology import Topology, load_topology
from simulator.fabric import Fabric
from simulator.scenario import FabricSpec

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "samples" / "topology.yaml"
BATCH_ROWS = 1_000_000
FLOWS = 2_800
HOUR_S = 3_600
TARGET_P95_MS = 150.0
APPS = ("rocev2", "rocev2-cnp", "nvme-tcp", "tls", "ssh", "bgp")
CLASSES = ("collective", "control", "bulk", "interactive", "interactive", "control")
BUSY_HOST = "10.0.1.1"  # the flow panel is timed unfiltered and with this host filter
SEARCHED = "10.0.1."  # what the search panel is timed with: an address prefix matching many hosts


def _strings(values: tuple[str, ...], codes: np.ndarray) -> pa.Array:
    """A string column from small-integer codes without building millions of Python strings."""
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(values)).cast(pa.string())


def _addresses(hosts: np.ndarray) -> pa.Array:
    """IPv4 hosts 10.0.x.y as v4-mapped IPv6 in 16-byte cells."""
    raw = np.zeros((len(hosts), 16), dtype=np.uint8)
    raw[:, 10:12] = 0xFF
    raw[:, 12] = 10
    raw[:, 14] = (hosts // 250 % 4 + 1).astype(np.uint8)
    raw[:, 15] = (hosts % 250 + 1).astype(np.uint8)
    return pa.array(raw.view("S16").ravel(), type=pa.binary(16))


def flow_batches(topology: Topology, rows: int, start: datetime, seed: int = 1) -> list[pa.Table]:
    """`rows` flow rows: FLOWS flows, each one row per export second on its link, spread over the hour."""
    rng = np.random.default_rng(seed)
    links = topology.links
    flow_link = rng.integers(0, len(links), FLOWS)
    flow_src, flow_dst = rng.integers(0, 1000, FLOWS), rng.integers(0, 1000, FLOWS)
    flow_app = rng.integers(0, len(APPS), FLOWS)
    flow_dir = rng.integers(0, 2, FLOWS)
    start_us = int(start.timestamp() * 1_000_000)
    schema = records.arrow_schema("flows")
    batches = []
    for first in range(0, rows, BATCH_ROWS):
        n = min(BATCH_ROWS, rows - first)
        index = np.arange(first, first + n)
        flow = index % FLOWS
        second = (index // FLOWS) * HOUR_S // max(rows // FLOWS, 1)
        ts_start = start_us + second * 1_000_000 + rng.integers(0, 1000, n)
        packets = rng.integers(10, 50_000, n).astype(np.uint64)
        link = flow_link[flow]
        columns = {
            "ts_start": pa.array(ts_start.astype("datetime64[us]"), type=schema.field("ts_start").type),
            "ts_end": pa.array((ts_start + 999_000).astype("datetime64[us]"), type=schema.field("ts_end").type),
            "exporter": _strings(("bench",), np.zeros(n)),
            "link": _strings(tuple(x.id for x in links), link),
            "direction": _strings(("up", "down"), flow_dir[flow]),
            "leaf": _strings(tuple(x.leaf for x in links), link),
            "spine": _strings(tuple(x.spine for x in links), link),
            "src_ip": _addresses(flow_src[flow]), "dst_ip": _addresses(flow_dst[flow]),
            "src_port": pa.array((49152 + flow % 10000).astype(np.uint16)),
            "dst_port": pa.array(np.where(flow_app[flow] < 2, 4791, 443).astype(np.uint16)),
            "proto": pa.array(np.full(n, 17, dtype=np.uint8)), "roce_qp": pa.array(flow.astype(np.uint32)),
            "packets": pa.array(packets), "bytes": pa.array(packets * np.uint64(4000)),
            "ecn_ect": pa.array(packets), "ecn_ce": pa.array(packets // np.uint64(50)),
            "cnp": pa.array(packets // np.uint64(500)),
            "app": _strings(APPS, flow_app[flow]), "traffic_class": _strings(CLASSES, flow_app[flow]),
            "job": _strings(("", "job-a"), (flow_app[flow] == 0).astype(int)),
            "app_detail": _strings(("",), np.zeros(n)), "confidence": pa.array(np.ones(n, dtype=np.float32)),
            "sampling_rate": pa.array(np.ones(n, dtype=np.uint32)),
            "ts_tail": pa.array((ts_start + 998_000).astype("datetime64[us]"), type=schema.field("ts_tail").type),
            "outer_src_ip": pa.array([bytes(16)] * n, type=pa.binary(16)),  # ::, no tunnel
            "outer_dst_ip": pa.array([bytes(16)] * n, type=pa.binary(16)),
            "time_source": _strings(("capture",), np.zeros(n)),
        }
        arrays = [columns.get(f.name) or pa.array(np.zeros(n, dtype=f.type.to_pandas_dtype()), type=f.type)
                  for f in schema]
        batches.append(pa.Table.from_arrays(arrays, schema=schema))
    return batches


def link_bin_batches(topology: Topology, start: datetime, seconds: int) -> Iterator[pa.Table]:
    """Every link direction's 10 ms bins for `seconds` from `start`, a little CE everywhere and PFC on one
    link."""
    schema = records.arrow_schema("link_bins")
    slots = seconds * 100
    start_us = int(start.timestamp() * 1_000_000)
    for link in topology.links:
        for direction in ("up", "down"):
            ts = start_us + np.arange(slots, dtype=np.int64) * records.LINK_BIN_US
            packets = np.full(slots, 10_000, dtype=np.uint64)
            columns = {
                "ts": ts, "ts_first": ts + 3, "ts_last": ts + 9_990, "ts_first_ce": ts + 5, "ts_last_ce": ts + 9_000,
                "exporter": _strings(("bench",), np.zeros(slots)),
                "link": _strings((link.id,), np.zeros(slots)),
                "direction": _strings((direction,), np.zeros(slots)),
                "leaf": _strings((link.leaf,), np.zeros(slots)), "spine": _strings((link.spine,), np.zeros(slots)),
                "packets": packets, "bytes": packets * np.uint64(4000), "roce_packets": packets,
                "roce_ect": packets, "roce_ce": packets // np.uint64(100), "cnp": packets // np.uint64(1000),
                "pfc_pause": np.full(slots, 2 if link.index == 3 else 0, dtype=np.uint64),
                "pfc_quanta": np.zeros(slots, dtype=np.uint64), "sampling_rate": np.ones(slots, dtype=np.uint32),
            }
            arrays = []
            for field in schema:
                value = columns[field.name]
                if isinstance(value, np.ndarray) and pa.types.is_timestamp(field.type):
                    value = pa.array(value.astype("datetime64[us]"), type=field.type)
                arrays.append(value if isinstance(value, pa.Array) else pa.array(value, type=field.type))
            yield pa.Table.from_arrays(arrays, schema=schema)


def small_tables(topology: Topology, start: datetime) -> dict[str, pa.Table]:
    """Counters every 10 s, a failure and congestion events every 5 minutes, iterations every 100 ms."""
    counters, events, iterations = [], [], []
    for (device, ifname), link in topology.counter_ports.items():
        for second in range(0, HOUR_S, 10):
            counters.append(dict(ts=start + timedelta(seconds=second), device=device, ifname=ifname, link=link,
                                 oper_up=1, speed_bps=400 * 10**9, in_octets=second * 10**10,
                                 out_octets=second * 10**10, in_pkts=second, out_pkts=second, in_errors=0,
                                 out_errors=0, in_discards=0, out_discards=0, fcs_errors=second // 600,
                                 pfc_rx_pause=0, pfc_tx_pause=0, ecn_marked=0, source="gnmi"))
    for minute in range(0, 60, 5):
        at = start + timedelta(minutes=minute, seconds=30)
        base = dict(direction="down", device="", job="job-a", convergence_ms=None, local_convergence_ms=None,
                    remote_convergence_ms=None, flows_affected=0, flows_recovered=0, packets_lost=0, value=None,
                    details="{}")
        base.update(state="closed", updated=at + timedelta(seconds=5))
        events.append({**base, "event_id": f"{2 * minute:016x}", "ts": at, "ts_end": at + timedelta(milliseconds=3),
                       "kind": "fast_recovery",
                       "severity": "critical", "link": "leaf1-spine1", "summary": "failure", "convergence_ms": 3.0,
                       "local_convergence_ms": 1.0, "remote_convergence_ms": 3.0, "flows_affected": 40,
                       "flows_recovered": 40, "packets_lost": 9})
        events.append({**base, "event_id": f"{2 * minute + 1:016x}", "ts": at, "ts_end": at + timedelta(seconds=4),
                       "kind": "congestion",
                       "severity": "warning", "link": "leaf2-spine2", "summary": "CE", "value": 0.3})
    for i in range(HOUR_S * 10):
        ts = start + timedelta(milliseconds=100 * i)
        iterations.append(dict(ts=ts, ts_end=ts + timedelta(milliseconds=12), exporter="bench", job="job-a",
                               iteration=i, allreduce_ms=12.0, period_ms=100.0, packets=1000, bytes=4 * 10**6,
                               flows=16, links=["leaf1-spine1", "leaf2-spine2"]))
    return {name: pa.Table.from_pylist(rows, schema=records.arrow_schema(name))
            for name, rows in (("counters", counters), ("events", events), ("iterations", iterations))}


def fill(store: Store, topology: Topology, rows: int, start: datetime, bin_minutes: int = 60) -> None:
    began = time.perf_counter()
    for batch in flow_batches(topology, rows, start):
        store.insert_arrow("flows", batch)
        print(f"  flows: {batch.num_rows} rows, {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    if bin_minutes:
        bins_start = start + timedelta(seconds=HOUR_S - bin_minutes * 60)
        for batch in link_bin_batches(topology, bins_start, bin_minutes * 60):
            store.insert_arrow("link_bins", batch)
    for name, table in small_tables(topology, start).items():
        store.insert_arrow(name, table)
    print(f"  filled in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)


def panels(store: Store, topology: Topology, start: datetime, end: datetime,
           now: datetime) -> dict[str, Callable[[], None]]:
    """Each panel's queries, in the order its callback runs them."""
    links = len(topology.links)

    def fabric() -> None:
        tables = set(queries.run(store, queries.existing_tables())["name"])
        source = queries.traffic_source(start, end, now, tables, links)
        for query in (queries.link_traffic(start, end, source), queries.link_counters(start, end),
                      queries.link_events(start, end), queries.leaf_hosts(start, end)):
            queries.run(store, query)

    def congestion() -> None:
        tables = set(queries.run(store, queries.existing_tables())["name"])
        source = queries.traffic_source(start, end, now, tables, links)
        for query in (queries.iterations(start, end, "", ""), queries.slowdowns(start, end, ""),
                      queries.congestion_series(start, end, "", source), queries.congestion_events(start, end, "", "")):
            queries.run(store, query)

    def recovery() -> None:
        events = queries.run(store, queries.recovery_events(start, end, ""))
        if len(events):
            at = events.iloc[0]["ts"].to_pydatetime().replace(tzinfo=UTC)
            queries.run(store, queries.recovery_event("leaf1-spine1", at))
            queries.run(store, queries.recovery_flows("leaf1-spine1", at, 3.0))

    def flows(selection: queries.FlowFilter) -> Callable[[], None]:
        def run() -> None:
            tables = set(queries.run(store, queries.existing_tables())["name"])
            talkers = queries.talkers_source(start, end, now, tables)
            mix = queries.mix_source(start, end, now, tables)
            for query in (queries.top_talkers(start, end, selection, talkers),
                          queries.traffic_mix(start, end, selection, mix, talkers),
                          queries.flow_table(start, end, selection)):
                queries.run(store, query)
        return run

    def latest() -> None:
        queries.run(store, queries.latest())

    def search() -> None:
        tables = set(queries.run(store, queries.existing_tables())["name"])
        source = queries.talkers_source(start, end, now, tables)
        queries.run(store, queries.search(start, end, SEARCHED, MAX_MATCHES, source))

    return {"window": latest, "fabric+ecmp": fabric, "congestion": congestion, "recovery": recovery,
            "flows": flows(queries.FlowFilter()), "flows host": flows(queries.FlowFilter(host=BUSY_HOST)),
            "search": search}


def measure(run: Callable[[], None], repeat: int) -> tuple[float, float]:
    run()  # warm: first use of a part loads its marks
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        run()
        times.append((time.perf_counter() - began) * 1000)
    return statistics.median(times), float(np.percentile(times, 95))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="flow rows to insert (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per panel and range")
    parser.add_argument("--data-dir", help="use (and keep) this store directory; filled when empty")
    parser.add_argument("--leaves", type=int, help="generate a fabric of this many leaves (with --spines)")
    parser.add_argument("--spines", type=int, help="generate a fabric of this many spines (with --leaves)")
    parser.add_argument("--bin-minutes", type=int, default=60, help="minutes of 10 ms link bins, ending with the "
                        "hour of flows (default %(default)s)")
    parser.add_argument("--ranges", default=",".join(RANGES),
                        help="time ranges to time, ending at the newest data (default: every range the picker offers)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fabricscope-bench-") as scratch:
        topology = load_topology(TOPOLOGY) if args.leaves is None else Fabric(
            FabricSpec(name="big", leaves=args.leaves, spines=args.spines or 1)).write_topology(
            Path(scratch) / "topology.yaml", mirrored=False)
        print(f"fabric: {len(topology.leaves)} leaves × {len(topology.spines)} spines = {len(topology.links):,} links")
        directory = Path(args.data_dir) if args.data_dir else Path(scratch) / "store"
        store = Store(StoreConfig(dsn=embedded_dsn(directory), database="bench", create_database=True)).open()
        try:
            migrate(store)
            held = store.query("SELECT count() FROM flows").rows[0][0]
            start = (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
            if held < args.rows:
                print(f"filling {directory} with {args.rows} flow rows …", file=sys.stderr, flush=True)
                fill(store, topology, args.rows, start, args.bin_minutes)
            counts = {t: store.query(f"SELECT count() FROM {t}").rows[0][0] for t in ("flows", "link_bins")}
            print(f"store: {counts['flows']:,} flow rows, {counts['link_bins']:,} link bins")
            newest = queries.latest_time(queries.run(store, queries.latest()))
            assert newest is not None
            end = newest.to_pydatetime().replace(tzinfo=UTC) + timedelta(microseconds=1)
            now = datetime.now(UTC)
            print(f"{'range':>6} {'panel':<12} {'p50 ms':>8} {'p95 ms':>8}")
            worst = 0.0
            for name in args.ranges.split(","):
                for panel, run in panels(store, topology, end - RANGES[name], end, now).items():
                    p50, p95 = measure(run, args.repeat)
                    worst = max(worst, p95)
                    flag = "" if p95 <= TARGET_P95_MS else "  over target"
                    print(f"{name:>6} {panel:<12} {p50:8.1f} {p95:8.1f}{flag}", flush=True)
            print(f"worst p95 {worst:.1f} ms (target ≤{TARGET_P95_MS:.0f} ms)")
        finally:
            store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
