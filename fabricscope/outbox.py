"""Record batches on their way to Kafka from a long-running source, held while Kafka is unreachable.

A source must never block on Kafka: packets keep arriving while a broker restarts. `Outbox.put` encodes a
batch into its messages and queues them within a memory budget, then a disk budget (one file per message,
read back in order and kept across restarts); what fits in neither is dropped, counted by table and logged
once per outage, never silently. A sender thread delivers the queue in order, removing a message only once
Kafka has acknowledged it, and reconnects with exponential backoff. Delivery is at least once: a message
sent just before a connection broke may be sent again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from kafka.errors import KafkaError

from fabricscope.metrics import Delivery
from pipeline import codec, records
from pipeline.bus import Admin, BusConfig, Producer, pipeline_topics
from pipeline.errors import BusError, InputError

log = logging.getLogger("fabricscope.outbox")

DEFAULT_MEMORY_BYTES = 256 << 20
DEFAULT_DISK_BYTES = 4 << 30
DEFAULT_BACKOFF_S = 0.5
DEFAULT_BACKOFF_MAX_S = 30.0
SEND_WINDOW = 64  # messages in flight before waiting for their acknowledgements
ACK_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 5.0  # one connection attempt; the backoff between attempts grows to backoff_max_s
_WAIT_S = 0.2


@dataclass(frozen=True, kw_only=True)
class OutboxConfig:
    """Budgets in bytes of encoded messages; `disk_dir` None: memory only."""

    memory_bytes: int = DEFAULT_MEMORY_BYTES
    disk_dir: Path | None = None
    disk_bytes: int = DEFAULT_DISK_BYTES
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    ack_timeout_s: float = ACK_TIMEOUT_S
    connect_timeout_s: float = CONNECT_TIMEOUT_S


@dataclass(slots=True)
class _Entry:
    """A queued message; `value` None while it waits on disk at `path`."""

    table: str
    key: bytes
    rows: int
    size: int
    value: bytes | None
    path: Path | None = None
    queued_at: float = 0.0  # time.monotonic()

    def load(self) -> bytes:
        if self.value is not None:
            return self.value
        assert self.path is not None
        raw = self.path.read_bytes()
        return raw[2 + int.from_bytes(raw[:2], "big") :]


class Outbox:
    """start() → put()… → stop(); `delivery` (rows sent and dropped by table, queue sizes) feeds the metrics."""

    def __init__(self, bus: BusConfig, config: OutboxConfig | None = None, delivery: Delivery | None = None) -> None:
        self.config = config or OutboxConfig()
        self.bus = dataclasses.replace(bus, bootstrap_timeout_ms=int(self.config.connect_timeout_s * 1000))
        self.delivery = delivery or Delivery()
        self._queue: deque[_Entry] = deque()
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._deliver, name="fabricscope-outbox", daemon=True)
        self._file_serial = 0
        self._warned = False
        self._topics_ready = False

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def start(self) -> Outbox:
        """Take back what an earlier run left in the disk buffer, then deliver in the background."""
        if self.config.disk_dir is not None:
            self._reload(self.config.disk_dir)
        self._thread.start()
        return self

    def put(self, table: str, batch: codec.Batch) -> None:
        """Queue a batch's messages; never blocks on Kafka."""
        for message in codec.encode(table, batch):
            self._enqueue(table, message.key, message.value, message.rows)

    def stop(self, timeout_s: float) -> int:
        """Deliver what is queued for up to `timeout_s`, then stop; returns the messages left (on disk they
        are sent at the next start, in memory they are lost and logged)."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._queue and time.monotonic() < deadline and self._thread.is_alive():
                self._lock.wait(_WAIT_S)
            self._closing.set()
            self._lock.notify_all()
        self._thread.join(timeout=self.config.ack_timeout_s + 5)
        with self._lock:
            in_memory = [entry for entry in self._queue if entry.value is not None]
            for entry in in_memory:
                self.delivery.dropped[entry.table] += entry.rows
            if in_memory:
                log.warning("kafka %s: %d messages (%d rows) still in memory at shutdown were dropped",
                            self.bus.bootstrap, len(in_memory), sum(entry.rows for entry in in_memory))
            return len(self._queue)

    def _enqueue(self, table: str, key: bytes, value: bytes, rows: int) -> None:
        size = len(value) + len(key)
        with self._lock:
            if self.delivery.memory_bytes + size <= self.config.memory_bytes:
                self._queue.append(_Entry(table, key, rows, size, value, queued_at=time.monotonic()))
                self.delivery.memory_bytes += size
            elif self.config.disk_dir is not None and self.delivery.disk_bytes + size <= self.config.disk_bytes:
                self._queue.append(_Entry(table, key, rows, size, None, self._spill(table, key, value),
                                          time.monotonic()))
                self.delivery.disk_bytes += size
            else:
                self.delivery.dropped[table] += rows
                if not self._warned:
                    self._warned = True
                    log.warning("kafka %s unreachable and the buffer is full (%d B memory, %d B disk): dropping "
                                "new records, counted in fabricscope_records_dropped_total",
                                self.bus.bootstrap, self.delivery.memory_bytes, self.delivery.disk_bytes)
                return
            self._oldest()
            self._lock.notify_all()

    def _oldest(self) -> None:
        self.delivery.oldest_queued_s = self._queue[0].queued_at if self._queue else None

    def _spill(self, table: str, key: bytes, value: bytes) -> Path:
        assert self.config.disk_dir is not None
        self._file_serial += 1
        path = self.config.disk_dir / f"{time.time_ns():020d}-{self._file_serial:08d}.{table}.msg"
        path.write_bytes(len(key).to_bytes(2, "big") + key + value)
        return path

    def _reload(self, directory: Path) -> None:
        """Messages a previous run left on disk go first, oldest first."""
        try:
            directory.mkdir(parents=True, exist_ok=True)
            files = sorted(directory.glob("*.msg"))
        except OSError as exc:
            raise InputError(str(directory), f"cannot use as the buffer directory: {exc.strerror or exc}") from exc
        for path in files:
            table = path.suffixes[-2].lstrip(".") if len(path.suffixes) >= 2 else ""
            raw = path.read_bytes()
            if table not in records.TABLES or len(raw) < 2:
                log.warning("%s: not a buffered message, left alone", path)
                continue
            key_length = int.from_bytes(raw[:2], "big")
            key, value = raw[2 : 2 + key_length], raw[2 + key_length :]
            entry = _Entry(table, key, codec.decode(table, value).num_rows, len(value) + len(key), None, path,
                           time.monotonic())
            self._queue.append(entry)
            self.delivery.disk_bytes += entry.size
        self._oldest()

    def _deliver(self) -> None:
        """Sender thread: connect (with backoff), send the head of the queue, drop it once acknowledged."""
        producer: Producer | None = None
        backoff = self.config.backoff_s
        while not self._closing.is_set():
            window = self._window()
            if not window:
                continue
            try:
                producer = producer or self._connect()
                futures = [producer.send(records.topic(entry.table), entry.load(), key=entry.key) for entry in window]
                for future in futures:
                    future.get(timeout=self.config.ack_timeout_s)
            except (BusError, KafkaError, OSError) as exc:
                self._disconnected(producer, exc)
                producer = None
                self._closing.wait(backoff)
                backoff = min(backoff * 2, self.config.backoff_max_s)
                continue
            backoff = self.config.backoff_s
            self._acknowledged(window)
        if producer is not None:
            producer.stop(timeout_s=self.config.ack_timeout_s)

    def _window(self) -> list[_Entry]:
        with self._lock:
            if not self._queue:
                self._lock.wait(_WAIT_S)
            return [self._queue[index] for index in range(min(SEND_WINDOW, len(self._queue)))]

    def _connect(self) -> Producer:
        """A producer, after making sure the topics exist (created on the first connection, kept after)."""
        if not self._topics_ready:
            Admin(self.bus).create_topics(pipeline_topics())
            self._topics_ready = True
        producer = Producer(self.bus).start()
        if not self.delivery.connected:
            log.info("kafka %s: connected", self.bus.bootstrap)
        self.delivery.connected = True
        return producer

    def _disconnected(self, producer: Producer | None, exc: Exception) -> None:
        if self.delivery.connected or self.delivery.reconnects == 0:
            log.warning("kafka %s unreachable (%s): buffering, retrying with backoff", self.bus.bootstrap, exc)
        self.delivery.connected = False
        self.delivery.reconnects += 1
        if producer is not None:
            with contextlib.suppress(BusError):  # the connection is already broken; closing is best effort
                producer.stop(timeout_s=0)

    def _acknowledged(self, window: list[_Entry]) -> None:
        with self._lock:
            for entry in window:
                self._queue.popleft()
                self.delivery.sent[entry.table] += entry.rows
                if entry.path is None:
                    self.delivery.memory_bytes -= entry.size
                else:
                    self.delivery.disk_bytes -= entry.size
                    entry.path.unlink(missing_ok=True)
            self._warned = False
            self._oldest()
            self._lock.notify_all()
