"""ClickHouse for fabricscope: one clickhouse-connect client built from a DSN, shared by threads.

`http(s)://user:pass@host:8123/db` reaches a server; `chdb:///DIR` runs the same engine in this process
(DESIGN.md section 3). chdb serves one data directory per process and one process per directory, so a
directory held by another process becomes StoreLockedError naming it. Every driver error is translated
here into StoreError, with `retriable` saying whether waiting can help.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlparse

import pyarrow as pa

from pipeline.errors import StoreError, StoreLockedError

EMBEDDED_SCHEME = "chdb"
EMBEDDED_SUBDIR = "clickhouse"
DEFAULT_DATABASE = "default"
READONLY_SETTINGS: Mapping[str, Any] = {"readonly": 1, "allow_ddl": 0}
# Server error codes after which the same request may succeed: timeout, too many queries, socket timeout,
# network, memory limit, too many parts, system error, keeper.
RETRIABLE_CODES = frozenset({159, 202, 209, 210, 241, 252, 425, 999})
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # Arrow IPC: continuation marker, length 0
INSERT_CHUNK_ROWS = 65_536  # rows per record batch of an insert's stream (the engine squashes them again)
_CODE = re.compile(r"Code: (\d+)")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def embedded_dsn(data_dir: str | Path) -> str:
    """The DSN of the embedded store under a data directory."""
    return f"{EMBEDDED_SCHEME}://{(Path(data_dir) / EMBEDDED_SUBDIR).resolve()}"


def quote_identifier(name: str) -> str:
    """A database or table name for DDL, where parameters cannot be bound; only plain identifiers pass."""
    if not _IDENTIFIER.fullmatch(name):
        raise StoreError(f"invalid identifier {name!r}: letters, digits and _ only")
    return f"`{name}`"


@dataclass(frozen=True, kw_only=True)
class StoreConfig:
    """`database` overrides the DSN's; `create_database` creates it on open (the sink and migrations do)."""

    dsn: str
    database: str | None = None
    create_database: bool = False

    @property
    def embedded(self) -> bool:
        return urlparse(self.dsn).scheme == EMBEDDED_SCHEME

    @property
    def location(self) -> str:
        """Where the data lives, for messages: the directory, or host:port without credentials."""
        parsed = urlparse(self.dsn)
        if self.embedded:
            return parsed.path
        return f"{parsed.scheme}://{parsed.hostname}:{parsed.port or ''}"

    @property
    def target_database(self) -> str:
        if self.database:
            return self.database
        parsed = urlparse(self.dsn)
        if not self.embedded and parsed.path.strip("/"):
            return unquote(parsed.path.strip("/").split("/")[0])
        return DEFAULT_DATABASE


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]


def _code(exc: BaseException) -> int | None:
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


@contextlib.contextmanager
def _chdb_stderr_filtered() -> Iterator[None]:
    """Hold file descriptor 2 while chdb starts and write it back without its lock failure: the engine's C++
    side prints "Code: 76 ... Cannot lock file" there itself, above the one-line StoreLockedError we raise."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [line for line in held.read().splitlines(keepends=True) if b"Cannot lock file" not in line]
            if kept:
                os.write(2, b"".join(kept))


def _status_locked(directory: str) -> bool:
    """True when another process holds chdb's lock on DIR/status (ClickHouse flocks it while running)."""
    status = Path(directory) / "status"
    if not status.exists():
        return False
    with status.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            return exc.errno in (errno.EAGAIN, errno.EACCES)
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


