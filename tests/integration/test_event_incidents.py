"""Events as incidents in the real store: the migration keeps old rows, readers see one row per event_id."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pipeline import codec
from pipeline.detect.engine import event_columns
from pipeline.detect.events import make_event
from pipeline.migrate import MIGRATIONS_DIR, load_migrations, migrate
from pipeline.store import Store

pytestmark = pytest.mark.integration

T0 = 1_780_000_000_000_000  # µs since the epoch


def _old_events(store: Store) -> None:
    """Two event rows as a store before migration 005 held them (no incident columns)."""
    store.command(
        "INSERT INTO events (ts, ts_end, kind, severity, link, direction, device, job, summary, flows_affected, "
        "flows_recovered, packets_lost, details) VALUES "
        "('2026-06-01 10:00:00.000001', '2026-06-01 10:00:00.002', 'fast_recovery', 'warning', 'leaf1-spine1', "
        "'unknown', 'leaf1', '', 'old failure', 3, 3, 0, '{}'), "
        "('2026-06-01 10:05:00', '2026-06-01 10:05:02', 'congestion', 'warning', 'leaf2-spine1', 'down', '', '', "
        "'old congestion', 0, 0, 0, '{}')")


def test_migration_keeps_old_events_as_closed_incidents(store_factory: Callable[..., Store], tmp_path: Path) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for migration in load_migrations():
        if migration.version < 5:
            shutil.copy(MIGRATIONS_DIR / f"{migration.version:03d}_{migration.name}.sql", before)
    store = store_factory(migrated=False)
    migrate(store, before)
    _old_events(store)
    applied = [m.version for m in migrate(store)]
    assert applied == list(range(5, applied[-1] + 1))  # 005 and whatever came after it
    rows = store.query("SELECT summary, state, updated = ts_end, length(event_id) FROM incidents ORDER BY ts").rows
    assert rows == [("old failure", "closed", 1, 16), ("old congestion", "closed", 1, 16)]
    ids = store.query("SELECT event_id FROM incidents ORDER BY ts").rows
    assert ids == store.query("SELECT event_id FROM incidents ORDER BY ts").rows  # stable across reads
    assert len({row[0] for row in ids}) == 2


def test_readers_see_the_latest_row_of_each_incident(store: Store) -> None:
    opened = make_event("congestion", ts=T0, ts_end=T0 + 50_000, severity="warning", link="leaf4-spine2",
                        direction="down", summary="open", state="open", updated=T0 + 60_000)
    grown = make_event("congestion", ts=T0, ts_end=T0 + 900_000, severity="warning", link="leaf4-spine2",
                       direction="down", summary="grown", state="open", updated=T0 + 910_000)
    closed = make_event("congestion", ts=T0, ts_end=T0 + 2_000_000, severity="warning", link="leaf4-spine2",
                        direction="down", summary="closed", updated=T0 + 3_000_000)
    other = make_event("fast_recovery", ts=T0 + 5, ts_end=T0 + 1_000, severity="warning", link="leaf1-spine1",
                       summary="another incident")
    assert opened["event_id"] == grown["event_id"] == closed["event_id"] != other["event_id"]
    for events in ([closed, opened], [grown, other]):  # arrival order is not time order
        store.insert_arrow("events", codec.to_arrow("events", event_columns(events)))
    rows = store.query("SELECT kind, summary, state FROM incidents ORDER BY ts").rows
    assert rows == [("congestion", "closed", "closed"), ("fast_recovery", "another incident", "closed")]
    assert store.query("SELECT count() FROM events").rows == [(4,)]


def test_an_open_incident_reads_as_open_until_its_close_arrives(store: Store) -> None:
    opened = make_event("collective_slowdown", ts=T0, ts_end=T0 + 60_000, severity="warning", job="llama",
                        summary="slow", state="open", updated=T0 + 70_000, identity=("llama", T0))
    store.insert_arrow("events", codec.to_arrow("events", event_columns([opened])))
    assert store.query("SELECT state, toUnixTimestamp64Micro(updated) FROM incidents").rows == [
        ("open", T0 + 70_000)]
    assert np.datetime64(opened["updated"], "us").astype(np.int64) == T0 + 70_000
