"""The rollups as rollups.py declares them, in the real engine: the tables ClickHouse ends up with, the
cascade (1 min → 1 h) summing exactly what the raw rows hold, and an upgrade from migration 005 with data
in it that changes no answer the dashboard gives."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from pipeline_rows import START_US, random_flows

from dashboards import queries
from pipeline import codec
from pipeline.migrate import MIGRATIONS_DIR, load_migrations, migrate
from pipeline.rollups import ROLLUPS, Rollup, column_types, render_rollups
from pipeline.store import Store

pytestmark = pytest.mark.integration

SINK = {"deduplicate_blocks_in_dependent_materialized_views": 1}
START = datetime.fromtimestamp(START_US / 1e6, UTC)
END = START + timedelta(hours=2)


def test_migration_006_is_the_rendering_of_rollups() -> None:
    assert load_migrations()[5].sql == render_rollups(), "regenerate: python -m pipeline.migrate rollups"


def test_rollup_tables_and_views_match_their_declaration(store: Store) -> None:
    for rollup in ROLLUPS:
        columns = store.query(
            "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String} "
            "AND default_kind != 'MATERIALIZED' ORDER BY position",
            parameters={"db": store.database, "t": rollup.table})
        assert columns.rows == column_types(rollup), rollup.table
        engine, order, partition, full = store.query(
            "SELECT engine, sorting_key, partition_key, engine_full FROM system.tables "
            "WHERE database = {db:String} AND name = {t:String}", parameters={"db": store.database, "t": rollup.table}
        ).rows[0]
        assert (engine, order, partition) == ("SummingMergeTree", ", ".join(rollup.order_by), rollup.partition_by)
        assert f"toIntervalDay({rollup.retention.days})" in full, full
        feeding = store.query(
            "SELECT name FROM system.tables WHERE database = {db:String} AND has(dependencies_table, {v:String})",
            parameters={"db": store.database, "v": rollup.view}).rows
        assert feeding == [(rollup.source,)], rollup.table


def _expected(store: Store, rollup: Rollup) -> list[tuple[object, ...]]:
    """The rollup's rows computed from the raw rows, bucketed by the grain: what it must hold."""
    keys = ", ".join(rollup.keys)
    sums = ", ".join(f"sum({name})" for name in rollup.measures)
    bucket = f"toStartOfInterval(ts_start, INTERVAL {rollup.grain // timedelta(seconds=1)} SECOND)"
    return sorted(store.query(f"SELECT toDateTime({bucket}, 'UTC') AS t, {keys}, count(), {sums} FROM flows "
                              f"GROUP BY t, {keys}").rows)


def _held(store: Store, rollup: Rollup) -> list[tuple[object, ...]]:
    keys = ", ".join(rollup.keys)
    sums = ", ".join(f"sum({name})" for name in ("flows", *rollup.measures))
    return sorted(store.query(f"SELECT ts, {keys}, {sums} FROM {rollup.table} GROUP BY ts, {keys}").rows)


def _answers(store: Store) -> dict[str, object]:
    """What the dashboard shows from every rollup over the two hours: per-link traffic, the mix, top talkers."""
    shown: dict[str, object] = {}
    for source in queries.TRAFFIC_SOURCES[1:]:
        frame = queries.run(store, queries.link_traffic(START, END, source))
        shown[source.table] = sorted(frame.drop(columns=["first_seen", "last_seen"]).itertuples(index=False))
    for source in (s for s in queries.TRAFFIC_SOURCES if s.table in queries.MIX_ROLLUPS):
        query = queries.traffic_mix(START, END, queries.FlowFilter(), source)
        assert source.table in query.sql
        shown[f"mix {source.table}"] = sorted(queries.run(store, query).itertuples(index=False))
    for rollup in queries.TALKER_ROLLUPS:
        query = queries.top_talkers(START, END, queries.FlowFilter(app="tls"), rollup)
        assert rollup.table in query.sql
        shown[rollup.table] = list(queries.run(store, query).itertuples(index=False))
    return shown


def _insert(store: Store, seed: int, token: str) -> pa.Table:
    """The rows a sink of the store's schema version inserts: columns later migrations add are left out."""
    rows = codec.to_arrow("flows", random_flows(5_000, seed=seed))
    present = {name for (name,) in store.query(
        "SELECT name FROM system.columns WHERE database = currentDatabase() AND table = 'flows'").rows}
    rows = rows.select([name for name in rows.column_names if name in present])
    store.insert_arrow("flows", rows, settings={**SINK, "insert_deduplication_token": token})
    return rows


def test_upgrade_from_005_with_data_keeps_every_answer(store_factory: Callable[..., Store], tmp_path: Path) -> None:
    before = tmp_path / "migrations"
    before.mkdir()
    for migration in load_migrations():
        if migration.version <= 5:
            shutil.copy(MIGRATIONS_DIR / f"{migration.version:03d}_{migration.name}.sql", before)
    store = store_factory(migrated=False)
    migrate(store, before)
    _insert(store, 80, "range-1")
    shown = _answers(store)
    assert all(shown.values())

    assert migrate(store)[0].version == 6
    assert _answers(store) == shown
    _insert(store, 81, "range-2")
    _insert(store, 81, "range-2")  # the sink redoing a range after a crash: dropped everywhere, cascade included
    assert store.query("SELECT count() FROM flows").rows == [(10_000,)]
    for rollup in ROLLUPS:
        assert _held(store, rollup) == _expected(store, rollup), rollup.table

    fresh = store_factory()
    _insert(fresh, 80, "range-1")
    _insert(fresh, 81, "range-2")
    assert _answers(store) == _answers(fresh)
