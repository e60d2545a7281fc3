"""The migrations' statements for a ClickHouse cluster: the single-server DDL rewritten, statement by statement.

Each table `T` of the migrations becomes `T_local ON CLUSTER` with the Replicated variant of its engine (a
replica per node, one ZooKeeper/Keeper path per shard) and a `Distributed` table named `T` in front, sharded
by link where the table has one (a link's rows and its rollups then live on one shard), else by job, else at
random. The sink inserts into `T` and the dashboards read `T`, as on one server. Materialized views read and
write the `_local` tables of their shard; plain views read the Distributed tables. Replicated tables
deduplicate repeated inserts by themselves (`replicated_deduplication_window`), so the single server's
`non_replicated_deduplication_window` becomes that. A statement of a form this does not know is refused by
name rather than run on one node only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pipeline.errors import StoreError

LOCAL_SUFFIX = "_local"
REPLICA_PATH = "/clickhouse/tables/{shard}/{database}/"
REPLICA_NAME = "{replica}"
# schema_migrations is one history for the whole cluster: a single replicated path, every node a replica.
MIGRATIONS_PATH = "/clickhouse/tables/{database}/schema_migrations"
_NAME = re.compile(r"[A-Za-z0-9_.{}-]+")
_CREATE_TABLE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\n?(\(.*)", re.DOTALL)
_ENGINE = re.compile(r"ENGINE = (\w*)MergeTree(?:\(([^)]*)\))?")
_MATERIALIZED_VIEW = re.compile(r"CREATE MATERIALIZED VIEW IF NOT EXISTS (\w+) TO (\w+) AS(.*)", re.DOTALL)
_VIEW = re.compile(r"CREATE VIEW IF NOT EXISTS (\w+) AS(.*)", re.DOTALL)
_DROP_VIEW = re.compile(r"DROP VIEW IF EXISTS (\w+)")
_ALTER = re.compile(r"ALTER TABLE (\w+) (.*)", re.DOTALL)
_SOURCE = re.compile(r"\b(FROM|JOIN)\s+(\w+)\b")


def check_cluster_name(name: str) -> str:
    """A cluster name as ClickHouse's remote_servers spells it (or the `{cluster}` macro), else StoreError."""
    if not _NAME.fullmatch(name):
        raise StoreError(f"cluster name {name!r}: letters, digits, '_', '.', '-' or a {{macro}} only")
    return name


def sharding_key(body: str) -> str:
    """By link where the table has the column, else by job, else at random."""
    for column in ("link", "job"):
        if re.search(rf"^\s*`?{column}`?\s", body, re.MULTILINE):
            return f"cityHash64({column})"
    return "rand()"


@dataclass
class ClusterDDL:
    """Rewrites statements in migration order; remembers which tables it sharded, which later views and
    ALTERs name."""

    cluster: str
    sharded: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        check_cluster_name(self.cluster)

    @property
    def on_cluster(self) -> str:
        return f"ON CLUSTER '{self.cluster}'"

    def migrations_table(self) -> str:
        return (f"CREATE TABLE IF NOT EXISTS schema_migrations {self.on_cluster} (version UInt32, name String, "
                "checksum String, applied_at DateTime64(6, 'UTC') DEFAULT now64(6)) "
                f"ENGINE = ReplicatedMergeTree('{MIGRATIONS_PATH}', '{REPLICA_NAME}') ORDER BY version")

    def rewrite(self, statement: str) -> list[str]:
        """The cluster statements standing for one single-server statement."""
        if match := _CREATE_TABLE.fullmatch(statement):
            return self._table(match.group(1), match.group(2))
        if match := _MATERIALIZED_VIEW.fullmatch(statement):
            name, target, select = match.groups()
            return [f"CREATE MATERIALIZED VIEW IF NOT EXISTS {name} {self.on_cluster} TO {self._local(target)} AS"
                    + _SOURCE.sub(lambda m: f"{m.group(1)} {self._local(m.group(2))}", select)]
        if match := _VIEW.fullmatch(statement):
            return [f"CREATE VIEW IF NOT EXISTS {match.group(1)} {self.on_cluster} AS{match.group(2)}"]
        if match := _DROP_VIEW.fullmatch(statement):  # a view re-created from its declaration (006)
            return [f"DROP VIEW IF EXISTS {match.group(1)} {self.on_cluster}"]
        if (match := _ALTER.fullmatch(statement)) and match.group(1) in self.sharded:
            name, change = match.groups()  # the Distributed table must show a new column too
            return [f"ALTER TABLE {name}{LOCAL_SUFFIX} {self.on_cluster} {change}",
                    f"ALTER TABLE {name} {self.on_cluster} {change}"]
        raise StoreError(f"no cluster form for this migration statement: {statement.splitlines()[0][:80]}")

    def _local(self, table: str) -> str:
        if table not in self.sharded:
            raise StoreError(f"{table}: a materialized view names a table no earlier migration created")
        return table + LOCAL_SUFFIX

    def _table(self, name: str, body: str) -> list[str]:
        engine = _ENGINE.search(body)
        if engine is None:
            raise StoreError(f"{name}: only MergeTree-family tables have a cluster form")
        family, arguments = engine.groups()
        replicated = ", ".join(part for part in (f"'{REPLICA_PATH}{name}'", f"'{REPLICA_NAME}'", arguments) if part)
        body = (body[:engine.start()] + f"ENGINE = Replicated{family}MergeTree({replicated})" + body[engine.end():])
        body = body.replace("non_replicated_deduplication_window", "replicated_deduplication_window")
        self.sharded.add(name)
        local = name + LOCAL_SUFFIX
        return [f"CREATE TABLE IF NOT EXISTS {local} {self.on_cluster}\n{body}",
                f"CREATE TABLE IF NOT EXISTS {name} {self.on_cluster} AS {local}\n"
                f"ENGINE = Distributed('{self.cluster}', currentDatabase(), {local}, {sharding_key(body)})"]
