"""Kafka for fabricscope (kafka-python): a producer of record batches, group consumers, topic admin.

The same code talks to a production cluster and to the embedded tansu broker. Facts that shape it
(DESIGN.md section 3): tansu joins a group in ~23 s unless the session timeout is short, and reports end
offsets and lag wrongly, so nothing here waits on lag; it has no retention, hence `delete_topics`.
Errors from kafka-python become BusError at this boundary, keeping whether a retry can help.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import (
    CommitFailedError,
    KafkaError,
    RebalanceInProgressError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata, TopicPartition

from pipeline import codec, records
from pipeline.errors import BusError, RebalancedError

DEFAULT_CLIENT_ID = "fabricscope"
DEFAULT_PARTITIONS = 4
DEFAULT_LINGER_MS = 5
DEFAULT_SESSION_TIMEOUT_MS = 6000
DEFAULT_HEARTBEAT_INTERVAL_MS = 1500
DEFAULT_REQUEST_TIMEOUT_MS = 30_000
DEFAULT_BOOTSTRAP_TIMEOUT_MS = 30_000
RECONNECT_BACKOFF_MAX_MS = 5_000  # kafka-python's 30 s would leave a restarted broker idle that long
# Room for a ≤1 MiB message plus its key, headers and record batch overhead.
MAX_REQUEST_BYTES = codec.MAX_MESSAGE_BYTES + (64 << 10)
PRODUCER_BATCH_BYTES = 1 << 20
FETCH_PARTITION_BYTES = 2 * MAX_REQUEST_BYTES
DEFAULT_POLL_RECORDS = 500  # kafka-python's: at most this many messages a poll returns

Header = tuple[str, bytes]


def pipeline_topics() -> list[str]:
    """Every record topic and its dead-letter topic."""
    return [name for table in records.TABLES for name in (records.topic(table), records.dlq_topic(table))]


@dataclass(frozen=True, kw_only=True)
class BusConfig:
    """Where Kafka is and how to talk to it; `security` passes security_protocol, sasl_* and ssl_* through."""

    bootstrap: str
    client_id: str = DEFAULT_CLIENT_ID
    security: Mapping[str, Any] = field(default_factory=dict)
    compression: str | None = "lz4"  # Kafka's, over a producer batch: pipeline.codec sends small messages plain
    idempotence: bool = True
    linger_ms: int = DEFAULT_LINGER_MS
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    heartbeat_interval_ms: int = DEFAULT_HEARTBEAT_INTERVAL_MS
    request_timeout_ms: int = DEFAULT_REQUEST_TIMEOUT_MS
    bootstrap_timeout_ms: int = DEFAULT_BOOTSTRAP_TIMEOUT_MS

    def common(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap.split(","), "client_id": self.client_id, **self.security}


def _translate(action: str, exc: KafkaError) -> BusError:
    return BusError(f"kafka {action}: {exc}", retriable=bool(getattr(exc, "retriable", False)))


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka message."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[Header, ...]
    timestamp_ms: int = -1  # the producer's create time (epoch ms); -1 when the broker gave none


class Producer:
    """acks=all, idempotent where the broker allows it, batched (the bodies are compressed already)."""

    def __init__(self, config: BusConfig) -> None:
        self.config = config
        self._producer: KafkaProducer | None = None

    def start(self) -> Producer:
        try:
            self._producer = KafkaProducer(
                **self.config.common(),
                acks="all",
                enable_idempotence=self.config.idempotence,
                compression_type=self.config.compression,
                linger_ms=self.config.linger_ms,
                batch_size=PRODUCER_BATCH_BYTES,
                max_request_size=MAX_REQUEST_BYTES,
                request_timeout_ms=self.config.request_timeout_ms,
                bootstrap_timeout_ms=self.config.bootstrap_timeout_ms,
                reconnect_backoff_max_ms=RECONNECT_BACKOFF_MAX_MS,
            )
        except KafkaError as exc:
            raise _translate("producer start", exc) from exc
        return self

    def _started(self) -> KafkaProducer:
        if self._producer is None:
            raise BusError("producer used before start()")
        return self._producer

    def send(
        self, topic: str, value: bytes, *, key: bytes | None = None, headers: Sequence[Header] = ()
    ) -> FutureRecordMetadata:
        """Queue one message; errors surface at flush() or from the returned future."""
        try:
            return self._started().send(topic, value=value, key=key, headers=list(headers))
        except KafkaError as exc:
            raise _translate(f"send to {topic}", exc) from exc

    def send_batch(self, table: str, batch: codec.Batch) -> int:
        """Encode a batch of `table` rows and queue its messages; returns how many messages."""
        messages = codec.encode(table, batch)
        for message in messages:
            self.send(records.topic(table), message.value, key=message.key)
        return len(messages)

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every queued message is acknowledged by all in-sync replicas."""
        try:
            self._started().flush(timeout=timeout_s)
        except KafkaError as exc:
            raise _translate("flush", exc) from exc

    def stop(self, timeout_s: float | None = None) -> None:
        """Close after sending what is queued; `timeout_s` bounds the wait (None: until sent)."""
        if self._producer is not None:
            try:
                self._producer.close(timeout=timeout_s)
            except KafkaError as exc:
                raise _translate("producer close", exc) from exc
            finally:
                self._producer = None


