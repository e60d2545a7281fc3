"""The events topic read by a collector host, so its packet recorder pins incidents the detectors of
another process (`ingest`) open.

Each recorder host is a consumer group of its own (every host needs every event), reading from the
earliest kept event: an incident whose window the host's rolling buffer still holds is pinned even when
the host started after it opened. Nothing is committed: a restart reads the events again, and pinning an
incident twice changes nothing. A message that does not decode is skipped (the sink sends it to the DLQ).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np

from pipeline import codec, records
from pipeline.bus import BusConfig, Consumer
from pipeline.errors import FabricscopeError

EventColumns = dict[str, np.ndarray]
POLL_MS = 500
log = logging.getLogger(__name__)


class EventFeed:
    """Calls `on_events(columns)` for every batch of `events` rows on the bus, on a thread of its own,
    from `start()` until `stop()`."""

    def __init__(self, bus: BusConfig, *, group: str, on_events: Callable[[EventColumns], None]) -> None:
        self.bus = bus
        self.group = group
        self.on_events = on_events
        self.batches = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> EventFeed:
        consumer = Consumer(self.bus, group=self.group, topics=[records.topic("events")]).start()
        self._thread = threading.Thread(target=self._run, args=(consumer,), name="event-feed", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self, consumer: Consumer) -> None:
        try:
            while not self._stop.is_set():
                for record in consumer.poll(POLL_MS):
                    try:
                        columns = codec.to_columns(codec.decode("events", record.value))
                    except FabricscopeError as exc:
                        log.warning("events message %s:%d skipped: %s", record.topic, record.offset, exc)
                        continue
                    self.on_events(columns)
                    self.batches += 1
        except FabricscopeError as exc:  # Kafka away: pinning stops, collection does not
            log.error("event feed stopped, incidents are no longer pinned: %s", exc)
        finally:
            consumer.stop()
