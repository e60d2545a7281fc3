"""Event rows as every detector emits them: exactly the `events` columns of pipeline/records.py.

Detectors keep time as int64 microseconds since the epoch (cheap to compare and subtract); this module
converts at the edges: batch columns in, event rows out. Every event is an incident (DESIGN.md section 5):
a detector may write it when it opens (`state` open), again when it changes, and when it closes; the rows
share an `event_id` derived from what identifies the incident, so a detector rebuilt after a restart
names the same incident the same way.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from pipeline.labels import EVENT_KINDS, SEVERITIES
from pipeline.records import column_names

Event = dict[str, Any]
Batch = dict[str, np.ndarray]

EVENT_COLUMNS: tuple[str, ...] = tuple(column_names("events"))
US_PER_MS = 1000
US_PER_S = 1_000_000
STATES = ("open", "closed")


def times_us(column: np.ndarray) -> np.ndarray:
    """int64 microseconds since the epoch of a datetime64 column (any unit)."""
    return np.asarray(column).astype("datetime64[us]").astype(np.int64)


def ms_to_us(ms: float) -> int:
    return round(ms * US_PER_MS)


def iso(us: int) -> str:
    """A microsecond timestamp as ISO 8601 text for `details`."""
    return f"{np.datetime64(int(us), 'us')}Z"


def make_event(
    kind: str,
    *,
    ts: int,
    ts_end: int,
    severity: str,
    summary: str,
    link: str = "",
    direction: str = "unknown",
    device: str = "",
    job: str = "",
    value: float | None = None,
    details: dict[str, Any] | None = None,
    convergence_ms: float | None = None,
    local_convergence_ms: float | None = None,
    remote_convergence_ms: float | None = None,
    flows_affected: int = 0,
    flows_recovered: int = 0,
    packets_lost: int = 0,
    state: str = "closed",
    updated: int | None = None,
    identity: tuple[Any, ...] | None = None,
) -> Event:
    """One event row; `ts`/`ts_end`/`updated` in microseconds since the epoch, text as plain `str` (not
    numpy's), `details` serialised to JSON text. The `event_id` hashes `kind` and `identity` (default: the
    link, direction, device, job and `ts`), which must not change between an incident's rows; `updated`
    (default: `ts_end`) is the data time the row is written at, increasing over one incident's rows."""
    if kind not in EVENT_KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    if severity not in SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    row: Event = {
        "ts": np.datetime64(int(ts), "us"),
        "ts_end": np.datetime64(int(ts_end), "us"),
        "kind": kind,
        "severity": severity,
        "link": str(link),
        "direction": str(direction),
        "device": str(device),
        "job": str(job),
        "summary": str(summary),
        "convergence_ms": convergence_ms,
        "local_convergence_ms": local_convergence_ms,
        "remote_convergence_ms": remote_convergence_ms,
        "flows_affected": int(flows_affected),
        "flows_recovered": int(flows_recovered),
        "packets_lost": int(packets_lost),
        "value": None if value is None else float(value),
        "details": json.dumps(details or {}, sort_keys=True, default=_json_default),
        "event_id": incident_id(kind, *(identity or (link, direction, device, job, ts))),
        "state": state,
        "updated": np.datetime64(int(ts_end if updated is None else updated), "us"),
    }
    return row


def revised(event: Event, *, updated: int, ts: int | None = None, ts_end: int | None = None,
            details: dict[str, Any] | None = None, **columns: Any) -> Event:
    """The incident's next row: the same `event_id` with `columns` changed, written at data time `updated`
    but always after the row it revises, so the `incidents` view reads this one."""
    row: Event = {**event, **columns}
    if ts is not None:
        row["ts"] = np.datetime64(int(ts), "us")
    if ts_end is not None:
        row["ts_end"] = np.datetime64(int(ts_end), "us")
    if details is not None:
        row["details"] = json.dumps(details, sort_keys=True, default=_json_default)
    row["updated"] = np.datetime64(max(event_us(event, "updated") + 1, int(updated)), "us")
    return row


def incident_id(kind: str, *identity: Any) -> str:
    """A stable id for one incident: the same detector seeing the same incident gives the same id."""
    text = "\x1f".join(str(part) for part in (kind, *identity))
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def latest_rows(events: list[Event]) -> list[Event]:
    """Each incident's latest row, in the order the incidents first appeared: what readers of the store see
    through the `incidents` view."""
    latest: dict[str, Event] = {}
    for event in events:
        latest[event["event_id"]] = event
    return list(latest.values())


def event_us(event: Event, column: str) -> int:
    """An event row's time column as int64 microseconds."""
    return int(np.datetime64(event[column], "us").astype(np.int64))


def _json_default(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