class _Listener(ConsumerRebalanceListener):
    def __init__(self, on_assigned: Callable[[set[TopicPartition]], None],
                 on_revoked: Callable[[set[TopicPartition]], None]) -> None:
        self._on_assigned = on_assigned
        self._on_revoked = on_revoked

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self._on_revoked(set(revoked))

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self._on_assigned(set(assigned))


def _free_parked_records(consumer: KafkaConsumer) -> None:
    """Work around kafka-python 3.0 (up to 3.0.12 at least) losing a paused partition for good.

    Its fetcher parks the records of a partition paused while they sit in line and hands them back after
    resume() only while no records are in line (`_next_partition_records is None`). But the line keeps the
    last partition's records once drained, so after any other partition's fetch it is never None again: the
    parked partition is neither returned nor fetched again, and the consumer reads nothing more of it, with no
    error. An empty line is what None means to the fetcher everywhere else, so it is set to None here before
    each poll. Versions without the parking (2.x) have no `_paused_partition_records`: nothing changes."""
    fetcher = getattr(consumer, "_fetcher", None)
    line = getattr(fetcher, "_next_partition_records", None)
    if line is not None and not line and getattr(fetcher, "_paused_partition_records", None):
        fetcher._next_partition_records = None  # type: ignore[union-attr]


