"""Every detector behind one entry point: record batches by table in, event rows out.

Which detector reads which table (and what one detector tells another) is decided here once, so the
embedded replay and the Kafka consumer-group member (pipeline.detect.service) run exactly the same logic.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from pipeline import records
from pipeline.detect.collective import CollectiveDetector
from pipeline.detect.config import DetectorConfig
from pipeline.detect.congestion import CongestionDetector
from pipeline.detect.ecmp import EcmpDetector
from pipeline.detect.events import Batch, Event
from pipeline.detect.fast_recovery import FastRecoveryDetector
from pipeline.detect.link_health import LinkHealthDetector
from pipeline.detect.link_status import LinkStatus
from pipeline.topology import Topology

INPUT_TABLES: tuple[str, ...] = ("flows", "link_bins", "iterations", "counters")
# The detectors DetectorConfig configures, by its field names (its watermark is the service's, not a detector's).
DETECTORS = tuple(field.name for field in dataclasses.fields(DetectorConfig) if field.name != "watermark")
# Settings that shape the state held, kept from a restored state: ECMP numbers its pending and open windows by
# `window_ms`, and each job's recent iterations are a queue of `baseline_window`.
KEPT_ON_RESTORE = {"ecmp": ("window_ms",), "collective": ("baseline_window",)}


class DetectorSet:
    """The detectors of DESIGN.md section 6 wired together; `update` and `flush` return new event rows."""

    def __init__(self, topology: Topology, config: DetectorConfig | None = None) -> None:
        config = config or DetectorConfig()
        self.link_health = LinkHealthDetector(config.link_health)
        self.ecmp = EcmpDetector(topology, config.ecmp)
        self.congestion = CongestionDetector(config.congestion)
        self.collective = CollectiveDetector(config.collective)
        self.fast_recovery = FastRecoveryDetector(config.fast_recovery, topology)
        self.link_status = LinkStatus(config.link_status)
        self.emitted = 0
        self._open: set[str] = set()

    def take_settings(self, configured: DetectorSet) -> list[str]:
        """Give this state (restored from a checkpoint) the settings of `configured` (this start's configuration):
        a checkpoint keeps what the detectors learned, the configuration decides their thresholds. Those of
        KEPT_ON_RESTORE stay as they were. Returns each setting that changed, or that differs and was kept."""
        changes: list[str] = []
        for name in DETECTORS:
            detector = getattr(self, name)
            before, wanted = detector.config, getattr(configured, name).config
            kept = {key: getattr(before, key) for key in KEPT_ON_RESTORE.get(name, ()) if
                    getattr(before, key) != getattr(wanted, key)}
            changes += [f"{name}.{key} stays {value} (not {getattr(wanted, key)}: it shapes the state restored; "
                        "remove the checkpoint to change it)" for key, value in kept.items()]
            after = dataclasses.replace(wanted, **kept)
            changes += [f"{name}.{field.name} {getattr(before, field.name)} -> {getattr(after, field.name)}"
                        for field in dataclasses.fields(after)
                        if getattr(before, field.name) != getattr(after, field.name)]
            detector.config = after
        return changes

    @property
    def open_incidents(self) -> int:
        """Incidents whose latest row says `state: open` (rows without an `event_id` are never open)."""
        return len(self._open)

    def _track(self, events: list[Event]) -> list[Event]:
        """Count what leaves and keep which incidents are open, from the rows themselves."""
        for event in events:
            event_id = event.get("event_id")
            if event_id and event.get("state") == "open":
                self._open.add(event_id)
            elif event_id:
                self._open.discard(event_id)
        self.emitted += len(events)
        return events

    def update(self, table: str, batch: Batch) -> list[Event]:
        """Feed one batch of `table` rows (INPUT_TABLES); other tables are ignored."""
        if not len(next(iter(batch.values()), ())):
            return []
        events: list[Event] = []
        if table == "flows":
            self.congestion.observe_flows(batch)
            events = self.fast_recovery.update(batch)
        elif table == "link_bins":
            events = self.congestion.update(batch) + self.ecmp.update(batch)
        elif table == "iterations":
            events = self.collective.update(batch)
        elif table == "counters":
            self.fast_recovery.observe_counters(batch)
            events = self.link_health.update(batch)
        events = self.link_status.merge(events)
        self.collective.observe(events)  # congestion to blame, outages whose iterations are theirs
        return self._track(events)

    def flush(self) -> list[Event]:
        """End of input: every detector closes what it holds; the slowdowns last, so they can blame the
        congestion and leave to the outages the iterations those stretched."""
        closed = self.link_status.merge(
            self.congestion.flush() + self.ecmp.flush() + self.fast_recovery.flush() + self.link_health.flush()
        )
        self.collective.observe(closed)
        return self._track(closed + self.collective.flush())


def event_columns(events: list[Event]) -> dict[str, np.ndarray]:
    """Event rows as `events` columns (times as datetime64[us]), ready for the bus or a file."""
    columns: dict[str, np.ndarray] = {}
    for column in records.EVENTS:
        values = [event[column.name] for event in events]
        if column.numpy == "datetime64[us]":
            columns[column.name] = np.array(values, dtype="datetime64[us]")
        elif column.clickhouse.startswith("Nullable"):
            columns[column.name] = np.array(values, dtype=object)
        else:
            columns[column.name] = np.array(values, dtype=column.numpy)
    return columns
