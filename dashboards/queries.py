"""Every SQL statement the dashboard runs, and the one function that runs them.

Each builder returns a `Query`: constant SQL text with `{name:Type}` placeholders and the values to bind.
User input (already validated by dashboards.state) only ever travels in `parameters`; optional filters are
written as `({x:String} = '' OR col = {x:String})` so the text is the same whatever the user chose, and the
flow explorer can show exactly what ran. Every query runs with readonly=1 and a time limit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from pipeline.migrate import RAW_LAYOUTS
from pipeline.rollups import ROLLUPS, Rollup
from pipeline.store import READONLY_SETTINGS, Store

SETTINGS: Mapping[str, Any] = {**READONLY_SETTINGS, "max_execution_time": 20}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S.%f"
EPOCH = datetime(1970, 1, 1)
MAX_POINTS = 400
STEPS_MS = (10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 300_000, 600_000,
            1_800_000, 3_600_000, 21_600_000, 86_400_000)
EVENT_LOOKBACK = timedelta(days=1)
ACTIVE_HOSTS_SPAN = timedelta(minutes=1)
RAW_FLOWS_SPAN = timedelta(minutes=2)
FLOW_TABLE_SPAN = timedelta(minutes=1)
AFFECTED_LOOKBACK = timedelta(milliseconds=10)
RECOVERY_ROWS_BEFORE = timedelta(milliseconds=1500)
RECOVERY_ROWS_AFTER = timedelta(milliseconds=1500)
RECOVERY_MAX_FLOWS = 40
TABLE_ROWS = 200
TOP_TALKERS = 10
EVENT_ROWS = 200
NO_PORT = -1


@dataclass(frozen=True, slots=True)
class Query:
    """SQL text that never holds user input, and the parameters bound to its placeholders."""

    sql: str
    parameters: dict[str, Any] = field(default_factory=dict)

    def shown(self) -> str:
        """The statement and its bound values as the page shows them."""
        bound = "\n".join(f"--   {name} = {value!r}" for name, value in self.parameters.items())
        return f"{self.sql.strip()}\n-- bound parameters:\n{bound}"


def run(store: Store, query: Query) -> pd.DataFrame:
    """Run a query read-only; the frame keeps the query's column names even when it has no rows (the embedded
    engine returns none then, so they are asked of DESCRIBE, which only analyses the statement)."""
    result = store.query(query.sql, parameters=query.parameters, settings=SETTINGS)
    columns = result.columns
    if not result.rows and not columns:
        described = store.query(f"DESCRIBE TABLE ({query.sql})", parameters=query.parameters, settings=SETTINGS)
        columns = [str(row[0]) for row in described.rows]
    return pd.DataFrame(result.rows, columns=columns)


def time_parameter(value: datetime) -> str:
    """A time in the text form `{x:DateTime64(6, 'UTC')}` parses, in UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.strftime(TIME_FORMAT)


def _window(start: datetime, end: datetime) -> dict[str, Any]:
    return {"start": time_parameter(start), "end": time_parameter(end)}


def bucket_ms(start: datetime, end: datetime, points: int = MAX_POINTS) -> int:
    """The smallest round step that draws the window in at most `points` buckets (never below a 10 ms bin)."""
    wanted = (end - start).total_seconds() * 1000 / points
    return next((step for step in STEPS_MS if step >= wanted), STEPS_MS[-1])


_IP = "replaceRegexpOne(IPv6NumToString({column}), '^::ffff:', '')"
SRC_IP, DST_IP = _IP.format(column="src_ip"), _IP.format(column="dst_ip")
_START, _END = "{start:DateTime64(6, 'UTC')}", "{end:DateTime64(6, 'UTC')}"


LATEST_SQL = """
SELECT greatest((SELECT max(ts_start) FROM flows), (SELECT max(ts) FROM link_bins), (SELECT max(ts) FROM events))
    AS latest
"""


def latest() -> Query:
    """The newest record time: live views end there (max of a partition-key column is read from metadata)."""
    return Query(LATEST_SQL)


def latest_time(frame: pd.DataFrame) -> datetime | None:
    """The value of `latest()`, None when the store holds no records yet."""
    value = frame["latest"].iloc[0] if len(frame) else None
    return None if value is None or pd.Timestamp(value).to_pydatetime() <= EPOCH else pd.Timestamp(value)


