"""The migrations' cluster form (pipeline.cluster): chdb cannot run a cluster, so its statements are checked by
ClickHouse's own parser and for the shape a cluster needs; the single-server path stays as it was."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from pipeline.cluster import LOCAL_SUFFIX, ClusterDDL
from pipeline.errors import StoreError
from pipeline.migrate import MIGRATIONS_TABLE, load_migrations, migrate
from pipeline.store import QueryResult, Store, StoreConfig

CLUSTER = "fabric"


def cluster_statements() -> list[str]:
    ddl = ClusterDDL(CLUSTER)
    return [statement for migration in load_migrations() for statement in migration.cluster_statements(ddl)]


def single_server_tables() -> set[str]:
    return {match.group(1) for migration in load_migrations() for statement in migration.statements()
            if (match := re.match(r"CREATE TABLE IF NOT EXISTS (\w+)", statement))}


def test_clickhouse_parses_every_cluster_statement(store_factory: Callable[..., Store]) -> None:
    store = store_factory(migrated=False)
    statements = [ClusterDDL(CLUSTER).migrations_table(), *cluster_statements()]
    for statement in statements:
        assert store.query("EXPLAIN AST " + statement).rows, statement


def test_every_table_is_replicated_on_the_cluster_behind_a_distributed_table_of_its_own_name() -> None:
    statements = cluster_statements()
    assert all(f"ON CLUSTER '{CLUSTER}'" in statement.splitlines()[0] for statement in statements)
    engines = [re.search(r"ENGINE = (\w+)", statement) for statement in statements]
    assert {m.group(1) for m in engines if m} == {"ReplicatedMergeTree", "ReplicatedSummingMergeTree",
                                                   "ReplicatedReplacingMergeTree", "Distributed"}
    assert not any("non_replicated_deduplication_window" in statement for statement in statements)
    fronts = dict(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) ON CLUSTER '\w+' AS \w+\n"
                             rf"ENGINE = Distributed\('{CLUSTER}', currentDatabase\(\), \w+, (.+)\)$",
                             "\n".join(statements), re.MULTILINE))
    tables = single_server_tables()
    assert set(fronts) == tables
    assert fronts["flows"] == "cityHash64(link)" and fronts["iterations"] == "cityHash64(job)"
    assert fronts["sink_intents"] == "rand()"
    for table in tables:
        assert any(s.startswith(f"CREATE TABLE IF NOT EXISTS {table}{LOCAL_SUFFIX} ON CLUSTER") and
                   "Replicated" in s and f"/{table}'" in s for s in statements), table


def test_materialized_views_stay_on_their_shard_and_alters_reach_both_tables() -> None:
    statements = cluster_statements()
    views = [s for s in statements if s.startswith("CREATE MATERIALIZED VIEW")]
    names = {re.findall(r"VIEW IF NOT EXISTS (\w+)", view)[0] for view in views}
    assert len(names) == 5 and len(views) == 10  # 002/004 create them, 006 drops and creates them again
    assert {f"DROP VIEW IF EXISTS {name} ON CLUSTER 'fabric'" for name in names} <= set(statements)
    for view in views:
        named = re.findall(r"\b(?:TO|FROM)\s+(\w+)", view)
        assert named and all(name.endswith(LOCAL_SUFFIX) for name in named), view
    altered = [re.match(r"ALTER TABLE (\w+) ON CLUSTER", s) for s in statements if s.startswith("ALTER")]
    assert sorted({m.group(1) for m in altered if m}) == ["events", "events_local", "flows", "flows_local"]
    incidents = next(s for s in statements if s.startswith("CREATE VIEW IF NOT EXISTS incidents"))
    assert re.search(r"FROM events\b", incidents)  # the readers' view reads every shard


class RecordingStore(Store):
    """The I/O boundary alone: records what migrate() would send to a cluster (none runs here)."""

    def __init__(self) -> None:
        super().__init__(StoreConfig(dsn="http://cluster.invalid:8123/fabricscope"))
        self.commands: list[str] = []
        self.recorded: list[Sequence[Any]] = []

    def command(self, sql: str, *, parameters: Mapping[str, Any] | None = None,
                settings: Mapping[str, Any] | None = None) -> None:
        self.commands.append(sql)

    def query(self, sql: str, *, parameters: Mapping[str, Any] | None = None,
              settings: Mapping[str, Any] | None = None, aware_times: bool = False) -> QueryResult:
        return QueryResult(columns=["version", "checksum"], types=["UInt32", "String"], rows=[])

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], *, column_names: Sequence[str],
                    settings: Mapping[str, Any] | None = None) -> None:
        assert table == MIGRATIONS_TABLE
        self.recorded.extend(rows)


def test_migrate_on_a_cluster_sends_the_cluster_form_and_records_each_migration_in_a_replicated_history() -> None:
    store = RecordingStore()
    applied = migrate(store, cluster=CLUSTER)
    assert [m.version for m in applied] == [m.version for m in load_migrations()]
    assert store.commands[0].startswith(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ON CLUSTER")
    assert "ReplicatedMergeTree('/clickhouse/tables/{database}/schema_migrations'" in store.commands[0]
    assert store.commands[1:] == cluster_statements()
    assert [row[0] for row in store.recorded] == [m.version for m in applied]


@pytest.mark.parametrize("name", ["fab'ric", "a b", ""])
def test_a_cluster_name_that_could_break_out_of_its_quotes_is_refused(name: str) -> None:
    with pytest.raises(StoreError, match="cluster name"):
        ClusterDDL(name)


def test_a_statement_without_a_cluster_form_is_refused_by_name() -> None:
    with pytest.raises(StoreError, match="no cluster form for this migration statement: DROP TABLE flows"):
        ClusterDDL(CLUSTER).rewrite("DROP TABLE flows")


def test_the_module_prints_the_cluster_form_for_review() -> None:
    done = subprocess.run([sys.executable, "-m", "pipeline.migrate", "--cluster", CLUSTER],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.count(";\n") == len(cluster_statements())


@pytest.mark.parametrize(("extra", "reason"), [
    ((), "needs --clickhouse"),
    (("--clickhouse", "http://clickhouse.invalid:8123/fabricscope"), "cluster name"),
])
def test_ingest_refuses_a_cluster_it_cannot_migrate_before_starting(
        tmp_path: Path, extra: tuple[str, ...], reason: str) -> None:
    done = subprocess.run([sys.executable, "-m", "fabricscope.cli", "ingest", "--cluster", "fab'ric", "--metrics",
                           "off", "--data-dir", str(tmp_path), *extra], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("fabricscope ingest: --cluster:") and reason in done.stderr
    assert not any(tmp_path.iterdir()), "nothing starts before the input is checked"
