"""A synthetic fabric that never stops: scenario cycles generated one ahead and replayed in real time.

Each cycle is an ordinary scenario (simulator.scenario) whose start is the wall-clock time it will
be played at, so a live dashboard shows it as current traffic; the next cycle is generated in a background
thread while the current one plays. Every cycle carries a congestion episode and a link failure with
recovery, so the faults recur every `CYCLE_S` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from simulator.generator import Outputs, generate
from simulator.imbalance import ImbalanceRule
from simulator.scenario import load_scenario

CYCLE_S = 120
# A scale model: the synthetic jobs move about 8,000 times fewer bytes than real ones on 400G links, so the demo's
# links are 400G / 8,000 = 50 Mb/s and the map reads as a production fabric would (busiest links 30-45% over
# a window, all-reduce bursts near line rate in 100 ms counter samples, never above it).
SCALE = 8_000
SPEED_GBPS = 400 / SCALE
MIN_CYCLE_S = 20
JOB_PERIODS_LCM_MS = 600  # both jobs start an iteration on multiples of this (plus their start offsets)
LEAD_S = 2.0  # a cycle starts this long after it is asked for, to leave time to generate it

SCENARIO = """\
name: demo-{cycle}
start: "{start}"
duration_ms: {duration_ms}
seed: {seed}
incident_truth: true
capture: {{erspan_type: 3, snaplen: 160, ts_resolution: us}}
fabric: {{name: pod1, leaves: 4, spines: 2, hosts_per_leaf: 8, speed_gbps: {speed_gbps}}}
traffic:
  - {{kind: allreduce, job: llama-70b, hosts: 8, qps_per_pair: 1, period_ms: 200, burst_ms: 40, packet_gap_us: 1000,
     payload: 4096, message_packets: 8, start_ms: 2}}
  - {{kind: allreduce, job: vit-h, hosts: 4, qps_per_pair: 2, period_ms: 300, burst_ms: 30, packet_gap_us: 1000,
     payload: 4096, message_packets: 4, start_ms: 17}}
  - {{kind: p2p, hosts: 3, period_ms: 100, burst_ms: 5, packet_gap_us: 500, payload: 2048, message_packets: 2}}
  - {{kind: nvme_tcp, flows: 2, exchanges_per_s: 20, payload: 4096}}
  - {{kind: tls, flows: 2, exchanges_per_s: 5, payload: 1400, sni: ckpt-upload.blob.example.net}}
  - {{kind: c10d, flows: 2, exchanges_per_s: 2}}
  - {{kind: ssh, flows: 1, exchanges_per_s: 2}}
  - {{kind: dns, flows: 1, exchanges_per_s: 2}}
  - {{kind: vxlan, flows: 1, exchanges_per_s: 5, payload: 300, vni: 7002}}
  - {{kind: bgp, interval_ms: 1000}}
  - {{kind: bfd, interval_ms: 300}}
  - {{kind: lldp, interval_ms: 5000}}
faults:
  - {{kind: congestion, link: leaf4-spine2, direction: down, start_ms: {congestion_start_ms},
     end_ms: {congestion_end_ms}, peak_ce_ratio: 0.4, stretch: 1.5, pfc_interval_us: 2000}}
  - {{kind: link_failure, link: leaf3-spine1, at_ms: {failure_ms}, recover_ms: {recover_ms},
     local_convergence_ms: 1.2, remote_convergence_ms: 5.5}}
"""


class LiveFabric:
    """Scenario cycles of a synthetic fabric, each generated while the previous one plays.

    Iterating yields each cycle's outputs (pcap, counters, truth) once generated; the caller replays them in
    real time. A cycle's files are removed when the next one is taken, so the disk holds at most two.
    """

    def __init__(self, workdir: Path, *, imbalance: ImbalanceRule, cycle_s: int = CYCLE_S, seed: int = 1) -> None:
        if cycle_s < MIN_CYCLE_S:
            raise ValueError(f"a cycle needs at least {MIN_CYCLE_S} s for its congestion episode and failure")
        self.workdir = workdir
        self.cycle_s = cycle_s
        self.seed = seed
        self.imbalance = imbalance

    def __iter__(self) -> Iterator[Outputs]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fabricscope-generate") as pool:
            start = time.time() + LEAD_S
            upcoming = pool.submit(self.generate_cycle, 0, start)
            cycle = 0
            try:
                while True:
                    outputs = upcoming.result()
                    start += self.cycle_s
                    cycle += 1
                    upcoming = pool.submit(self.generate_cycle, cycle, start)
                    yield outputs
                    _remove(outputs)
            finally:
                _remove(upcoming.result())

    def generate_cycle(self, cycle: int, start_s: float) -> Outputs:
        """Cycle `cycle`'s files for a start at `start_s` (epoch seconds), as iterating makes them."""
        cycle_ms = self.cycle_s * 1000
        failure_ms = cycle_ms // 2 // JOB_PERIODS_LCM_MS * JOB_PERIODS_LCM_MS + 12.3  # inside a burst
        text = SCENARIO.format(
            cycle=cycle,
            speed_gbps=SPEED_GBPS,
            start=datetime.fromtimestamp(start_s, UTC).isoformat().replace("+00:00", "Z"),
            duration_ms=cycle_ms,
            seed=self.seed + cycle,
            congestion_start_ms=cycle_ms // 6,
            congestion_end_ms=cycle_ms * 2 // 7,
            failure_ms=failure_ms,
            recover_ms=failure_ms + cycle_ms // 6,
        )
        scenario_path = self.workdir / f"cycle-{cycle % 2}.scenario.yaml"
        scenario_path.write_text(text, encoding="utf-8")
        return generate(load_scenario(scenario_path), self.workdir / f"cycle-{cycle % 2}.pcap",
                        imbalance=self.imbalance)


def _remove(outputs: Outputs) -> None:
    for path in (outputs.pcap, outputs.counters, outputs.truth, outputs.topology):
        path.unlink(missing_ok=True)