DATA_SPAN_SQL = f"""
SELECT (SELECT minOrNull(ts_start) FROM flows WHERE ts_start >= {_START} AND ts_start < {_END}) AS flows_first,
       (SELECT maxOrNull(ts_start) FROM flows WHERE ts_start >= {_START} AND ts_start < {_END}) AS flows_last,
       (SELECT minOrNull(ts) FROM link_bins WHERE ts >= {_START} AND ts < {_END}) AS bins_first,
       (SELECT maxOrNull(ts) FROM link_bins WHERE ts >= {_START} AND ts < {_END}) AS bins_last
"""


def data_span(start: datetime, end: datetime) -> Query:
    """The first and last flow or link-bin time within [start, end): what "zoom to data" fits the window to."""
    return Query(DATA_SPAN_SQL, _window(start, end))


def span_of(frame: pd.DataFrame) -> tuple[datetime, datetime] | None:
    """The value of `data_span()` as aware UTC (first, last), None when the range holds no record."""
    if not len(frame):
        return None
    row = frame.iloc[0]
    firsts = [pd.Timestamp(row[c]) for c in ("flows_first", "bins_first") if row[c] is not None and pd.notna(row[c])]
    lasts = [pd.Timestamp(row[c]) for c in ("flows_last", "bins_last") if row[c] is not None and pd.notna(row[c])]
    if not firsts or not lasts:
        return None
    return _utc(min(firsts)), _utc(max(lasts))


def _utc(value: pd.Timestamp) -> datetime:
    moment = value.to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class TrafficSource:
    """A table per-link traffic can be read from, and how fine it is; chosen by span, never by the user.

    `link_bins` holds every 10 ms with RoCE-only ECN counts and PFC; the flow rollups are coarser, count
    ECN over all ECN-capable flows and hold no PFC, which therefore always comes from link_bins (only the
    bins that saw a pause are read).
    """

    table: str
    resolution_ms: int
    max_span: timedelta
    retention: timedelta
    ect: str
    ce: str
    time: str
    last_seen: str


def _rollup_source(rollup: Rollup) -> TrafficSource:
    return TrafficSource(rollup.table, rollup.grain // timedelta(milliseconds=1), rollup.read_span,
                         rollup.retention, "ecn_ect", "ecn_ce", "toDateTime64(ts, 3)",
                         f"toDateTime64(ts, 6) + toIntervalSecond({rollup.grain // timedelta(seconds=1)})")


RAW_BINS = TrafficSource("link_bins", 10, timedelta(minutes=15), RAW_LAYOUTS["link_bins"].retention, "roce_ect",
                         "roce_ce", "toDateTime64(ts, 3)", "ts_last")
# Per-link traffic: the rollups keyed by link and direction (not by address), finest first.
TRAFFIC_SOURCES: tuple[TrafficSource, ...] = (RAW_BINS, *(
    _rollup_source(rollup) for rollup in sorted(ROLLUPS, key=lambda rollup: rollup.grain)
    if {"link", "direction"} <= set(rollup.keys) and not rollup.has_addresses))


@dataclass(frozen=True, slots=True)
class TalkerRollup:
    """A top-talkers table (bytes per address pair, link, app, class and job per bucket), chosen by span and
    age like the traffic sources: minutes while the window's buckets stay few, hours beyond."""

    table: str
    step: timedelta
    max_span: timedelta
    retention: timedelta


TALKER_ROLLUPS: tuple[TalkerRollup, ...] = tuple(
    TalkerRollup(rollup.table, rollup.grain, rollup.read_span, rollup.retention)
    for rollup in sorted(ROLLUPS, key=lambda rollup: rollup.grain) if rollup.has_addresses)
SHORTEST_RETENTION = min([source.retention for source in TRAFFIC_SOURCES]
                         + [rollup.retention for rollup in TALKER_ROLLUPS])

TABLES_SQL = """
SELECT name FROM system.tables WHERE database = currentDatabase() AND name IN {names:Array(String)}
"""


def existing_tables() -> Query:
    """Which rollups this store has (a store migrated before them has only the raw tables)."""
    names = [source.table for source in TRAFFIC_SOURCES] + [rollup.table for rollup in TALKER_ROLLUPS]
    return Query(TABLES_SQL, {"names": names})


