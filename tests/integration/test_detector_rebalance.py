"""A second member joining the detectors' group while they run: the commit that falls in the rebalance is
refused (RebalancedError, nothing committed), the member rejoins and commits what it owns then, and the
detectors neither fail nor lose a record. The real broker and kafka-python; the second member is a plain
KafkaConsumer of the same group."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from kafka.structs import TopicPartition
from pipeline_rows import random_flows

from pipeline import records
from pipeline.bus import BusConfig, Consumer, Producer
from pipeline.detect.checkpoint import load_checkpoint
from pipeline.detect.engine import DetectorSet
from pipeline.detect.service import DetectorService, DetectorServiceConfig
from pipeline.errors import RebalancedError
from pipeline.topology import load_topology

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
WAIT_S = 90


def produce(bus: BusConfig, rows: int, seed: int) -> int:
    producer = Producer(bus).start()
    try:
        sent = producer.send_batch("flows", random_flows(rows, seed=seed))
        producer.flush()
    finally:
        producer.stop()
    return sent


class SecondMember:
    """A plain consumer joining `group` in a thread; it polls (keeping its membership) until told to leave."""

    def __init__(self, bus: BusConfig, group: str) -> None:
        self.assigned: set[TopicPartition] = set()
        self.leave = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(bus, group), daemon=True)

    def _run(self, bus: BusConfig, group: str) -> None:
        consumer = KafkaConsumer(bootstrap_servers=bus.bootstrap, group_id=group, enable_auto_commit=False,
                                 session_timeout_ms=bus.session_timeout_ms,
                                 heartbeat_interval_ms=bus.heartbeat_interval_ms)
        consumer.subscribe([records.topic("flows")])
        while not self.leave.is_set():
            consumer.poll(timeout_ms=100)
            self.assigned = set(consumer.assignment())
        consumer.close(autocommit=False)

    def __enter__(self) -> SecondMember:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.leave.set()
        self._thread.join(timeout=WAIT_S)


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_a_commit_during_a_rebalance_is_refused_and_the_member_commits_what_it_owns_after(
        bus_config: BusConfig, clean_topics: list[str]) -> None:
    sent = produce(bus_config, 5_000, seed=3)
    first = Consumer(bus_config, group="rebalance-bus", topics=[records.topic("flows")]).start()
    try:
        read: dict[TopicPartition, int] = {}

        def read_all() -> bool:
            for record in first.poll(200):
                read[TopicPartition(record.topic, record.partition)] = record.offset + 1
            return sum(read.values()) >= sent  # offsets from 0 on clean topics

        wait_until(read_all, "the first member to read every message")
        refused = []
        with SecondMember(bus_config, "rebalance-bus") as second:
            def commit_refused() -> bool:
                first.poll(50)  # rejoining starts here, after the heartbeat told of the new member
                try:
                    first.commit(read)
                except RebalancedError as exc:
                    refused.append(exc)
                return bool(refused)

            wait_until(commit_refused, "a commit inside the rebalance")
            wait_until(lambda: not first.poll(50) and first.assignment() and second.assigned
                       and first.assignment().isdisjoint(second.assigned), "the partitions to be shared")
            owned = first.assignment()
            first.commit({tp: offset for tp, offset in read.items() if tp in owned})
            assert all(first.committed(tp) == read[tp] for tp in owned if tp in read)
    finally:
        first.stop()


def test_the_detectors_go_on_through_a_rebalance_and_commit_every_record_they_hold(
        bus_config: BusConfig, clean_topics: list[str], tmp_path: Path) -> None:
    """Records keep coming while a second member joins and leaves; the service commits every poll's state
    (checkpoint_s 0), so its commits meet the rebalance. At the end its checkpoint covers every message and
    the group's committed offsets are the checkpoint's."""
    group = f"detect-{tmp_path.name}"
    checkpoint = tmp_path / "detect.state"
    service = DetectorService(DetectorServiceConfig(group=group, checkpoint=checkpoint, checkpoint_s=0.0,
                                                    poll_timeout_ms=50),
                              bus=bus_config, detectors=DetectorSet(load_topology(SAMPLES / "topology.yaml")))
    service.start()
    sent = 0
    try:
        sent += produce(bus_config, 2_000, seed=1)
        wait_until(lambda: service.counts().messages >= sent, "the detectors to read the first records")
        with SecondMember(bus_config, group) as second:
            seed = 2
            while not second.assigned:
                sent += produce(bus_config, 200, seed=seed)
                seed += 1
                time.sleep(0.05)
        sent += produce(bus_config, 200, seed=seed)
        state = None

        def covered() -> bool:
            nonlocal state
            state = load_checkpoint(checkpoint, None) if checkpoint.is_file() else None
            return state is not None and sum(state.offsets.values()) == sent

        wait_until(covered, "the checkpoint to cover every message")
    finally:
        service.stop()  # re-raises what made the service fail
    state = load_checkpoint(checkpoint, None)
    assert state is not None and sum(state.offsets.values()) == sent
    reader = Consumer(bus_config, group=group, topics=[records.topic("flows")]).start()
    try:
        assert {where: reader.committed(TopicPartition(*where)) for where in state.offsets} == state.offsets
    finally:
        reader.stop()
