"""Incidents to webhooks: a consumer-group member of the events topic that commits only what was delivered.

Why here and not a hook inside the detectors: the events topic is the one place every incident row
passes, whoever produced it (`ingest` members, the embedded `replay`/`demo` path), and reading it as a
group of its own makes delivery survive a restart the way the sink's inserts do. An offset is committed
only once every alert made from that message and the ones before it has left its webhook's queue
(delivered or dead-lettered), after the ledger (pipeline.alerts.ledger) recording those alerts is saved.
After a restart, a crash or a rebalance the member reads again from the committed offset: the ledger
recognises what was already sent, the rest is sent now. Nothing is lost; the one thing that can be sent
twice is an alert a receiver accepted in the instant before the ledger was saved, and it carries the same
dedupe key both times. A receiver that is down never stops the detectors (they only produce to Kafka).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka.structs import TopicPartition

from pipeline import codec, records
from pipeline.alerts.body import Alert, event_rows
from pipeline.alerts.config import AlertsConfig
from pipeline.alerts.ledger import Ledger, load_ledgers, save_ledgers
from pipeline.alerts.webhook import Webhook, WebhookCounts
from pipeline.background import Background
from pipeline.bus import BusConfig, Consumer
from pipeline.errors import BusError, DecodeError

log = logging.getLogger("fabricscope.alerts")

DEFAULT_GROUP = "fabricscope-alerts"
DEFAULT_POLL_TIMEOUT_MS = 200
DEFAULT_STOP_GRACE_S = 5.0

Position = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, kw_only=True)
class NotifierConfig:
    """The notifier's group membership; `ledger` None keeps it in memory (an embedded run, whose broker
    and offsets end with it). On stop, queued alerts get `stop_grace_s` to go out; the rest stay
    uncommitted in Kafka for the next start."""

    group: str = DEFAULT_GROUP
    ledger: Path | None = None
    poll_timeout_ms: int = DEFAULT_POLL_TIMEOUT_MS
    stop_grace_s: float = DEFAULT_STOP_GRACE_S


class Notifier:
    """start() → stop(); no I/O before start(). `counts()` per webhook feeds /metrics."""

    def __init__(self, alerts: AlertsConfig, config: NotifierConfig, *, bus: BusConfig) -> None:
        self.alerts = alerts
        self.config = config
        self.bus = bus
        self.webhooks = [Webhook(webhook, functools.partial(self._finished, webhook.label))
                         for webhook in alerts.webhooks]
        self.events = 0  # event rows consumed
        self._ledgers: dict[str, Ledger] = {}
        self._lock = threading.Condition()
        self._consumed: dict[Position, int] = {}  # next offset per partition
        self._pending: dict[Position, Counter[int]] = {}  # offset → alerts of that message still queued
        self._dirty = False
        self._committed: dict[Position, int] = {}
        self._background = Background("fabricscope-alerts", self.run, log)

    def start(self) -> Notifier:
        """Load the ledger (one unreadable is bad input naming the file), then consume in the background."""
        names = [webhook.name for webhook in self.webhooks]
        path = self.config.ledger
        self._ledgers = load_ledgers(path, names) if path is not None else {name: Ledger() for name in names}
        for webhook in self.webhooks:
            webhook.restore_firing(self._ledgers[webhook.name].firing())
        self._background.start()
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Give queued alerts the grace period, commit what went out, stop; re-raise what made it fail."""
        self._background.stop(timeout_s)

    @property
    def error(self) -> BaseException | None:
        return self._background.error

    def counts(self) -> dict[str, WebhookCounts]:
        return {webhook.name: webhook.counts() for webhook in self.webhooks}

    def wait_delivered(self, events: int, timeout_s: float) -> bool:
        """Wait until `events` event rows were consumed and every alert made from them left its queue
        (delivered or dead-lettered): a batch run is complete. False on timeout or failure."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while (self.events < events or any(self._pending.values())) and self.error is None:
                if time.monotonic() >= deadline:
                    return False
                self._lock.wait(0.2)
        return self.error is None

    def run(self, stop: threading.Event) -> None:
        consumer = Consumer(self.bus, group=self.config.group, topics=[records.topic("events")]).start()
        for webhook in self.webhooks:
            webhook.start()
        try:
            while not stop.is_set():
                for record in consumer.poll(self.config.poll_timeout_ms):
                    self._take(record.topic, record.partition, record.offset, record.value)
                self._commit(consumer)
            deadline = time.monotonic() + self.config.stop_grace_s
            for webhook in self.webhooks:
                webhook.wait_idle(max(0.0, deadline - time.monotonic()))
        finally:
            left = sum(webhook.stop() for webhook in self.webhooks)
            try:
                self._commit(consumer)
            finally:
                consumer.stop()
        if left:
            log.warning("alerts: %d alerts not delivered at shutdown stay in Kafka for the next start", left)

    def _take(self, topic: str, partition: int, offset: int, value: bytes) -> None:
        """Queue the alerts of one events message to the webhooks that want them."""
        where = (topic, partition)
        try:
            rows = event_rows(codec.to_columns(codec.decode("events", value)))
        except DecodeError as exc:
            log.warning("alerts: skipped an events message: %s", exc)
            rows = []
        queued: list[tuple[Webhook, Alert]] = []
        for row in rows:
            for webhook in self.webhooks:
                if webhook.config.wants(str(row["kind"])):
                    queued += [(webhook, alert) for alert in self._ledgers[webhook.name].alerts(row)]
        with self._lock:
            self.events += len(rows)
            self._consumed[where] = offset + 1
            if queued:
                self._pending.setdefault(where, Counter())[offset] += len(queued)
            self._lock.notify_all()
        for webhook, alert in queued:
            webhook.put(alert, (where, offset))

    def _finished(self, name: str, alert: Alert, ticket: Any) -> None:
        """From a sender thread: the alert left its queue; record it, then release its message's offset."""
        where, offset = ticket
        with self._lock:
            self._ledgers[name].finished(alert)
            self._dirty = True
            pending = self._pending[where]
            pending[offset] -= 1
            if pending[offset] <= 0:
                del pending[offset]
            self._lock.notify_all()

    def _commit(self, consumer: Consumer) -> None:
        """Save the ledger, then commit each partition this member holds up to its oldest message with an
        alert still queued. A partition taken away by a rebalance keeps its queued alerts here (they still go
        out) and is committed again only if it comes back; a failed commit is tried again on the next round."""
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        with self._lock:
            offsets = {where: min(self._pending.get(where, ()), default=next_offset)
                       for where, next_offset in self._consumed.items() if where in assigned}
            dirty, self._dirty = self._dirty, False
            if dirty and self.config.ledger is not None:
                save_ledgers(self.config.ledger, self._ledgers)
        moved = {where: offset for where, offset in offsets.items() if self._committed.get(where) != offset}
        try:
            consumer.commit({TopicPartition(topic, partition): offset
                             for (topic, partition), offset in moved.items()})
        except BusError as exc:
            log.warning("alerts: offsets not committed (%s); trying again", exc)
            return
        self._committed.update(moved)