def bucket_start(value: datetime, step: timedelta) -> datetime:
    """The start of the rollup bucket holding `value`: a rollup read from there covers the whole window."""
    return value - (value - EPOCH.replace(tzinfo=value.tzinfo)) % step


REFERENCE_LINKS = 8  # the sources' max_span suit a fabric this size; a bigger one gets them shortened in proportion


def traffic_source(start: datetime, end: datetime, now: datetime, tables: set[str],
                   links: int = REFERENCE_LINKS) -> TrafficSource:
    """The coarsest-needed source: raw bins for a live window, then the finest rollup that spans the window
    and still holds its start; past every rollup's span the coarsest that holds it; raw bins when no rollup
    does. `links` is how many links the query reads: rows grow with them, so a 1,024-link map of 5 minutes
    comes from the 1-minute rollup, as 6 hours of an 8-link one does."""
    span, age = end - start, now - start
    scale = min(1.0, REFERENCE_LINKS / max(links, 1))
    held = [source for source in TRAFFIC_SOURCES if source.table in tables and age <= source.retention]
    return next((source for source in held if span <= source.max_span * scale), held[-1] if held else RAW_BINS)


_PFC_BINS = f"""
    SELECT link, direction, 0, 0, 0, 0, 0, pfc_pause, ts, ts_last
    FROM link_bins
    WHERE ts >= {_START} AND ts < {_END} AND pfc_pause > 0"""


def _link_traffic_sql(source: TrafficSource) -> str:
    pfc = "pfc_pause" if source is RAW_BINS else "0"
    rows = f"""
    SELECT link, direction, bytes, packets, {source.ect}, {source.ce}, cnp, {pfc}, toDateTime64(ts, 6),
           {source.last_seen}
    FROM {source.table}
    WHERE ts >= {_START} AND ts < {_END} AND link != ''"""
    if source is not RAW_BINS:
        rows += f"\n    UNION ALL{_PFC_BINS}"
    return f"""
SELECT c1 AS link, c2 AS direction, sum(c3) AS bytes, sum(c4) AS packets, sum(c5) AS roce_ect, sum(c6) AS roce_ce,
       sum(c7) AS cnp, sum(c8) AS pfc_pause, min(c9) AS first_seen, max(c10) AS last_seen
FROM ({rows}
) AS traffic (c1, c2, c3, c4, c5, c6, c7, c8, c9, c10)
GROUP BY link, direction
"""


LINK_TRAFFIC_SQL: dict[str, str] = {source.table: _link_traffic_sql(source) for source in TRAFFIC_SOURCES}


def link_traffic(start: datetime, end: datetime, source: TrafficSource = RAW_BINS) -> Query:
    """Per link and direction over the window: bytes, packets, ECN, CNP, PFC and when traffic was first and
    last seen."""
    return Query(LINK_TRAFFIC_SQL[source.table], _window(start, end))


_ERRORS = "in_errors + out_errors + fcs_errors + in_discards + out_discards"
LINK_COUNTERS_SQL = f"""
SELECT link, sum(errors) AS errors, min(up) AS oper_up
FROM (
    SELECT link, device, ifname, max({_ERRORS}) - min({_ERRORS}) AS errors, argMax(oper_up, ts) AS up
    FROM counters
    WHERE ts >= {_START} AND ts < {_END} AND link != ''
    GROUP BY link, device, ifname
)
GROUP BY link
"""


def link_counters(start: datetime, end: datetime) -> Query:
    """Per link: errors and discards counted in the window at either end, and whether both ends report up."""
    return Query(LINK_COUNTERS_SQL, _window(start, end))


LINK_EVENTS_SQL = f"""
SELECT link,
       maxIfOrNull(ts, kind IN ('fast_recovery', 'link_down')) AS last_down,
       maxIfOrNull(ts, kind = 'link_up') AS last_up,
       countIf(kind IN ('congestion', 'pfc_storm') AND ts_end >= {_START}) AS congestion_events,
       countIf(kind IN ('fast_recovery', 'link_down') AND ts >= {_START}) AS failures
FROM incidents
WHERE ts >= {{lookback:DateTime64(6, 'UTC')}} AND ts < {_END} AND link != ''
GROUP BY link
"""


