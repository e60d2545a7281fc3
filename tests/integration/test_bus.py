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
