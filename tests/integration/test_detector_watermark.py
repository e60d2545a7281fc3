"""Two collectors, one per spine, whose flow rows reach Kafka far apart: the spine1 collector's whole capture
(where leaf2's flows come back after the failure of leaf2-spine2) is in and read before the spine2
collector's rows from 50 ms on (the failed link's last packets). Read as they come, the failed link looks
silent from 50 ms while its flows show up on spine1, and the failure is timed ~50 ms early. The detectors'
clock waits for the spine2 collector, so the convergence is the generator's truth. The flows topic has two
partitions here, each holding links of both collectors, so both are sources of each from the start (a
partition with nothing to read would hold the clock until idle, and hide what this test is about). The
real broker, the real DetectorService; the rows are the collector's own from the sample capture."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from collectors.collector import Collector
from collectors.replay import replay_batches
from pipeline import codec, records
from pipeline.bus import Admin, BusConfig, Producer
from pipeline.detect.engine import DetectorSet
from pipeline.detect.events import latest_rows
from pipeline.detect.service import DetectorService, DetectorServiceConfig
from pipeline.detect.watermark import WatermarkConfig
from pipeline.topology import load_topology

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE = "link_failure"
FIRST_MS = 50  # the spine2 collector's rows ending before this go with the spine1 collector's
WAIT_S = 120
IDLE_S = 60.0  # longer than the test's pause between the two collectors' rows: neither is judged idle


def flow_rows_by_collector() -> dict[str, dict[str, np.ndarray]]:
    """The sample's flow rows as two collectors, one per spine, would export them (each its own exporter)."""
    topology = load_topology(SAMPLES / "topology.yaml")
    parts = [columns for step in Collector(topology).run(replay_batches([SAMPLES / f"{SAMPLE}.pcap"], progress=False))
             for table, columns in step.tables() if table == "flows"]
    flows = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    by_collector = {}
    for spine in ("spine1", "spine2"):
        mine = flows["spine"] == spine
        by_collector[spine] = {name: column[mine] for name, column in flows.items()}
        by_collector[spine]["exporter"] = np.full(int(mine.sum()), f"collector-{spine}", dtype=object)
    return by_collector


def send(bus: BusConfig, batch: dict[str, np.ndarray]) -> int:
    producer = Producer(bus).start()
    try:
        sent = producer.send_batch("flows", batch)
        producer.flush()
    finally:
        producer.stop()
    return sent


def events_produced(bootstrap: str) -> list[dict]:
    """Every event row on the events topic (read until nothing more comes: the broker's end offsets are wrong)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    topic = records.topic("events")
    consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())])
    consumer.seek_to_beginning()
    rows: list[dict] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 2.0:
        polled = consumer.poll(timeout_ms=200)
        for batch in polled.values():
            rows += [row for message in batch for row in codec.decode("events", message.value).to_pylist()]
        if polled:
            quiet_since = time.monotonic()
    consumer.close()
    return rows


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_the_clock_waits_for_a_collector_whose_rows_come_later(
        bus_config: BusConfig, clean_topics: list[str], tmp_path: Path) -> None:
    rows = flow_rows_by_collector()
    truth = json.loads((SAMPLES / f"{SAMPLE}.truth.json").read_text())
    want = next(event for event in truth["events"] if event["kind"] == "fast_recovery")
    flows_topic = records.topic("flows")
    Admin(bus_config).delete_topics([flows_topic])
    Admin(bus_config).create_topics([flows_topic], partitions=2)
    first = rows["spine2"]["ts_end"] < np.datetime64(truth["start_us"] + FIRST_MS * 1000, "us")
    assert first.any() and not first.all()
    detecting = DetectorService(
        DetectorServiceConfig(group=f"detect-{tmp_path.name}", poll_timeout_ms=50,
                              watermark=WatermarkConfig(idle_s=IDLE_S)),
        bus=bus_config, detectors=DetectorSet(load_topology(SAMPLES / "topology.yaml"))).start()
    try:
        sent = send(bus_config, {name: column[first] for name, column in rows["spine2"].items()})
        sent += send(bus_config, rows["spine1"])
        wait_until(lambda: detecting.counts().messages >= sent, "the detectors to read the spine1 collector's rows")
        sent += send(bus_config, {name: column[~first] for name, column in rows["spine2"].items()})
        wait_until(lambda: detecting.counts().messages >= sent, "the detectors to read the rest")
    finally:
        detecting.stop()  # no checkpoint: the rows waiting for the clock and the open incidents are emitted
    (failure,) = [row for row in latest_rows(events_produced(bus_config.bootstrap)) if row["kind"] == "fast_recovery"]
    assert failure["link"] == want["link"]
    assert abs(failure["local_convergence_ms"] - want["local_convergence_ms"]) <= 0.05
    assert abs(failure["remote_convergence_ms"] - want["remote_convergence_ms"]) <= 0.05
    assert (failure["flows_affected"], failure["flows_recovered"], failure["packets_lost"]) == (
        want["flows_affected"], want["flows_recovered"], want["packets_lost"])
