"""With --kafka the detectors run in `ingest`, another process: the capture host's recorder learns of their
incidents from the events topic (pipeline.event_feed) and pins the segments of the incident's window. The
incident is produced to the real (embedded) broker; which segments it covers comes from the times this
test gave the packets."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.roce import BTH
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether

from collectors.collector import Collector
from collectors.packets import PacketBatch
from collectors.recorder import Recorder, RecorderConfig
from pipeline.bus import BusConfig, Producer
from pipeline.detect.engine import event_columns
from pipeline.detect.events import make_event
from pipeline.event_feed import EventFeed
from pipeline.topology import load_topology

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SECOND = 1_000_000_000
START = 1_760_000_000 * SECOND
PER_SECOND = 100
WAIT_S = 60


def second_of_traffic(second: int) -> PacketBatch:
    frame = bytes(Ether() / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1)
                  / ERSPAN_II(session_id=11) / Ether() / IP(src="10.0.1.5", dst="10.0.2.7")
                  / UDP(sport=49152, dport=4791) / BTH(opcode=0x0A, dqpn=7, psn=second))
    n = PER_SECOND
    return PacketBatch(data=np.frombuffer(frame * n, dtype=np.uint8),
                       offset=np.arange(n, dtype=np.int64) * len(frame),
                       caplen=np.full(n, len(frame), np.uint32), wirelen=np.full(n, len(frame), np.uint32),
                       ts_ns=START + second * SECOND + np.arange(n, dtype=np.int64) * (SECOND // n),
                       interface=np.zeros(n, np.uint16), interfaces=("",))


def test_an_incident_from_the_events_topic_pins_its_segments(bus_config: BusConfig, clean_topics: list[str],
                                                              tmp_path: Path) -> None:
    topology = load_topology(SAMPLES / "topology.yaml")
    recorder = Recorder(tmp_path / "packets", topology,
                        RecorderConfig(segment_s=1.0, pin_before_s=0.1, pin_after_s=0.1))
    collector = Collector(topology, recorder=recorder)
    for second in range(10):
        collector.process(second_of_traffic(second))
    failed_us = (START + 4 * SECOND + SECOND // 2) // 1000
    incident = make_event("fast_recovery", ts=failed_us, ts_end=failed_us + 200_000, severity="warning",
                          summary="leaf1-spine1 failed", link="leaf1-spine1")
    producer = Producer(bus_config).start()
    producer.send_batch("events", event_columns([incident]))
    producer.flush()
    producer.stop()
    feed = EventFeed(bus_config, group=f"test-recorder-{uuid.uuid4().hex[:8]}",
                     on_events=recorder.on_events).start()
    deadline = time.monotonic() + WAIT_S
    while feed.batches == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    feed.stop()
    recorder.close()
    assert feed.batches == 1
    pinned = sorted(int(path.name.split("-")[0]) for path in recorder.pinned.glob("*.pcapng"))
    assert pinned == [START + 4 * SECOND]  # 4.4 s to 4.8 s: the segment of second 4 alone
    assert len(list(recorder.rolling.glob("*.pcapng"))) == 9
