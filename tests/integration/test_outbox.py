"""The outbox against the real tansu broker: Kafka away → buffered within budget, dropped rows counted, then
delivered in full when a broker appears; a disk buffer survives a restart of the source."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from pipeline_rows import random_flows

from fabricscope.outbox import Outbox, OutboxConfig
from pipeline import codec, records
from pipeline.broker import BrokerConfig, EmbeddedBroker
from pipeline.bus import BusConfig, Consumer

pytestmark = pytest.mark.integration

QUICK = {"backoff_s": 0.2, "backoff_max_s": 1.0, "ack_timeout_s": 5.0, "connect_timeout_s": 1.0}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rows_in_kafka(bus: BusConfig, expected: int) -> int:
    consumer = Consumer(bus, group=f"outbox-{time.monotonic_ns()}", topics=[records.topic("flows")]).start()
    rows = 0
    for _ in range(120):
        rows += sum(codec.decode("flows", record.value).num_rows for record in consumer.poll(250))
        if rows >= expected:
            break
    consumer.stop()
    return rows


def _wait_until_empty(outbox: Outbox, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while outbox.queued and time.monotonic() < deadline:
        time.sleep(0.1)


def test_records_wait_for_kafka_and_overflow_is_counted_not_silent(caplog: pytest.LogCaptureFixture) -> None:
    port = _free_port()
    bus = BusConfig(bootstrap=f"127.0.0.1:{port}")
    batches = [random_flows(2_000, seed=seed) for seed in range(6)]
    one_batch_bytes = sum(len(m.value) + len(m.key) for m in codec.encode("flows", batches[0]))
    outbox = Outbox(bus, OutboxConfig(memory_bytes=int(one_batch_bytes * 3.5), **QUICK)).start()
    for batch in batches:
        outbox.put("flows", batch)
    delivery = outbox.delivery
    deadline = time.monotonic() + 30
    while delivery.reconnects < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert delivery.sent["flows"] == 0 and not delivery.connected and delivery.reconnects >= 1
    assert delivery.dropped["flows"] > 0, "six batches cannot fit a 3.5-batch budget"
    assert "dropping new records" in caplog.text

    with EmbeddedBroker(BrokerConfig(port=port)) as broker:
        _wait_until_empty(outbox, 60)
        assert outbox.stop(timeout_s=10) == 0
        accepted = 6 * 2_000 - delivery.dropped["flows"]
        assert delivery.sent["flows"] == accepted
        assert delivery.memory_bytes == 0 and delivery.oldest_queued_s is None
        assert _rows_in_kafka(broker.bus_config(), accepted) == accepted


def test_a_disk_buffer_is_sent_by_the_next_run(tmp_path: Path) -> None:
    port = _free_port()
    bus = BusConfig(bootstrap=f"127.0.0.1:{port}")
    config = OutboxConfig(memory_bytes=0, disk_dir=tmp_path / "buffer", **QUICK)
    first = Outbox(bus, config).start()
    batch = random_flows(3_000, seed=7)
    first.put("flows", batch)
    assert first.stop(timeout_s=1) > 0
    assert first.delivery.dropped["flows"] == 0
    assert list((tmp_path / "buffer").glob("*.flows.msg"))

    with EmbeddedBroker(BrokerConfig(port=port)) as broker:
        second = Outbox(bus, config)
        assert second.delivery.disk_bytes == 0  # nothing read before start()
        second.start()
        _wait_until_empty(second, 60)
        assert second.stop(timeout_s=10) == 0
        assert second.delivery.sent["flows"] == 3_000
        assert not list((tmp_path / "buffer").glob("*.msg"))
        rows = _rows_in_kafka(broker.bus_config(), 3_000)
    assert rows == 3_000
