"""`fabricscope events [--kind K] [--since T] [--format table|json|csv]`: the detected incidents, oldest first.

One row per incident (the `incidents` view: each event_id's latest row), open ones included. The table
gives one line per incident within 120 columns (time to the ms, kind, link, state, the summary and what
the details hold); json and csv give every column, json with `details` as an object, csv as JSON text.

--since takes an ISO 8601 time (UTC unless it says otherwise) or a look-back such as 30s, 15m, 2h, 7d.
"""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from fabricscope.commands.query import read_only_config, read_only_query
from pipeline.errors import InputError
from pipeline.labels import EVENT_KINDS

DEFAULT_LIMIT = 1000
_LOOK_BACK = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
COLUMNS = ("ts", "ts_end", "kind", "severity", "link", "direction", "device", "job", "summary",
           "convergence_ms", "local_convergence_ms", "remote_convergence_ms", "flows_affected",
           "flows_recovered", "packets_lost", "value", "details", "event_id", "state", "updated")

if TYPE_CHECKING:
    from fabricscope.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=EVENT_KINDS, help="only events of this kind")
    parser.add_argument("--since", metavar="T", help="ISO 8601 time or look-back (30s, 15m, 2h, 7d)")
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="at most this many (default: %(default)s)")
    parser.add_argument("--format", choices=("table", "json", "csv"), default="table", dest="output_format",
                        help="table: one line per incident within 120 columns, details summarised; json, csv: "
                             "every column, times ISO 8601 with Z (default: %(default)s)")


def parse_since(text: str, *, now: datetime) -> datetime:
    """The earliest event time wanted, in UTC."""
    look_back = _LOOK_BACK.fullmatch(text.strip())
    if look_back:
        return now - timedelta(**{_UNITS[look_back.group(2)]: float(look_back.group(1))})
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError("--since", f"'{text}' is neither an ISO 8601 time nor a look-back like 15m") from exc
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def run(args: argparse.Namespace, config: Config) -> int:
    del config  # no component of this command is configured in --config
    from fabricscope.incidents import render
    from pipeline.store import Store

    if args.limit <= 0:
        raise InputError("--limit", "must be positive")
    since = parse_since(args.since, now=datetime.now(UTC)) if args.since else datetime(1970, 1, 1, tzinfo=UTC)
    sql = (f"SELECT {', '.join(COLUMNS)} FROM incidents "
           "WHERE ts >= {since:DateTime64(6, 'UTC')} AND ({kind:String} = '' OR kind = {kind:String}) "
           "ORDER BY ts, kind, link LIMIT {limit:UInt32}")
    parameters = {"since": since.replace(tzinfo=None), "kind": args.kind or "", "limit": args.limit}
    with Store(read_only_config(args)) as store:
        print(render(read_only_query(store, sql, parameters), args.output_format))
    return 0
