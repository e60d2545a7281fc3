"""The demo's cycles, replayed as the demo batches them (paced batch sizes, counters interleaved by time, the
detectors fed the collector's records directly), give exactly the link and congestion events their truth
lists. Cycle 0 starts when a demo run showed a phantom 28 ms flap on the congested link as the failed one
came back (pruned rows read as a silence); the batches do not depend on the pacing's sleeps, so replaying
without them gives the same rows in the same steps."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from collectors.collector import Collector, CollectorConfig
from collectors.replay import replay_batches
from fabricscope.commands.demo import scenario_jobs
from pipeline.counterfile import read_counters
from pipeline.detect.ecmp import EcmpConfig
from pipeline.detect.engine import DetectorSet
from pipeline.detect.events import Event
from pipeline.streaming import TimedBatches, interleave_by_time
from pipeline.topology import load_topology
from simulator.live import LiveFabric

PHANTOM_START_S = datetime.fromisoformat("2026-12-06T22:42:21.960453+00:00").timestamp()
KINDS = {"fast_recovery", "link_down", "link_up", "link_flap", "congestion"}
NO_SLEEP = 1e9  # a pace so fast no batch waits, with the paced batch sizes


Incidents = Counter[tuple[str, str]]  # (kind, link) -> how many


def detected(outputs_dir: Path, cycle: int, start_s: float) -> tuple[Incidents, Incidents]:
    """The incidents the detectors found in the cycle, and those its truth lists."""
    outputs = LiveFabric(outputs_dir, imbalance=EcmpConfig(), cycle_s=60).generate_cycle(cycle, start_s)
    topology = load_topology(outputs.topology)
    collector = Collector(topology, CollectorConfig(job_names=scenario_jobs(outputs.truth)))
    detectors = DetectorSet(topology)
    steps = (step.tables() for step in collector.run(replay_batches([outputs.pcap], speed=NO_SLEEP, progress=False)))
    events: list[Event] = []
    for table, batch in interleave_by_time(steps, [TimedBatches("counters", read_counters(outputs.counters))]):
        events += detectors.update(table, batch)
    events += detectors.flush()
    incidents = {str(e["event_id"]): e for e in events}  # an incident's latest row
    found = Counter((str(e["kind"]), str(e["link"])) for e in incidents.values() if e["kind"] in KINDS)
    truth = json.loads(outputs.truth.read_text())["events"]
    return found, Counter((t["kind"], t["link"]) for t in truth if t["kind"] in KINDS)


@pytest.mark.parametrize("cycle", range(4))
def test_a_demo_cycle_gives_the_link_events_of_its_truth_and_no_other(cycle: int, tmp_path: Path) -> None:
    start_s = PHANTOM_START_S + 60 * cycle + (random.Random(cycle).random() if cycle else 0.0)
    found, expected = detected(tmp_path, cycle, start_s)
    assert found == expected