class Consumer:
    """A consumer-group member with manual commits: nothing is committed unless commit() is called."""

    def __init__(
        self,
        config: BusConfig,
        *,
        group: str,
        topics: Sequence[str],
        on_assigned: Callable[[set[TopicPartition]], None] = lambda _: None,
        on_revoked: Callable[[set[TopicPartition]], None] = lambda _: None,
        poll_records: int = DEFAULT_POLL_RECORDS,
    ) -> None:
        self.config = config
        self.group = group
        self.topics = list(topics)
        self.poll_records = poll_records
        self._listener = _Listener(on_assigned, on_revoked)
        self._consumer: KafkaConsumer | None = None

    def start(self) -> Consumer:
        try:
            self._consumer = KafkaConsumer(
                **self.config.common(),
                group_id=self.group,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=self.config.session_timeout_ms,
                heartbeat_interval_ms=self.config.heartbeat_interval_ms,
                request_timeout_ms=self.config.request_timeout_ms + self.config.session_timeout_ms,
                max_partition_fetch_bytes=FETCH_PARTITION_BYTES,
                max_poll_records=self.poll_records,
            )
            self._consumer.subscribe(self.topics, listener=self._listener)
        except KafkaError as exc:
            raise _translate("consumer start", exc) from exc
        return self

    def _started(self) -> KafkaConsumer:
        if self._consumer is None:
            raise BusError("consumer used before start()")
        return self._consumer

    def poll(self, timeout_ms: int) -> list[Record]:
        """Next messages of the assigned partitions (also keeps the group membership alive)."""
        consumer = self._started()
        _free_parked_records(consumer)
        try:
            polled = consumer.poll(timeout_ms=timeout_ms)
        except KafkaError as exc:
            raise _translate("poll", exc) from exc
        return [
            Record(m.topic, m.partition, m.offset, m.key, m.value, tuple(m.headers or ()),
                   -1 if m.timestamp is None else int(m.timestamp))
            for messages in polled.values()
            for m in messages
        ]

    def assignment(self) -> set[TopicPartition]:
        return set(self._started().assignment())

    def committed(self, partition: TopicPartition) -> int | None:
        """The group's committed offset of a partition, None when nothing was committed yet."""
        try:
            offset = self._started().committed(partition)
        except KafkaError as exc:
            raise _translate("committed", exc) from exc
        return None if offset is None or offset < 0 else int(offset)

    def position(self, partition: TopicPartition) -> int:
        try:
            return int(self._started().position(partition))
        except KafkaError as exc:
            raise _translate("position", exc) from exc

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read the partition again from `offset` on the next poll."""
        self._started().seek(partition, offset)

    def pause(self, partitions: Iterable[TopicPartition]) -> None:
        self._started().pause(*partitions)

    def resume(self, partitions: Iterable[TopicPartition]) -> None:
        self._started().resume(*partitions)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit the next offset to read per partition (last processed + 1). RebalancedError when the group is
        rebalancing or rebalanced without this member: poll to rejoin, then commit what it owns after."""
        if not offsets:
            return
        try:
            self._started().commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in offsets.items()})
        except (RebalanceInProgressError, CommitFailedError) as exc:
            raise RebalancedError(f"kafka commit: {exc}") from exc
        except KafkaError as exc:
            raise _translate("commit", exc) from exc

    def stop(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except KafkaError as exc:
                raise _translate("consumer close", exc) from exc
            finally:
                self._consumer = None


class Admin:
    """Topic creation and deletion (deletion is how a long embedded run bounds tansu's memory)."""

    def __init__(self, config: BusConfig) -> None:
        self.config = config

    def _client(self) -> KafkaAdminClient:
        try:
            return KafkaAdminClient(**self.config.common(), request_timeout_ms=self.config.request_timeout_ms,
                                    bootstrap_timeout_ms=self.config.bootstrap_timeout_ms)
        except KafkaError as exc:
            raise _translate("admin connect", exc) from exc

    def create_topics(
        self, names: Iterable[str], *, partitions: int = DEFAULT_PARTITIONS, replication: int = 1
    ) -> None:
        """Create the topics that do not exist yet."""
        client = self._client()
        try:
            for name in names:
                try:
                    client.create_topics([NewTopic(name, partitions, replication)])
                except TopicAlreadyExistsError:
                    continue
        except KafkaError as exc:
            raise _translate("create topics", exc) from exc
        finally:
            client.close()

    def list_topics(self) -> list[str]:
        client = self._client()
        try:
            return sorted(client.list_topics())
        except KafkaError as exc:
            raise _translate("list topics", exc) from exc
        finally:
            client.close()

    def topic_ids(self, names: Iterable[str]) -> dict[str, str]:
        """Each topic's id, which changes when a topic is deleted and created again ('' if the broker has none)."""
        client = self._client()
        try:
            described = client.describe_topics(list(names))
        except KafkaError as exc:
            raise _translate("describe topics", exc) from exc
        finally:
            client.close()
        return {str(topic["name"]): str(topic.get("topic_id") or "") for topic in described}

    def delete_topics(self, names: Iterable[str]) -> None:
        """Delete topics (and free what tansu holds for them); missing topics are ignored."""
        client = self._client()
        try:
            for name in names:
                try:
                    client.delete_topics([name])
                except UnknownTopicOrPartitionError:
                    continue
        except KafkaError as exc:
            raise _translate("delete topics", exc) from exc
        finally:
            client.close()
