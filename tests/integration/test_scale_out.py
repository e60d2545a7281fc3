"""Beyond one machine, the part that runs here: two collectors (`fabricscope replay --kafka`, each mirroring
the uplinks to one spine, as a collector per group of mirror sessions would) produce into one broker while
three `ingest` members share the record topics (one of them also detecting). Nothing is lost or doubled,
every link's records stay in one partition, and the failure both collectors saw half of is one incident,
measured exactly though the collectors start seconds apart (the detectors' clock waits for both, named).

The members run as threads of this process around the session's one chdb store (a second process cannot
open it, DESIGN section 3); the collectors are real subprocesses. Ground truth is the generator's.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from pipeline import codec, records
from pipeline.bus import BusConfig
from pipeline.detect.engine import DetectorSet
from pipeline.detect.service import DetectorService, DetectorServiceConfig
from pipeline.detect.watermark import WatermarkConfig
from pipeline.sink import Sink, SinkConfig
from pipeline.store import Store
from pipeline.topology import load_topology

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SAMPLE = "link_failure"
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
MEMBERS = 3
WAIT_S = 120
SINK = {"batch_rows": 20_000, "batch_wait_s": 0.2}
LATE_START_S = 5.0  # the second collector's start after the first's: more than the watermark's idle_s
PCAP_HEADER, RECORD_HEADER = 24, 16


def erspan_session(frame: bytes) -> int:
    """The ERSPAN (type II or III) session id of a mirrored copy: Ethernet, outer IPv4, GRE (C/K/S words
    optional), then the session in the low 10 bits of the ERSPAN header's second 16-bit word."""
    ip = 14
    gre = ip + (frame[ip] & 0x0F) * 4
    flags = frame[gre]
    erspan = gre + 4 + 4 * sum(bool(flags & bit) for bit in (0x80, 0x20, 0x10))
    return int(struct.unpack_from("!H", frame, erspan + 2)[0]) & 0x3FF


def split_by_spine(pcap: Path, out: Path) -> dict[int, Path]:
    """The capture cut in two by the spine its ERSPAN session mirrors (session = 10 * leaf + spine)."""
    data = pcap.read_bytes()
    parts: dict[int, list[bytes]] = defaultdict(lambda: [data[:PCAP_HEADER]])
    offset = PCAP_HEADER
    while offset < len(data):
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        end = offset + RECORD_HEADER + caplen
        parts[erspan_session(data[offset + RECORD_HEADER:end]) % 10].append(data[offset:end])
        offset = end
    paths = {}
    for spine, chunks in parts.items():
        paths[spine] = out / f"{SAMPLE}.spine{spine}.pcap"
        paths[spine].write_bytes(b"".join(chunks))
    return paths


