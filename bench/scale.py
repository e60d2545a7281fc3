"""Issue 17's figures from one run, each next to its peer or target, on one machine at one load.

In order, each printing its own lines as it goes (the benches they come from say how they measure):
1. `bench.workers`: `replay --out` with 1 and N workers, whole processes, interleaved, beside `tshark -T
   fields` on the same capture, start-up, and whether the flow rows of N workers equal those of one;
2. `bench.pipeline`: flow rows/s from the producer through Kafka and the sink into ClickHouse, fabric-shaped
   rows (the target's) and random ones;
3. `bench.detectors`: the detectors' flow rows/s, and a fast_recovery's delay from the convergence to
   readable in ClickHouse;
4. `bench.event_insert`: an event's Kafka → ClickHouse time while flow rows stream through the sink;
5. `bench.big_fabric`: each fabric size through the production processes.
Then one summary table. The defaults keep the run near half an hour; `--minutes 10` gives issue 17's
10-minute big-fabric runs. Run from the repository root: .venv/bin/python -m bench.scale
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from bench import big_fabric, detectors, event_insert, pipeline, workers
from collectors.workers import available_cores

TARGET_ROWS_S = 300_000
TARGET_TSHARK = 50
TARGET_EVENT_S = 1.0


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=workers.PACKETS, help="packets of the workers' capture")
    parser.add_argument("--workers", type=int, default=available_cores(), help="N (default: the cores)")
    parser.add_argument("--runs", type=int, default=2, help="interleaved runs of 1 and N workers")
    parser.add_argument("--rows", type=int, default=1_000_000, help="flow rows through the pipeline")
    parser.add_argument("--events", type=int, default=8, help="events timed through the sink")
    parser.add_argument("--sizes", default="16x4,128x16", help="big-fabric sizes, LEAVESxSPINES,...")
    parser.add_argument("--minutes", type=float, default=2.0, help="fabric time per big-fabric size")
    args = parser.parse_args()
    loads = [load()]
    print("== 1. collector: 1 and N workers beside tshark", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        collector = workers.measure(args.packets, args.workers, args.runs, Path(tmp))
    workers.report(collector)
    print("\n== 2. pipeline end to end", flush=True)
    pipeline_rows_s = {shape: pipeline.measure(args.rows, shape) for shape in pipeline.SHAPES}
    print("\n== 3. detectors", flush=True)
    detector = detectors.measure()
    print("\n== 4. events through the sink under flow load", flush=True)
    event_delays = event_insert.measure(args.events)
    print("\n== 5. big fabric", flush=True)
    fabric_args = big_fabric.options().parse_args(["--minutes", str(args.minutes)])
    fabrics = []
    with tempfile.TemporaryDirectory(prefix="fabricscope-big-") as scratch:
        for size in args.sizes.split(","):
            leaves, spines = (int(part) for part in size.split("x"))
            fabrics.append(big_fabric.run_size(leaves, spines, fabric_args, Path(scratch)))
            big_fabric.report(fabrics[-1])
    loads.append(load())

    one, many, n = collector.best(1), collector.best(args.workers), args.workers
    print(f"\n== issue 17, one run (load average {loads[0]} at the start, {loads[1]} at the end)")
    rows = [
        ("collector, 1 worker", f"{one:,.0f} pkts/s = {one / collector.tshark:.1f}x tshark "
                                f"({collector.tshark:,.0f} pkts/s)", f">= {TARGET_TSHARK}x tshark"),
        (f"collector, {n} workers", f"{many:,.0f} pkts/s = {many / one:.2f}x one worker",
         f">= {0.85 * n:.2f}x"),
        ("flow rows, N workers vs 1", f"{len(collector.rows[n]):,} vs {len(collector.rows[1]):,}: "
                                      f"{'equal' if collector.rows_equal else 'DIFFERENT'}", "equal"),
        (f"start-up (first {workers.STARTUP_PACKETS:,} packets)",
         f"{min(cpu for _, cpu in collector.startup):.2f} s CPU", "< 0.3 s"),
        ("pipeline end to end", f"{pipeline_rows_s['fabric']:,.0f} flow rows/s as a fabric exports them "
                                f"({pipeline_rows_s['random']:,.0f} on random rows)", f">= {TARGET_ROWS_S:,}"),
        ("detectors", f"{detector.flow_rows_per_s:,.0f} flow rows/s", f">= {TARGET_ROWS_S:,}"),
        ("fast_recovery in ClickHouse after convergence",
         ", ".join("never" if v is None else f"{v:.2f} s" for v in detector.stored_after_s.values()),
         f"<= {TARGET_EVENT_S:.0f} s"),
        ("event Kafka -> ClickHouse under flow load",
         f"median {statistics.median(event_delays):.2f} s, max {max(event_delays):.2f} s",
         f"<= {TARGET_EVENT_S:.0f} s"),
    ]
    for fabric in fabrics:
        state = f"STOPPED: {fabric.failed.lstrip('; ')}" if fabric.failed else "kept real time"
        latency = "never" if fabric.detector_stored_s is None else f"{fabric.detector_stored_s:.2f} s"
        rows.append((f"big fabric {fabric.size} ({fabric.links:,} links)",
                     f"{state}; sink {fabric.ingest_rss_mb:,.0f} MB, detectors {fabric.detectors_rss_mb:,.0f} MB and "
                     f"{fabric.detector_rows_per_s:,.0f} rows/s, event in ClickHouse {latency} after convergence, "
                     f"dashboard p95 {max(fabric.dashboard_p95_ms.values(), default=0):.0f} ms", "keeps real time"))
    width = max(len(name) for name, _, _ in rows)
    for name, figure, target in rows:
        print(f"  {name:<{width}}  {figure}  [target {target}]")


if __name__ == "__main__":
    main()
