"""An incident open when `ingest` is killed is the same incident after it starts again: the detectors'
checkpoint, through the real broker, the real `ingest` process and the real store; the restarted one takes
the settings it is configured with, and says which changed. And the checkpoint holds what the detectors took
after the last record came: rows the clock let go once the partitions went quiet.

A congestion episode of a generated capture spans the kill: the records before it are consumed by one
`ingest`, which is killed with SIGKILL while the episode is open; the records after it are produced while
nothing runs, and a second `ingest` finishes the load. The store must hold one congestion incident, opened
by the first process and closed by the second, timed as the truth says.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from collectors.collector import Collector
from collectors.replay import replay_batches
from pipeline.bus import BusConfig, Producer
from pipeline.counterfile import read_counters
from pipeline.detect.checkpoint import load_checkpoint
from pipeline.detect.ecmp import EcmpConfig
from pipeline.detect.engine import DetectorSet
from pipeline.detect.service import DetectorService, DetectorServiceConfig
from pipeline.detect.watermark import WatermarkConfig
from pipeline.topology import load_topology
from simulator.generator import generate
from simulator.scenario import load_scenario

pytestmark = pytest.mark.integration

FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
IDLE_S = 10.0  # far longer than reading the whole sample takes: its rows are still held when the last one comes
WAIT_S = 120
SPLIT_MS = 2500  # inside the congestion episode (1000-3200 ms), more than the lateness bound after its start
SCENARIO = """
name: restart
start: "2026-03-01T10:00:00Z"
duration_ms: 4500
seed: 5
capture: {erspan_type: 3, snaplen: 128, ts_resolution: us}
fabric: {name: pod1, leaves: 4, spines: 2, hosts_per_leaf: 2}
traffic:
  - {kind: allreduce, job: llama, hosts: 8, qps_per_pair: 1, period_ms: 150, burst_ms: 20, packet_gap_us: 500,
     payload: 4096, message_packets: 8, start_ms: 3}
  - {kind: bfd, interval_ms: 100}
faults:
  - {kind: congestion, link: leaf4-spine2, direction: down, start_ms: 1000, end_ms: 3200, peak_ce_ratio: 0.4,
     stretch: 1.5, pfc_interval_us: 2000}
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def split_records(pcap: Path, counters: Path, topology: Path, split_us: int
                         ) -> tuple[list[tuple[str, dict]], list[tuple[str, dict]]]:
    """The collector's batches (and the counters) cut at `split_us`: (table, batch) before and after."""
    topo = load_topology(topology)
    steps = [(table, columns) for records in Collector(topo).run(replay_batches([pcap], progress=False))
             for table, columns in records.tables()]
    steps += [("counters", batch) for batch in read_counters(counters)]
    before: list[tuple[str, dict]] = []
    after: list[tuple[str, dict]] = []
    for table, columns in steps:
        column = "ts_start" if table == "flows" else "ts"
        times = columns[column].astype("datetime64[us]").astype("int64")
        early = times < split_us
        before.append((table, {name: values[early] for name, values in columns.items()}))
        after.append((table, {name: values[~early] for name, values in columns.items()}))
    return before, after


def send(bus: BusConfig, batches: list[tuple[str, dict]]) -> int:
    producer = Producer(bus).start()
    try:
        sent = sum(producer.send_batch(table, batch) for table, batch in batches if len(next(iter(batch.values()))))
        producer.flush()
    finally:
        producer.stop()
    return sent


def ingest(broker: str, topology: Path, data_dir: Path, *extra: str, settings: str = "") -> list[str]:
    """`ingest` of the test's groups, with `settings` added to the detectors' configuration. The whole second
    part is in Kafka before it starts, and the consumer may read one link's partition seconds ahead of
    another's: past the detectors' lateness bound, which could end the episode by silence on the lagging
    link (a batch load's limit, stated in the detectors' README). A long `idle_ms` keeps this test about the
    restart."""
    config = data_dir.parent / "ingest.yaml"
    config.write_text(f"detectors:\n  congestion: {{idle_ms: 60000}}\n{settings}")
    return [*FABRICSCOPE, "ingest", "--kafka", broker, "--topology", str(topology), "--data-dir", str(data_dir),
            "--group", f"sink-{data_dir.parent.name}", "--detect-group", f"detect-{data_dir.parent.name}",
            "--config", str(config), *extra]