def topic_messages(bootstrap: str, table: str) -> list[tuple[int, bytes, bytes]]:
    """Every (partition, key, value) of a record topic, read by a consumer of no group from the start (the
    broker's end offsets are wrong, DESIGN section 3: read until nothing more comes)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    topic = records.topic(table)
    consumer.assign([TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())])
    consumer.seek_to_beginning()
    found: list[tuple[int, bytes, bytes]] = []
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < 2.0:
        polled = consumer.poll(timeout_ms=200)
        for batch in polled.values():
            found.extend((message.partition, message.key, message.value) for message in batch)
        if polled:
            quiet_since = time.monotonic()
    consumer.close()
    return found


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_two_collectors_and_three_ingest_members_on_one_broker(
        bus_config: BusConfig, clean_topics: list[str], store: Store, tmp_path: Path) -> None:
    group = f"scale-{tmp_path.name}"
    sinks = [Sink(SinkConfig(group=group, **SINK), bus=bus_config, store=store).start() for _ in range(MEMBERS)]
    # The collectors start LATE_START_S apart, more than the watermark's idle_s, while the detecting member
    # reads: unnamed, the first one's rows were fed alone and convergence came out 84.882 ms against 1.761.
    watermark = WatermarkConfig(collectors=tuple(f"collector-spine{spine}" for spine in (1, 2)))
    detecting = DetectorService(DetectorServiceConfig(group=f"{group}-detect", watermark=watermark),
                                bus=bus_config, detectors=DetectorSet(load_topology(SAMPLES / "topology.yaml")))
    try:
        flows_topic = records.topic("flows")
        wait_until(lambda: all(s.assigned() for s in sinks)
                   and sum(tp.topic == flows_topic for s in sinks for tp in s.assigned()) == 4,
                   "every ingest member to take partitions")
        detecting.start()
        captures = split_by_spine(SAMPLES / f"{SAMPLE}.pcap", tmp_path)
        collectors = []
        for spine, pcap in sorted(captures.items()):
            if collectors:
                time.sleep(LATE_START_S)
            collectors.append(subprocess.Popen(
                [*FABRICSCOPE, "replay", str(pcap), "--topology", str(SAMPLES / "topology.yaml"), "--kafka",
                 bus_config.bootstrap, "--exporter", f"collector-spine{spine}", "--no-progress",
                 *(["--counters", str(SAMPLES / f"{SAMPLE}.counters.jsonl")] if spine == 1 else [])],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        for collector in collectors:
            _, err = collector.communicate(timeout=WAIT_S)
            assert collector.returncode == 0, err
        produced = topic_messages(bus_config.bootstrap, "flows")
        produced_rows = sum(codec.decode("flows", value).num_rows for _, _, value in produced)
        wait_until(lambda: sum(s.stats.rows["flows"] for s in sinks) >= produced_rows, "the flow rows")
        wait_until(lambda: detecting.counts().rows.get("flows", 0) >= produced_rows, "the detectors to read them")
        detecting.stop()  # no checkpoint: what the detectors hold is emitted (the input is complete)
        wait_until(lambda: sum(s.stats.rows["events"] for s in sinks) >= detecting.events, "the events")
    finally:
        detecting.stop()  # a second stop() is a no-op
        for sink in sinks:
            sink.stop()

    partitions_of: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, value in produced:
        assert set(codec.decode("flows", value).column("link").to_pylist()) == {key.decode()}
        partitions_of[key].add(partition)
    assert all(len(partitions) == 1 for partitions in partitions_of.values()), partitions_of
    assert len(partitions_of) == 8 and len(set().union(*partitions_of.values())) > 1
    assert all(s.stats.rows["flows"] > 0 for s in sinks)  # the members shared the work

    truth = json.loads((SAMPLES / f"{SAMPLE}.truth.json").read_text())
    rows, packets, exporters = store.query("SELECT count(), sum(packets), uniqExact(exporter) FROM flows").rows[0]
    assert (int(rows), int(packets), int(exporters)) == (produced_rows, truth["packets"], 2)
    assert int(packets) == sum(flow["packets"] for flow in truth["flows"])
    doubled = store.query("SELECT count() FROM (SELECT event_id, state, updated FROM events "
                          "GROUP BY ALL HAVING count() > 1)").rows[0][0]
    assert int(doubled) == 0
    for kind in ("fast_recovery", "link_down"):
        want = [event for event in truth["events"] if event["kind"] == kind]
        got = store.query("SELECT link FROM incidents WHERE kind = {kind:String}", parameters={"kind": kind}).rows
        assert [row[0] for row in got] == [event["link"] for event in want], kind
    (local, remote, affected, recovered, lost), = store.query(
        "SELECT local_convergence_ms, remote_convergence_ms, flows_affected, flows_recovered, packets_lost "
        "FROM incidents WHERE kind = 'fast_recovery'").rows
    want = next(event for event in truth["events"] if event["kind"] == "fast_recovery")
    assert abs(local - want["local_convergence_ms"]) <= 0.05 and abs(remote - want["remote_convergence_ms"]) <= 0.05
    assert (affected, recovered, lost) == (want["flows_affected"], want["flows_recovered"], want["packets_lost"])
