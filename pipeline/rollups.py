"""The flow rollups, declared once: each one's grain, source, keys, measures and retention.

A rollup is a SummingMergeTree fed by a materialized view. The finest rollups read the raw `flows` inserts;
a coarser one with the same keys cascades from a finer one (1 min → 1 h), so its view sums the finer view's
few rows instead of grouping every raw row again. The migrations' DDL (`render_rollups`), the dashboards'
choice of table (dashboards/queries.py) and their retention all come from this table; a test checks the
tables ClickHouse ends up with against it.

Deduplication follows the sink's inserts down the cascade: with
deduplicate_blocks_in_dependent_materialized_views=1 and a dedup window on every target, a repeated insert
is dropped from `flows` and from every rollup, cascaded ones included (tests/integration/test_store.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from pipeline import records

RAW_SOURCE = "flows"
RETENTION_COLUMN = "_inserted"  # retention counts from arrival, as for the raw tables (pipeline/migrate.py)
DEDUP_WINDOW = 1000
_BUCKETS = {  # grain → ClickHouse expression of the bucket holding a time
    timedelta(seconds=1): "toDateTime({time}, 'UTC')",
    timedelta(minutes=1): "toStartOfMinute({time})",
    timedelta(hours=1): "toStartOfHour({time})",
}


@dataclass(frozen=True, slots=True)
class Rollup:
    """One rollup table. `keys` are flows columns kept as they are, `measures` flows columns summed; every
    rollup also counts the flow rows it folds (`flows`). `read_span` is the longest window the dashboards
    read from it; `time_leads` puts the bucket first in the sort key (tables read by time window, not link)."""

    table: str
    grain: timedelta
    source: str
    keys: tuple[str, ...]
    measures: tuple[str, ...]
    retention: timedelta
    partition_by: str
    read_span: timedelta
    time_leads: bool = False

    @property
    def view(self) -> str:
        return f"{self.table}_mv"

    @property
    def order_by(self) -> tuple[str, ...]:
        return ("ts", *self.keys) if self.time_leads else (*self.keys, "ts")

    @property
    def has_addresses(self) -> bool:
        return "src_ip" in self.keys


_LINK = ("link", "direction", "leaf", "spine")
_LABELS = ("app", "traffic_class", "job")
_TRAFFIC = ("packets", "bytes", "ecn_ect", "ecn_ce", "cnp")
_ROCE = ("roce_write", "roce_read", "roce_send", "roce_ack", "psn_gaps", "naks")
_DAY, _MONTH = "toYYYYMMDD(ts)", "toYYYYMM(ts)"

ROLLUPS: tuple[Rollup, ...] = (
    # Per second and link: the live view.
    Rollup("link_stats_1s", timedelta(seconds=1), RAW_SOURCE, _LINK, (*_TRAFFIC, "psn_gaps", "naks"),
           timedelta(days=2), _DAY, read_span=timedelta(hours=6)),
    # Per minute and hour by link, application, traffic class and job: history.
    Rollup("flows_1m", timedelta(minutes=1), RAW_SOURCE, (*_LINK, *_LABELS), (*_TRAFFIC, *_ROCE),
           timedelta(days=90), _MONTH, read_span=timedelta(days=7)),
    Rollup("flows_1h", timedelta(hours=1), "flows_1m", (*_LINK, *_LABELS), (*_TRAFFIC, *_ROCE),
           timedelta(days=730), _MONTH, read_span=timedelta(days=3650)),
    # Top talkers per address pair: the flow explorer over long windows.
    Rollup("flows_talkers_1m", timedelta(minutes=1), RAW_SOURCE, ("link", *_LABELS, "src_ip", "dst_ip"),
           ("packets", "bytes"), timedelta(days=14), _DAY, read_span=timedelta(hours=6), time_leads=True),
    Rollup("flows_talkers_1h", timedelta(hours=1), "flows_talkers_1m", ("link", *_LABELS, "src_ip", "dst_ip"),
           ("packets", "bytes"), timedelta(days=90), _MONTH, read_span=timedelta(days=3650), time_leads=True),
)
BY_TABLE: dict[str, Rollup] = {rollup.table: rollup for rollup in ROLLUPS}


def column_types(rollup: Rollup) -> list[tuple[str, str]]:
    """(name, ClickHouse type) of the rollup's columns, in table order."""
    flows = {column.name: column.clickhouse for column in records.FLOWS}
    return [("ts", "DateTime('UTC')"), *((key, flows[key]) for key in rollup.keys),
            *((name, "UInt64") for name in ("flows", *rollup.measures))]


def _days(span: timedelta) -> int:
    return span // timedelta(days=1)


def render_table(rollup: Rollup) -> str:
    body = ",\n".join(f"    `{name}` {kind}" for name, kind in column_types(rollup))
    return (f"CREATE TABLE IF NOT EXISTS {rollup.table}\n(\n{body},\n"
            f"    `{RETENTION_COLUMN}` DateTime MATERIALIZED now()\n)\nENGINE = SummingMergeTree\n"
            f"PARTITION BY {rollup.partition_by}\nORDER BY ({', '.join(rollup.order_by)})\n"
            f"TTL {RETENTION_COLUMN} + INTERVAL {_days(rollup.retention)} DAY\n"
            f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW};\n")


def render_view(rollup: Rollup) -> str:
    """The view feeding the rollup: from raw rows (bucket of ts_start, count them) or from a finer rollup
    (bucket of its ts, sum its counts)."""
    raw = rollup.source == RAW_SOURCE
    bucket = _BUCKETS[rollup.grain].format(time="ts_start" if raw else "ts")
    sums = ", ".join(f"sum({name}) AS {name}" for name in rollup.measures)
    flows = "count()" if raw else "sum(flows)"
    keys = ", ".join(rollup.keys)
    return (f"CREATE MATERIALIZED VIEW IF NOT EXISTS {rollup.view} TO {rollup.table} AS\n"
            f"SELECT\n    {bucket} AS ts, {keys},\n    {flows} AS flows, {sums}\n"
            f"FROM {rollup.source}\nGROUP BY ts, {keys};\n")


def render_rollups() -> str:
    """Every rollup table (kept when it exists) and its view, replaced: a migration holding this text brings
    a store of any earlier version to the rollups declared here."""
    parts = ["-- Flow rollups, rendered from pipeline/rollups.py by `python -m pipeline.migrate rollups`.\n"
             "-- Each view is dropped and created again from its declaration; tables are kept with their rows.\n"]
    for rollup in ROLLUPS:
        parts.append(f"\n{render_table(rollup)}\nDROP VIEW IF EXISTS {rollup.view};\n\n{render_view(rollup)}")
    return "".join(parts)