def link_events(start: datetime, end: datetime) -> Query:
    """Per link: the last failure and recovery (a day back, so a link that died before the window stays
    down), the congestion events and the failures in the window."""
    return Query(LINK_EVENTS_SQL, {**_window(start, end), "lookback": time_parameter(start - EVENT_LOOKBACK)})


LEAF_HOSTS_SQL = f"""
SELECT leaf, uniq(if(direction = 'down', dst_ip, src_ip)) AS hosts
FROM flows
WHERE ts_start >= {_START} AND ts_start < {_END} AND direction IN ('up', 'down')
GROUP BY leaf
"""


def leaf_hosts(start: datetime, end: datetime) -> Query:
    """Per leaf, the hosts behind it that sent or received in the window's last minute: "active" is about
    now, and a day-long window then costs no more than a live one."""
    return Query(LEAF_HOSTS_SQL, _window(max(start, end - ACTIVE_HOSTS_SPAN), end))


_LINK_FILTER = "({link:String} = '' OR link = {link:String})"
_PFC_SERIES = f"""
    SELECT toStartOfInterval(toDateTime64(ts, 3), toIntervalMillisecond({{step_ms:UInt32}})), link, direction,
           0, 0, 0, pfc_pause
    FROM link_bins
    WHERE ts >= {_START} AND ts < {_END} AND pfc_pause > 0 AND {_LINK_FILTER}"""


SERIES_LINES = 8  # link directions drawn on the congestion series


def _congestion_series_sql(source: TrafficSource) -> str:
    pfc = "pfc_pause" if source is RAW_BINS else "0"
    rows = f"""
    SELECT toStartOfInterval({source.time}, toIntervalMillisecond({{step_ms:UInt32}})), link, direction,
           {source.ect}, {source.ce}, cnp, {pfc}
    FROM {source.table}
    WHERE ts >= {_START} AND ts < {_END} AND link != '' AND {_LINK_FILTER}"""
    if source is not RAW_BINS:
        rows += f"\n    UNION ALL{_PFC_SERIES}"
    return f"""
SELECT t, link, direction, roce_ect, roce_ce, cnp, pfc_pause
FROM (
    SELECT c1 AS t, c2 AS link, c3 AS direction, sum(c4) AS roce_ect, sum(c5) AS roce_ce, sum(c6) AS cnp,
           sum(c7) AS pfc_pause, sum(roce_ce + cnp + pfc_pause) OVER (PARTITION BY link, direction) AS marks,
           sum(roce_ect) OVER (PARTITION BY link, direction) AS capable
    FROM ({rows}
    ) AS bins (c1, c2, c3, c4, c5, c6, c7)
    GROUP BY t, link, direction
    HAVING roce_ect + cnp + pfc_pause > 0
)
QUALIFY dense_rank() OVER (ORDER BY marks DESC, capable DESC, link, direction) <= {{lines:UInt32}}
ORDER BY t, link, direction
"""


CONGESTION_SERIES_SQL: dict[str, str] = {source.table: _congestion_series_sql(source) for source in TRAFFIC_SOURCES}


def congestion_series(start: datetime, end: datetime, link: str, source: TrafficSource = RAW_BINS) -> Query:
    """ECN, CNP and PFC per link direction in round buckets (`step_ms`, never finer than the source): the
    SERIES_LINES link directions with the most CE marks, CNPs and PFC pauses (then RoCE traffic), so a
    1,024-link fabric draws its worst, not 2,048 lines."""
    step = max(bucket_ms(start, end), source.resolution_ms)
    return Query(CONGESTION_SERIES_SQL[source.table],
                 {**_window(start, end), "step_ms": step, "link": link, "lines": SERIES_LINES})


ITERATIONS_SQL = f"""
SELECT job, worst_ts AS ts, worst_iteration AS iteration, worst_ms AS allreduce_ms, iterations
FROM (
    SELECT job, argMax(ts, allreduce_ms) AS worst_ts, argMax(iteration, allreduce_ms) AS worst_iteration,
           max(allreduce_ms) AS worst_ms, count() AS iterations
    FROM iterations
    WHERE ts >= {_START} AND ts < {_END}
      AND ({{job:String}} = '' OR job = {{job:String}})
      AND ({{link:String}} = '' OR has(links, {{link:String}}))
    GROUP BY job, toStartOfInterval(ts, toIntervalMillisecond({{step_ms:UInt32}}))
)
ORDER BY job, ts
"""