def test_an_incident_open_when_ingest_is_killed_is_the_same_incident_after_the_restart(
        broker: str, clean_topics: list[str], tmp_path: Path) -> None:
    scenario = tmp_path / "restart.scenario.yaml"
    scenario.write_text(SCENARIO)
    outputs = generate(load_scenario(scenario), tmp_path / "restart.pcap", imbalance=EcmpConfig())
    truth = json.loads(outputs.truth.read_text())
    (episode,) = [event for event in truth["events"] if event["kind"] == "congestion"]
    bus = BusConfig(bootstrap=broker)
    before, after = split_records(outputs.pcap, outputs.counters, outputs.topology,
                                         truth["start_us"] + SPLIT_MS * 1000)
    sent = send(bus, before)
    data_dir = tmp_path / "store"
    checkpoint = data_dir / "detectors" / f"detect-{tmp_path.name}.state"
    log = tmp_path / "first-ingest.log"
    with log.open("w") as stderr:
        first = subprocess.Popen(ingest(broker, outputs.topology, data_dir, "--metrics", f"127.0.0.1:{free_port()}"),
                                 stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        # Killed once a saved state holds every record sent and the episode open. The episode may open a
        # checkpoint after the last record: the detectors' clock moves past a partition that has gone quiet
        # only once it has been quiet for the watermark's idle time.
        deadline = time.monotonic() + 120
        state = None
        while time.monotonic() < deadline and first.poll() is None:
            state = load_checkpoint(checkpoint, None) if checkpoint.is_file() else None
            if state is not None and sum(state.offsets.values()) == sent and state.detectors.open_incidents >= 1:
                break
            time.sleep(0.5)
        assert state is not None and sum(state.offsets.values()) == sent, log.read_text()
        assert state.detectors.open_incidents >= 1, log.read_text()  # the episode is open in the state saved
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
    send(bus, after)
    done = subprocess.run(ingest(broker, outputs.topology, data_dir, "--until-idle", "6", "--metrics", "off",
                                 settings="  link_health: {flap_transitions: 4}\n"),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "detector setting changed since the checkpoint: link_health.flap_transitions 3 -> 4" in done.stderr
    query = subprocess.run([*FABRICSCOPE, "query", "SELECT event_id, state, toUnixTimestamp64Micro(ts) AS ts "
                            "FROM events WHERE kind = 'congestion' ORDER BY updated", "--format", "json",
                            "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    rows = json.loads(query.stdout)
    assert {row["event_id"] for row in rows} == {rows[0]["event_id"]}, rows  # one incident
    assert rows[0]["state"] == "open" and rows[-1]["state"] == "closed"  # opened before the kill, closed after
    assert int(rows[-1]["ts"]) == episode["ts_us"]


def test_rows_the_clock_lets_go_after_the_last_record_are_in_the_saved_state(
        bus_config: BusConfig, clean_topics: list[str], tmp_path: Path) -> None:
    """Every record is read, and the state saved, while the clock still holds the rows of the links that sent
    later than the failed one; the clock lets them go once the partitions have been quiet for `idle_s`. A
    state saved only when records come keeps them held, and what the detectors made of them (an incident
    opened) out of it, until the next record, which on a quiet fabric may be never."""
    topology = load_topology(SAMPLES / "topology.yaml")
    batches = [(table, columns) for step in Collector(topology).run(
        replay_batches([SAMPLES / "link_failure.pcap"], progress=False)) for table, columns in step.tables()]
    sent = send(bus_config, batches)
    checkpoint = tmp_path / "detect.state"
    detecting = DetectorService(
        DetectorServiceConfig(group=f"detect-{tmp_path.name}", poll_timeout_ms=50, checkpoint=checkpoint,
                              checkpoint_s=0.0, watermark=WatermarkConfig(idle_s=IDLE_S)),
        bus=bus_config, detectors=DetectorSet(topology)).start()
    try:
        deadline = time.monotonic() + WAIT_S
        states = []
        while time.monotonic() < deadline:
            state = load_checkpoint(checkpoint, topology) if checkpoint.is_file() else None
            if state is not None and sum(state.offsets.values()) == sent:
                states.append(state)
                if state.watermark.held_rows == 0:
                    break
            time.sleep(0.1)
        assert states, "the detectors never saved a state holding every record"
        assert states[0].watermark.held_rows > 0  # the case this test is about: rows held when the last came
        assert states[-1].watermark.held_rows == 0, "the rows the clock let go were never saved"
    finally:
        detecting.stop()
