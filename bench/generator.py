"""Scenario generator throughput: ~1M mirrored packets of a dense all-reduce fabric, in packets/s.

Run from the repository root: .venv/bin/python -m bench.generator [--packets N]. Target: ≥100k packets/s (issue 2).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pipeline.detect.ecmp import EcmpConfig
from simulator.generator import generate
from simulator.scenario import load_scenario

SCENARIO = """
name: bench
duration_ms: {duration_ms}
seed: 5
capture: {{erspan_type: 3, snaplen: 128, ts_resolution: ns}}
fabric: {{name: pod1, leaves: 4, spines: 2, hosts_per_leaf: 8}}
traffic:
  - {{kind: allreduce, job: bench, hosts: 16, qps_per_pair: 4, period_ms: 10, burst_ms: 6, packet_gap_us: 12,
     payload: 4096, message_packets: 8}}
  - {{kind: nvme_tcp, flows: 8, exchanges_per_s: 2000, payload: 4096}}
  - {{kind: bfd, interval_ms: 1}}
faults:
  - {{kind: congestion, link: leaf2-spine1, direction: down, start_ms: 20, end_ms: 80}}
"""
RECORDS_PER_MS = 7_600  # mirrored copies per ms of the scenario above, measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packets", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.scenario.yaml"
        path.write_text(SCENARIO.format(duration_ms=max(1, args.packets // RECORDS_PER_MS)), encoding="utf-8")
        scenario = load_scenario(path)
        began = time.perf_counter()
        outputs = generate(scenario, Path(tmp) / "bench.pcap", progress=True, imbalance=EcmpConfig())
        elapsed = time.perf_counter() - began
        size = outputs.pcap.stat().st_size
    print(f"generator: {outputs.packets:,} packets ({size / 1e6:.1f} MB pcap + counters + truth) in {elapsed:.2f} s "
          f"= {outputs.packets / elapsed:,.0f} packets/s")


if __name__ == "__main__":
    main()