def iterations(start: datetime, end: datetime, job: str, link: str) -> Query:
    """Each job's slowest iteration per bucket (every iteration when buckets are finer than the period), so
    a slowdown is never averaged away."""
    return Query(ITERATIONS_SQL, {**_window(start, end), "step_ms": bucket_ms(start, end, 2 * MAX_POINTS),
                                  "job": job, "link": link})


SLOWDOWNS_SQL = f"""
SELECT job, ts, ts_end, summary, value, details
FROM incidents
WHERE kind = 'collective_slowdown' AND ts < {_END} AND ts_end >= {_START}
  AND ({{job:String}} = '' OR job = {{job:String}})
ORDER BY ts
LIMIT {EVENT_ROWS}
"""


def slowdowns(start: datetime, end: datetime, job: str) -> Query:
    return Query(SLOWDOWNS_SQL, {**_window(start, end), "job": job})


CONGESTION_EVENTS_SQL = f"""
SELECT event_id, ts, ts_end, kind, severity, link, direction, job, value, summary, details
FROM incidents
WHERE kind IN ('congestion', 'pfc_storm') AND ts < {_END} AND ts_end >= {_START}
  AND ({{link:String}} = '' OR link = {{link:String}})
  AND ({{job:String}} = '' OR job = {{job:String}} OR position(details, {{job:String}}) > 0)
ORDER BY ts DESC
LIMIT {EVENT_ROWS}
"""


def congestion_events(start: datetime, end: datetime, link: str, job: str) -> Query:
    """Congestion and PFC-storm episodes with the link, direction and jobs they hit."""
    return Query(CONGESTION_EVENTS_SQL, {**_window(start, end), "link": link, "job": job})


RECOVERY_EVENTS_SQL = f"""
SELECT event_id, ts, ts_end, link, direction, device, severity, convergence_ms, local_convergence_ms,
       remote_convergence_ms, flows_affected, flows_recovered, packets_lost, summary, details, kind
FROM incidents
WHERE kind = 'fast_recovery' AND ts >= {_START} AND ts < {_END}
  AND ({{link:String}} = '' OR link = {{link:String}})
ORDER BY ts DESC
LIMIT {EVENT_ROWS}
"""


def recovery_events(start: datetime, end: datetime, link: str) -> Query:
    """Link failures with their local/remote convergence, flows affected/recovered and packets lost."""
    return Query(RECOVERY_EVENTS_SQL, {**_window(start, end), "link": link})


RECOVERY_EVENT_SQL = """
SELECT ts, link, convergence_ms, local_convergence_ms, remote_convergence_ms
FROM incidents
WHERE kind = 'fast_recovery' AND link = {link:String} AND ts = {at:DateTime64(6, 'UTC')}
LIMIT 1
"""


def recovery_event(link: str, at: datetime) -> Query:
    """One failure, by the (link, time) the URL names."""
    return Query(RECOVERY_EVENT_SQL, {"link": link, "at": time_parameter(at)})


INCIDENT_SQL = """
SELECT event_id, kind, state, ts, ts_end, severity, link, direction, device, job, value, convergence_ms,
       local_convergence_ms, remote_convergence_ms, flows_affected, flows_recovered, packets_lost, summary, details
FROM incidents
WHERE event_id = {event_id:String}
LIMIT 1
"""


def incident(event_id: str) -> Query:
    """One incident's latest row, by the event_id the URL names."""
    return Query(INCIDENT_SQL, {"event_id": event_id})


WINDOW_INCIDENTS_SQL = f"""
SELECT event_id, kind, ts, ts_end, link, direction
FROM incidents
WHERE kind IN ('congestion', 'pfc_storm', 'fast_recovery', 'collective_slowdown', 'link_flap')
  AND ts < {_END} AND ts_end >= {_START}
ORDER BY ts
LIMIT {EVENT_ROWS}
"""


def window_incidents(start: datetime, end: datetime) -> Query:
    """The incidents overlapping the window: the time series mark them and flow rows link to theirs."""
    return Query(WINDOW_INCIDENTS_SQL, _window(start, end))