class Store:
    """A ClickHouse client; open() connects, close() releases (and unlocks an embedded directory)."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def database(self) -> str:
        return self.config.target_database

    def open(self) -> Store:
        import clickhouse_connect
        from clickhouse_connect.driver.exceptions import ClickHouseError

        database = self.database
        connect_to = DEFAULT_DATABASE if self.config.create_database else database
        try:
            with _chdb_stderr_filtered() if self.config.embedded else contextlib.nullcontext():
                client = clickhouse_connect.get_client(dsn=self.config.dsn, database=connect_to)
        except ClickHouseError as exc:
            raise self._open_error(exc) from exc
        except OSError as exc:
            raise StoreError(f"cannot reach ClickHouse at {self.config.location}: {exc}", retriable=True) from exc
        self._client = client
        if self.config.create_database:
            self.command(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
            client.database = database
        return self

    def _open_error(self, exc: BaseException) -> StoreError:
        location = self.config.location
        if self.config.embedded and ("Cannot lock file" in str(exc) or _status_locked(location)):
            return StoreLockedError(
                f"the data directory {location} is in use by another process (another fabricscope?); "
                "stop it or choose another --data-dir"
            )
        if self.config.embedded:
            return StoreError(f"cannot open the embedded store {location}: {exc}")
        return self._translate(f"connect to {location}", exc)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _translate(self, action: str, exc: BaseException) -> StoreError:
        from clickhouse_connect.driver.exceptions import OperationalError

        code = _code(exc)
        retriable = isinstance(exc, OperationalError | OSError) or code in RETRIABLE_CODES
        return StoreError(f"ClickHouse {action}: {exc}", retriable=retriable)

    def _call(self, action: str, method: str, *args: Any, **kwargs: Any) -> Any:
        from clickhouse_connect.driver.exceptions import ClickHouseError

        with self._lock:
            if self._client is None:
                raise StoreError(f"ClickHouse {action}: the store is not open")
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except (ClickHouseError, OSError) as exc:
                raise self._translate(action, exc) from exc

    def command(self, sql: str, *, parameters: Mapping[str, Any] | None = None,
                settings: Mapping[str, Any] | None = None) -> None:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT)."""
        self._call("command", "command", sql, parameters=dict(parameters or {}), settings=dict(settings or {}))

    def query(self, sql: str, *, parameters: Mapping[str, Any] | None = None,
              settings: Mapping[str, Any] | None = None, aware_times: bool = False) -> QueryResult:
        """Run a query with bound parameters ({name:Type} placeholders) and return all its rows.

        Times are naive UTC datetimes (the driver's default), or with aware_times UTC-aware ones.
        """
        extra = {"tz_mode": "aware"} if aware_times else {}
        result = self._call("query", "query", sql, parameters=dict(parameters or {}), settings=dict(settings or {}),
                            **extra)
        return QueryResult(list(result.column_names), [t.name for t in result.column_types],
                           [tuple(row) for row in result.result_rows])

    def query_readonly(self, sql: str, *, parameters: Mapping[str, Any] | None = None) -> QueryResult:
        """One read, and nothing else: a statement that would write, change settings or reach outside the
        store is refused (StoreError, not retriable) before it runs; the server also runs it with readonly=1.

        ClickHouse parses the text, bound as a parameter so nothing of it runs (formatQuery refuses several
        statements); the single statement it prints is judged on its EXPLAIN AST (pipeline/readonly.py),
        and that same statement is the one run. Its times are UTC-aware, for people and programs to read.
        """
        from pipeline.readonly import refusal

        try:
            statement = self.query("SELECT formatQuery({sql:String})", parameters={"sql": sql},
                                   settings=READONLY_SETTINGS).rows[0][0]
        except StoreError as exc:
            if exc.retriable:
                raise
            if "Multi-statements" in str(exc):
                raise StoreError("refused, not a single read: several statements; run one at a time") from exc
            raise StoreError(str(exc).split(": In scope SELECT formatQuery(")[0]) from exc
        # EXPLAIN AST only parses; without settings, as the driver writes them into the text as SETTINGS.
        ast = self.query(f"EXPLAIN AST {statement}", parameters=parameters)
        reason = refusal([row[0] for row in ast.rows])
        if reason:
            raise StoreError(f"refused, not a single read: {reason}")
        return self.query(statement, parameters=parameters, settings=READONLY_SETTINGS, aware_times=True)

    def insert_arrow(self, table: str, rows: pa.Table, *, settings: Mapping[str, Any] | None = None) -> None:
        """Insert an Arrow table whose columns carry the table's names."""
        self.insert_stream(table, rows.schema, [rows], settings=settings)

    def insert_stream(self, table: str, schema: pa.Schema, parts: Iterable[pa.Table], *,
                      settings: Mapping[str, Any] | None = None) -> None:
        """Insert the rows of `parts`, tables of `schema` taken one at a time, as one insert.

        The rows go as an Arrow stream spooled to a temporary file, which the client reads in pieces:
        clickhouse-connect's `insert_arrow` serialises the whole table in memory and chdb's backend copies it
        into bytes before writing its own file: two copies of the table at once (250,000 flow rows: 77 MB
        each). And `parts` may be made as they are written."""
        with tempfile.TemporaryFile() as stream:
            with pa.ipc.new_stream(stream, schema) as writer:
                for part in parts:
                    writer.write_table(part, max_chunksize=INSERT_CHUNK_ROWS)
            self._insert_file(table, schema, stream, settings)

    def insert_batches(self, table: str, schema: pa.Schema, batches: Iterable[pa.ipc.Message], *,
                       settings: Mapping[str, Any] | None = None) -> None:
        """Insert Arrow IPC record batch messages of `schema` as they came, compressed bodies and all, as one
        insert: the engine decodes them, so the sink neither decompresses its messages a second time nor
        spools their rows decoded (250,000 flow rows: ~8 MB to the file instead of 77)."""
        with tempfile.TemporaryFile() as stream:
            stream.write(schema.serialize())
            for batch in batches:
                stream.write(batch.serialize())
            stream.write(_END_OF_STREAM)
            self._insert_file(table, schema, stream, settings)

    def _insert_file(self, table: str, schema: pa.Schema, stream: IO[bytes],
                     settings: Mapping[str, Any] | None) -> None:
        """Insert the Arrow stream written to `stream`. The embedded engine's allocator (jemalloc) keeps what
        an insert freed for seconds, ~220 MB after 250,000 flow rows, in this process; purging it costs
        ~0.2 ms when there is nothing to give back."""
        stream.seek(0)
        self._call(f"insert into {table}", "raw_insert", table, schema.names, stream, dict(settings or {}),
                   "ArrowStream")
        if self.config.embedded:
            self._call("purge freed memory", "command", "SYSTEM JEMALLOC PURGE")

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], *, column_names: Sequence[str],
                    settings: Mapping[str, Any] | None = None) -> None:
        """Insert a few Python rows (bookkeeping tables, not the record path)."""
        self._call(f"insert into {table}", "insert", table, [list(row) for row in rows],
                   column_names=list(column_names), settings=dict(settings or {}))
