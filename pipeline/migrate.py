"""Versioned ClickHouse migrations: plain SQL files NNN_name.sql applied in order, recorded in a table.

Each file is a list of `;`-terminated statements that are themselves idempotent (IF NOT EXISTS), so a run
interrupted half-way can simply run again. An applied file must not change: its checksum is recorded and a
mismatch stops the migration. The raw tables' DDL (001) is rendered from records.py by `render_raw_tables`
(`python -m pipeline.migrate > pipeline/migrations/001_raw_tables.sql`), the rollups' (006) from rollups.py
(`python -m pipeline.migrate rollups > pipeline/migrations/006_rollup_cascade.sql`); the test suite checks the
tables ClickHouse ends up with against both.

On a ClickHouse cluster (`cluster=NAME`, `fabricscope ingest --cluster NAME`) the same files apply through
pipeline.cluster: Replicated `_local` tables ON CLUSTER behind Distributed tables of the single-server names;
`python -m pipeline.migrate --cluster NAME` prints those statements for review.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from pipeline import records
from pipeline.cluster import ClusterDDL
from pipeline.errors import StoreError
from pipeline.rollups import DEDUP_WINDOW, RETENTION_COLUMN, render_rollups
from pipeline.store import Store

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
MIGRATIONS_TABLE = "schema_migrations"
_FILE = re.compile(r"(\d{3})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True, slots=True)
class RawLayout:
    """How a raw table is laid out on disk: sort key, partitions and how long rows live after arriving."""

    order_by: str
    partition_by: str
    retention: timedelta


# Retention counts from arrival (RETENTION_COLUMN), not from the records' own times: a replayed capture
# from months ago would otherwise be dropped by its TTL as it is inserted.
RAW_LAYOUTS: dict[str, RawLayout] = {
    "flows": RawLayout("(link, direction, ts_start)", "toYYYYMMDD(ts_start)", timedelta(days=14)),
    "link_bins": RawLayout("(link, direction, ts)", "toYYYYMMDD(ts)", timedelta(days=7)),
    "iterations": RawLayout("(job, ts)", "toYYYYMM(ts)", timedelta(days=365)),
    "counters": RawLayout("(device, ifname, ts)", "toYYYYMMDD(ts)", timedelta(days=90)),
    "events": RawLayout("(kind, ts)", "toYYYYMM(ts)", timedelta(days=365)),
}


def render_raw_tables() -> str:
    """The CREATE TABLE statements of every records.py table, as migration 001 holds them: the columns it
    created (`since` 1); later columns come with the migration that added them."""
    parts = ["-- Raw record tables, rendered from pipeline/records.py by `python -m pipeline.migrate`.\n"]
    for table, columns in records.TABLES.items():
        if table not in RAW_LAYOUTS:  # a table a later migration added
            continue
        layout = RAW_LAYOUTS[table]
        body = ",\n".join(f"    `{column.name}` {column.clickhouse}" for column in columns if column.since == 1)
        body += f",\n    `{RETENTION_COLUMN}` DateTime MATERIALIZED now()"
        parts.append(
            f"\nCREATE TABLE IF NOT EXISTS {table}\n(\n{body}\n)\nENGINE = MergeTree\n"
            f"PARTITION BY {layout.partition_by}\nORDER BY {layout.order_by}\n"
            f"TTL {RETENTION_COLUMN} + INTERVAL {layout.retention.days} DAY\n"
            f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW};\n"
        )
    return "".join(parts)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    def statements(self) -> list[str]:
        """The file's statements: split at `;` ending a line, comment lines dropped."""
        lines = [line for line in self.sql.splitlines() if not line.lstrip().startswith("--")]
        chunks = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
        return [chunk.strip() for chunk in chunks if chunk.strip()]

    def cluster_statements(self, ddl: ClusterDDL) -> list[str]:
        """The file's statements for a cluster; `ddl` carries what earlier migrations created."""
        return [rewritten for statement in self.statements() for rewritten in ddl.rewrite(statement)]


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Every NNN_name.sql file in version order; a duplicate version is a packaging bug."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.fullmatch(path.name)
        if match is None:
            raise StoreError(f"{path}: migration files are named NNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise StoreError(f"{path}: migration version {version} appears twice")
        found[version] = Migration(version, match.group(2), path.read_text())
    return [found[version] for version in sorted(found)]


def applied_migrations(store: Store, ddl: ClusterDDL | None = None) -> dict[int, str]:
    """Version → checksum of the migrations already applied to the store's database (or cluster)."""
    store.command(ddl.migrations_table() if ddl is not None else (
        f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (version UInt32, name String, checksum String, "
        "applied_at DateTime64(6, 'UTC') DEFAULT now64(6)) ENGINE = MergeTree ORDER BY version"
    ))
    result = store.query(f"SELECT version, any(checksum) FROM {MIGRATIONS_TABLE} GROUP BY version")
    return {int(version): str(checksum) for version, checksum in result.rows}


def migrate(store: Store, directory: Path = MIGRATIONS_DIR, *, cluster: str | None = None) -> list[Migration]:
    """Apply the migrations not yet applied, in order; returns those applied now (none: a no-op). With
    `cluster`, their cluster form (every statement idempotent there too, so an applied one is rewritten
    again only to learn the tables it created)."""
    ddl = ClusterDDL(cluster) if cluster is not None else None
    done = applied_migrations(store, ddl)
    applied: list[Migration] = []
    for migration in load_migrations(directory):
        statements = migration.statements() if ddl is None else migration.cluster_statements(ddl)
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise StoreError(f"migration {migration.version:03d}_{migration.name} changed after it was applied; "
                                 "add a new migration instead")
            continue
        for statement in statements:
            store.command(statement)
        store.insert_rows(MIGRATIONS_TABLE, [(migration.version, migration.name, migration.checksum)],
                          column_names=("version", "name", "checksum"))
        applied.append(migration)
    return applied


def main() -> None:
    """Without options, migration 001 as rendered from records.py; `rollups`, migration 006 as rendered from
    rollups.py; with --cluster, every migration's statements for that cluster."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.migrate", description=main.__doc__)
    parser.add_argument("rendered", nargs="?", choices=("rollups",), help="print migration 006 instead of 001")
    parser.add_argument("--cluster", metavar="NAME", help="print the ON CLUSTER form of every migration")
    args = parser.parse_args()
    if args.cluster is None:
        print(render_rollups() if args.rendered else render_raw_tables(), end="")
        return
    ddl = ClusterDDL(args.cluster)
    for migration in load_migrations():
        print(f"-- {migration.version:03d}_{migration.name}")
        print("".join(f"{statement};\n\n" for statement in migration.cluster_statements(ddl)), end="")


if __name__ == "__main__":
    main()