_FLOW_KEY = "src_ip, dst_ip, src_port, dst_port, proto, roce_qp"
RECOVERY_FLOWS_SQL = f"""
SELECT concat(app, ' ', {SRC_IP}, ':', toString(src_port), ' → ', {DST_IP}, ':', toString(dst_port),
              if(roce_qp > 0, concat(' qp ', toString(roce_qp)), '')) AS flow,
       link, direction, ts_start, ts_end, packets, psn_first, psn_last
FROM flows
WHERE ts_start >= {{from:DateTime64(6, 'UTC')}} AND ts_start <= {{to:DateTime64(6, 'UTC')}}
  AND ({_FLOW_KEY}) IN (
      SELECT {_FLOW_KEY}
      FROM flows
      WHERE link = {{link:String}} AND ts_start >= {{from:DateTime64(6, 'UTC')}}
        AND ts_start <= {{at:DateTime64(6, 'UTC')}} AND ts_tail >= {{recent:DateTime64(6, 'UTC')}}
      ORDER BY packets DESC
      LIMIT {{max_flows:UInt32}}
  )
ORDER BY flow, ts_start
"""


def recovery_flows(link: str, at: datetime, convergence_ms: float | None) -> Query:
    """The rows, on every link, of the flows the failure affected: at least 3 packets on `link` in the 10 ms
    before it (their 3rd-to-last packet, `ts_tail`, is that recent), as the detector counts them."""
    after = max(RECOVERY_ROWS_AFTER, timedelta(milliseconds=3 * (convergence_ms or 0.0)))
    return Query(RECOVERY_FLOWS_SQL, {
        "link": link,
        "at": time_parameter(at),
        "recent": time_parameter(at - AFFECTED_LOOKBACK),
        "from": time_parameter(at - RECOVERY_ROWS_BEFORE),
        "to": time_parameter(at + after),
        "max_flows": RECOVERY_MAX_FLOWS,
    })


