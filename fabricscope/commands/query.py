"""`fabricscope query "SQL" [--format table|json|csv]`: run one read-only query against the store.

table is for reading (times to the ms with their zone, bytes in SI units, protocols by name); json and csv
are complete (times ISO 8601 with Z, to the µs; arrays and maps as JSON, in one CSV cell each).

The store runs one read and nothing else (Store.query_readonly): several statements, a write, KILL, SET or
SETTINGS, INTO OUTFILE and functions that reach files or the network (file, url, remote, s3, ...) are
refused before anything runs, and the server runs the read with readonly=1. A refused or wrong statement
is bad input (exit 2, one line); a store held by another process or unreachable is exit 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import InputError, StoreError

if TYPE_CHECKING:
    from fabricscope.config import Config
    from pipeline.store import QueryResult, Store, StoreConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", metavar="SQL",
                        help="one SELECT (or SHOW/DESCRIBE/EXISTS) statement that reads only the store")
    add_format_argument(parser)


def add_format_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", dest="output_format",
                        help="table to read (times to the ms, SI units); json or csv complete, times ISO 8601 "
                             "with Z (default: %(default)s)")


def run(args: argparse.Namespace, config: Config) -> int:
    del config  # no component of this command is configured in --config
    from fabricscope.results import render
    from pipeline.store import Store

    with Store(read_only_config(args)) as store:
        print(render(read_only_query(store, args.sql), args.output_format))
    return 0


def read_only_config(args: argparse.Namespace) -> StoreConfig:
    """The store of --clickhouse, or the embedded one, which must already exist under --data-dir."""
    from pipeline.store import EMBEDDED_SUBDIR, StoreConfig, embedded_dsn

    if args.clickhouse:
        return StoreConfig(dsn=args.clickhouse)
    if not (Path(args.data_dir) / EMBEDDED_SUBDIR).is_dir():
        raise InputError("--data-dir", f"no store in {Path(args.data_dir).resolve()} (run ingest, replay or demo)")
    return StoreConfig(dsn=embedded_dsn(args.data_dir))


def read_only_query(store: Store, sql: str, parameters: Mapping[str, Any] | None = None) -> QueryResult:
    """Run a read-only query; a refused or wrong query is the user's input, named as such."""
    try:
        return store.query_readonly(sql, parameters=parameters)
    except StoreError as exc:
        if exc.retriable:
            raise
        raise InputError("SQL", str(exc).splitlines()[0]) from exc
