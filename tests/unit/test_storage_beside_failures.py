"""Failures of a fabric that carries continuous storage traffic (nvme-tcp exchanges every 5 ms) beside the
all-reduce, through the generator, the collector and the detectors: exactly the truth's incidents, with its
convergence. Each shape here once gave a wrong event: a flap whose flows into the leaf took longer than
`window_ms` to reroute (reported on the far side instead), a failure repaired after 2 s (the storage flows
going back through the spine were reported as a failure of the link they left), a storage flow's first row
on its new link holding 2 packets (its recovery read one exchange late). A collector that restarts (its flow
table lost, 1.5 s of packets never seen) must change nothing."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from collectors.collector import Collector, CollectorConfig
from collectors.packets import PacketBatch
from collectors.replay import replay_batches
from fabricscope.commands.demo import scenario_jobs
from pipeline.counterfile import read_counters
from pipeline.detect.ecmp import EcmpConfig
from pipeline.detect.engine import DetectorSet
from pipeline.detect.events import Event
from pipeline.streaming import TimedBatches, interleave_by_time
from pipeline.topology import load_topology
from simulator.generator import Outputs, generate
from simulator.scenario import load_scenario

SCENARIO = """
name: storage
duration_ms: 12000
seed: 7
capture: {erspan_type: 2, snaplen: 128, ts_resolution: us}
fabric: {name: pod1, leaves: 4, spines: 2, hosts_per_leaf: 2}
traffic:
  - {kind: allreduce, job: llama, hosts: 8, qps_per_pair: 1, period_ms: 200, burst_ms: 40, packet_gap_us: 1000,
     payload: 4096, message_packets: 8, start_ms: 2}
  - {kind: nvme_tcp, flows: 4, exchanges_per_s: 200, payload: 4096}
  - {kind: bfd, interval_ms: 300}
faults:
  - {kind: link_flap, link: leaf4-spine2, down_ms: 5000.3, up_ms: 5062.1, local_convergence_ms: 1.8,
     remote_convergence_ms: 6.7}
  - {kind: link_failure, link: leaf2-spine1, at_ms: 8000, recover_ms: 10000, local_convergence_ms: 1.0,
     remote_convergence_ms: 4.0}
"""
KINDS = {"fast_recovery", "link_down", "link_up", "link_flap", "congestion"}
RESTART_MS = (2000, 3500)  # the collector is down: packets in this span are never seen


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    path = tmp_path_factory.mktemp("storage") / "storage.scenario.yaml"
    path.write_text(SCENARIO)
    return generate(load_scenario(path), path.with_name("storage.pcap"), imbalance=EcmpConfig())


def kept(batches: Iterator[PacketBatch], keep: Callable[[np.ndarray], np.ndarray]) -> Iterator[PacketBatch]:
    for batch in batches:
        rows = np.flatnonzero(keep(batch.ts_ns))
        if len(rows):
            yield dataclasses.replace(batch, offset=batch.offset[rows], caplen=batch.caplen[rows],
                                      wirelen=batch.wirelen[rows], ts_ns=batch.ts_ns[rows],
                                      interface=batch.interface[rows])


def incidents(outputs: Outputs, *, paced: bool, restart: bool) -> list[Event]:
    """Each incident's latest row; with `restart`, a new collector takes over after RESTART_MS."""
    topology = load_topology(outputs.topology)
    config = CollectorConfig(job_names=scenario_jobs(outputs.truth))
    start_ns = json.loads(outputs.truth.read_text())["start_us"] * 1000
    down, up = (start_ns + ms * 1_000_000 for ms in RESTART_MS)

    def batches() -> Iterator[PacketBatch]:
        return replay_batches([outputs.pcap], speed=1e9 if paced else None, progress=False)

    def steps() -> Iterator[list[tuple[str, dict[str, np.ndarray]]]]:
        if not restart:
            yield from (step.tables() for step in Collector(topology, config).run(batches()))
            return
        yield from (step.tables() for step in Collector(topology, config).run(kept(batches(), lambda ts: ts < down)))
        yield from (step.tables() for step in Collector(topology, config).run(kept(batches(), lambda ts: ts >= up)))

    detectors = DetectorSet(topology)
    events: list[Event] = []
    for table, batch in interleave_by_time(steps(), [TimedBatches("counters", read_counters(outputs.counters))]):
        events += detectors.update(table, batch)
    events += detectors.flush()
    return list({str(e["event_id"]): e for e in events}.values())


@pytest.mark.parametrize("restart", [False, True], ids=["whole", "collector-restart"])
@pytest.mark.parametrize("paced", [True, False], ids=["paced", "bulk"])
def test_exactly_the_truths_incidents_with_its_convergence(storage: Outputs, paced: bool, restart: bool) -> None:
    found = [e for e in incidents(storage, paced=paced, restart=restart) if e["kind"] in KINDS]
    truth = [t for t in json.loads(storage.truth.read_text())["events"] if t["kind"] in KINDS]
    assert Counter((str(e["kind"]), str(e["link"])) for e in found) == Counter(
        (t["kind"], t["link"]) for t in truth), [e["summary"] for e in found]
    measured = sorted((str(e["link"]), e["local_convergence_ms"], e["remote_convergence_ms"])
                      for e in found if e["kind"] == "fast_recovery")
    assert measured == sorted((t["link"], t["local_convergence_ms"], t["remote_convergence_ms"])
                              for t in truth if t["kind"] == "fast_recovery")