@dataclass(frozen=True, slots=True)
class FlowFilter:
    """The flow explorer's filters; '' (or NO_PORT) means any."""

    link: str = ""
    app: str = ""
    traffic_class: str = ""
    job: str = ""
    host: str = ""
    port: int = NO_PORT

    def parameters(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {**_window(start, end), "link": self.link, "app": self.app, "traffic_class": self.traffic_class,
                "job": self.job, "host": self.host, "port": self.port}


# The time range is the PREWHERE: it alone decides which granules of the (link, direction, ts_start) key are
# read, and the other columns are read only for the rows it keeps.
FLOW_WHERE = f"""
PREWHERE ts_start >= {_START} AND ts_start < {_END}
WHERE ({{link:String}} = '' OR link = {{link:String}})
  AND ({{app:String}} = '' OR app = {{app:String}})
  AND ({{traffic_class:String}} = '' OR traffic_class = {{traffic_class:String}})
  AND ({{job:String}} = '' OR job = {{job:String}})
  AND ({{host:String}} = '' OR src_ip = toIPv6OrDefault({{host:String}}) OR dst_ip = toIPv6OrDefault({{host:String}}))
  AND ({{port:Int32}} < 0 OR src_port = {{port:Int32}} OR dst_port = {{port:Int32}})
"""

TOP_TALKERS_SQL = f"""
SELECT {SRC_IP} AS src, {DST_IP} AS dst, sum(bytes) AS bytes, sum(packets) AS packets
FROM flows
{FLOW_WHERE}
GROUP BY src_ip, dst_ip
ORDER BY bytes DESC
LIMIT {TOP_TALKERS}
"""


_TALKER_WHERE = f"""WHERE ts >= {_START} AND ts < {_END}
  AND ({{link:String}} = '' OR link = {{link:String}})
  AND ({{app:String}} = '' OR app = {{app:String}})
  AND ({{traffic_class:String}} = '' OR traffic_class = {{traffic_class:String}})
  AND ({{job:String}} = '' OR job = {{job:String}})
  AND ({{host:String}} = ''
       OR src_ip = toIPv6OrDefault({{host:String}}) OR dst_ip = toIPv6OrDefault({{host:String}}))"""


def _rollup_talkers_sql(table: str) -> str:
    return f"""
SELECT {SRC_IP} AS src, {DST_IP} AS dst, sum(bytes) AS bytes, sum(packets) AS packets
FROM {table}
{_TALKER_WHERE}
GROUP BY src_ip, dst_ip
ORDER BY bytes DESC
LIMIT {TOP_TALKERS}
"""


ROLLUP_TALKERS_SQL: dict[str, str] = {rollup.table: _rollup_talkers_sql(rollup.table) for rollup in TALKER_ROLLUPS}


def talkers_source(start: datetime, end: datetime, now: datetime, tables: set[str]) -> TalkerRollup | None:
    """The finest top-talkers rollup that spans and still holds the window; None: raw flows."""
    for rollup in TALKER_ROLLUPS:
        if rollup.table in tables and end - start <= rollup.max_span and now - start <= rollup.retention:
            return rollup
    return None


def top_talkers(start: datetime, end: datetime, flow_filter: FlowFilter, source: TalkerRollup | None = None) -> Query:
    """The heaviest address pairs: from raw flows for a short window or a port filter (the rollups keep no
    ports), else from the rollup `source` names, its first bucket starting at or before `start`."""
    if source is None or flow_filter.port != NO_PORT or end - start <= RAW_FLOWS_SPAN:
        return Query(TOP_TALKERS_SQL, flow_filter.parameters(start, end))
    parameters = flow_filter.parameters(bucket_start(start, source.step), end)
    del parameters["port"]
    return Query(ROLLUP_TALKERS_SQL[source.table], parameters)


TRAFFIC_MIX_SQL = f"""
SELECT app, traffic_class, sum(bytes) AS bytes, sum(packets) AS packets, count() AS rows
FROM flows
{FLOW_WHERE}
GROUP BY app, traffic_class
ORDER BY bytes DESC
"""
# The traffic mix reads the rollups that keep the labels it groups and filters by.
MIX_ROLLUPS = tuple(rollup.table for rollup in ROLLUPS
                    if {"app", "traffic_class", "job"} <= set(rollup.keys) and not rollup.has_addresses)
_ROLLUP_MIX_SQL = """
SELECT app, traffic_class, sum(bytes) AS bytes, sum(packets) AS packets, sum(flows) AS rows
FROM {table}
WHERE ts >= {{start:DateTime64(6, 'UTC')}} AND ts < {{end:DateTime64(6, 'UTC')}}
  AND ({{link:String}} = '' OR link = {{link:String}})
  AND ({{app:String}} = '' OR app = {{app:String}})
  AND ({{traffic_class:String}} = '' OR traffic_class = {{traffic_class:String}})
  AND ({{job:String}} = '' OR job = {{job:String}})
GROUP BY app, traffic_class
ORDER BY bytes DESC
"""
ROLLUP_MIX_SQL: dict[str, str] = {table: _ROLLUP_MIX_SQL.format(table=table) for table in MIX_ROLLUPS}


def mix_source(start: datetime, end: datetime, now: datetime, tables: set[str]) -> TrafficSource:
    """The finest flow rollup (they keep app, traffic class and job) that spans and still holds the window."""
    for source in TRAFFIC_SOURCES:
        if source.table in MIX_ROLLUPS and source.table in tables and end - start <= source.max_span \
                and now - start <= source.retention:
            return source
    return RAW_BINS


def _talkers_mix_sql(table: str) -> str:
    return f"""
SELECT app, traffic_class, sum(bytes) AS bytes, sum(packets) AS packets, sum(flows) AS rows
FROM {table}
{_TALKER_WHERE}
GROUP BY app, traffic_class
ORDER BY bytes DESC
"""


TALKERS_MIX_SQL: dict[str, str] = {rollup.table: _talkers_mix_sql(rollup.table) for rollup in TALKER_ROLLUPS}


def traffic_mix(start: datetime, end: datetime, flow_filter: FlowFilter, source: TrafficSource = RAW_BINS,
                talkers: TalkerRollup | None = None) -> Query:
    """Bytes per app and traffic class: from raw flows for a short window or a port filter (no rollup keeps
    ports); with a host filter from the talker rollup `talkers` (it keeps addresses, the flow rollups do not);
    else from the flow rollup `source` names. A rollup is read from its first bucket at or before `start`."""
    if flow_filter.port == NO_PORT and end - start > RAW_FLOWS_SPAN:
        if flow_filter.host and talkers is not None:
            parameters = flow_filter.parameters(bucket_start(start, talkers.step), end)
            del parameters["port"]
            return Query(TALKERS_MIX_SQL[talkers.table], parameters)
        if not flow_filter.host and source.table in ROLLUP_MIX_SQL:
            parameters = flow_filter.parameters(bucket_start(start, timedelta(milliseconds=source.resolution_ms)), end)
            del parameters["host"], parameters["port"]
            return Query(ROLLUP_MIX_SQL[source.table], parameters)
    return Query(TRAFFIC_MIX_SQL, flow_filter.parameters(start, end))


FLOW_TABLE_SQL = f"""
SELECT first, last, link, direction, {SRC_IP} AS src, src_port, {DST_IP} AS dst, dst_port, proto, roce_qp, app,
       traffic_class, job, packets, bytes, ecn_ce, cnp, psn_gaps
FROM (
    SELECT min(ts_start) AS first, max(ts_end) AS last, any(link) AS link, any(direction) AS direction,
           any(src_ip) AS src_ip, any(src_port) AS src_port, any(dst_ip) AS dst_ip, any(dst_port) AS dst_port,
           any(proto) AS proto, any(roce_qp) AS roce_qp, any(app) AS app, any(traffic_class) AS traffic_class,
           any(job) AS job, sum(packets) AS packets, sum(bytes) AS bytes, sum(ecn_ce) AS ecn_ce, sum(cnp) AS cnp,
           sum(psn_gaps) AS psn_gaps
    FROM (
        SELECT *, cityHash64(link, direction, src_ip, src_port, dst_ip, dst_port, proto, roce_qp) AS flow_key
        FROM flows {FLOW_WHERE}
    )
    GROUP BY flow_key
    ORDER BY bytes DESC
    LIMIT {TABLE_ROWS}
)
ORDER BY bytes DESC
"""


def flow_table(start: datetime, end: datetime, flow_filter: FlowFilter) -> Query:
    """The heaviest flows of the window's last minute (FLOW_TABLE_SPAN), one row per flow key and link: a
    bounded slice of raw rows whatever the window, so the table answers as fast for a day as for a minute
    (top talkers and the mix cover the whole window). Grouped by a 64-bit hash of the key: hashing wide
    IPv6 keys once is cheaper than a hash table keyed by them."""
    return Query(FLOW_TABLE_SQL, flow_filter.parameters(max(start, end - FLOW_TABLE_SPAN), end))


_SEARCH_SQL = """
SELECT kind, value, bytes FROM (
    SELECT 'host' AS kind, ip AS value, sum(bytes) AS bytes
    FROM (SELECT arrayJoin([{src}, {dst}]) AS ip, bytes FROM {table} WHERE {time} >= {start} AND {time} < {end})
    WHERE startsWith(ip, {{text:String}})
    GROUP BY ip ORDER BY bytes DESC LIMIT {{limit:UInt32}}
    UNION ALL
    SELECT 'job' AS kind, toString(job) AS value, sum(bytes) AS bytes
    FROM {table}
    WHERE {time} >= {start} AND {time} < {end} AND job != '' AND positionCaseInsensitive(job, {{text:String}}) > 0
    GROUP BY job ORDER BY bytes DESC LIMIT {{limit:UInt32}}
)
ORDER BY kind, bytes DESC
"""


def _search_sql(table: str, time: str) -> str:
    return _SEARCH_SQL.format(src=SRC_IP, dst=DST_IP, table=table, time=time, start=_START, end=_END)


SEARCH_SQL: dict[str | None, str] = {None: _search_sql("flows", "ts_start"),
                                     **{rollup.table: _search_sql(rollup.table, "ts") for rollup in TALKER_ROLLUPS}}


def search(start: datetime, end: datetime, text: str, limit: int, source: TalkerRollup | None = None) -> Query:
    """Hosts whose address starts with `text` and jobs whose name holds it (any case), heaviest first, over the
    window: from the top-talkers rollup `source` for a long window, else raw flows."""
    if source is None or end - start <= RAW_FLOWS_SPAN:
        return Query(SEARCH_SQL[None], {**_window(start, end), "text": text, "limit": limit})
    return Query(SEARCH_SQL[source.table],
                 {**_window(bucket_start(start, source.step), end), "text": text, "limit": limit})
