"""The bus against the real tansu broker: batches round trip, groups commit, topics can be deleted."""

from __future__ import annotations

import pyarrow as pa
import pytest
from kafka.structs import TopicPartition
from pipeline_rows import random_flows

from pipeline import codec, records
from pipeline.broker import BrokerConfig, EmbeddedBroker
from pipeline.bus import Admin, BusConfig, Consumer, Producer
from pipeline.errors import BusError

pytestmark = pytest.mark.integration


def _consume(consumer: Consumer, messages: int) -> list:
    received: list = []
    for _ in range(200):
        received += consumer.poll(250)
        if len(received) >= messages:
            break
    return received


def test_a_batch_round_trips_and_commits_resume_the_group(bus_config: BusConfig, clean_topics: list[str]) -> None:
    batch = random_flows(30_000, seed=11)
    producer = Producer(bus_config).start()
    sent = producer.send_batch("flows", batch)
    producer.flush()
    producer.stop()

    consumer = Consumer(bus_config, group="bus-test", topics=[records.topic("flows")]).start()
    received = _consume(consumer, sent)
    consumer.commit({TopicPartition(r.topic, r.partition): r.offset + 1 for r in received})
    consumer.stop()
    table = pa.concat_tables(codec.decode("flows", r.value) for r in received)
    assert table.num_rows == 30_000
    assert int(pa.compute.sum(table["packets"]).as_py()) == int(batch["packets"].sum())
    assert {r.key.decode() for r in received} == set(batch["link"])

    again = Consumer(bus_config, group="bus-test", topics=[records.topic("flows")]).start()
    assert again.poll(3000) == []
    again.stop()


def test_a_deleted_topic_is_gone(bus_config: BusConfig) -> None:
    admin = Admin(bus_config)
    admin.create_topics(["fabricscope.scratch"], partitions=1)
    assert "fabricscope.scratch" in admin.list_topics()
    admin.delete_topics(["fabricscope.scratch"])
    assert "fabricscope.scratch" not in admin.list_topics()


def test_a_broker_that_cannot_listen_says_why(broker: str) -> None:
    taken = int(broker.rsplit(":", 1)[1])
    with pytest.raises(BusError, match="embedded broker"):
        EmbeddedBroker(BrokerConfig(port=taken, start_timeout_s=5)).start()


def test_a_partition_paused_mid_fetch_is_read_again_once_resumed(bus_config: BusConfig) -> None:
    """kafka-python 3.0 parks the fetched records of a partition paused while they sit in line, and handed
    them back only when no other partition's records were in line, which after another partition's fetch is
    never: the sink, pausing a full lane's partitions, stopped reading link_bins for good, silently."""
    admin = Admin(bus_config)
    paused, other = "fabricscope.scratch-paused", "fabricscope.scratch-other"
    admin.delete_topics([paused, other])
    admin.create_topics([paused, other], partitions=1)
    producer = Producer(bus_config).start()
    for offset in range(2_000):  # more than one poll returns (max_poll_records, 500): the rest waits in line
        producer.send(paused, f"{offset}".encode())
    producer.flush()
    consumer = Consumer(bus_config, group="bus-pause-test", topics=[paused, other]).start()
    try:
        tp = TopicPartition(paused, 0)
        offsets = {r.offset for r in _consume(consumer, 1) if r.topic == paused}
        assert offsets and len(offsets) < 2_000
        consumer.pause([tp])
        for offset in range(100):  # another partition's records go through the line while it is paused
            producer.send(other, f"{offset}".encode())
        producer.flush()
        assert len([r for r in _consume(consumer, 100) if r.topic == other]) == 100
        consumer.resume([tp])
        for _ in range(60):
            offsets |= {r.offset for r in consumer.poll(250) if r.topic == paused}
            if len(offsets) == 2_000:
                break
        assert offsets == set(range(2_000))
    finally:
        consumer.stop()
        producer.stop()
        admin.delete_topics([paused, other])
