"""What a webhook receives for one alert: Alertmanager's API v2 body or the event row as JSON.

An alert is one step of an incident's alert stream: `open` (the incident's first row), `update` (a later
row while it is open, or a later closed row that changes its times or convergence after the close: a
link_down retimed by an earlier report) or `close` (its closed row). An update says what changed since the
incident's previous alert (`changed`: column → was, now). Both bodies carry a dedupe key,
`event_id:state:updated` (updated in µs), the same for the same step every time it is sent, so a receiver
can recognise a redelivery after a restart.

Alertmanager (`POST /api/v2/alerts`, the `postableAlerts` schema of its OpenAPI spec): a JSON array of
alerts with string-valued `labels` and `annotations` and RFC 3339 `startsAt`/`endsAt`. Alertmanager
identifies an alert by its labels, so they are the incident's identity as its first alert gave them
(`alertname` = kind, `event_id`, `severity`, and `link`, `direction`, `device`, `job` when set) and stay the
same for the whole stream; everything that changes goes in the annotations. `endsAt` is set on the close
and on an update after it, which resolve the alert (an update after the close corrects it, never re-fires it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.detect.events import EVENT_COLUMNS, Batch, iso, times_us

ALERT_STATES = ("open", "update", "close")
TIME_COLUMNS = ("ts", "ts_end", "updated")
_IDENTITY = ("link", "direction", "device", "job")
_CONVERGENCE = ("convergence_ms", "local_convergence_ms", "remote_convergence_ms")
_MEASURES = (*_CONVERGENCE, "flows_affected", "flows_recovered", "packets_lost", "value")
COMPARED = ("ts", "ts_end", *_MEASURES)  # what an update's `changed` lists
MATERIAL = ("ts", "ts_end", *_CONVERGENCE)  # what a row written after the close must change to be sent

EventRow = Mapping[str, Any]  # an events row: times as int µs since the epoch, `details` parsed, nulls None


@dataclass(frozen=True)
class Alert:
    """One step of an incident's alert stream; `labels` are the incident's identity as first sent; `changed`
    (updates only) the COMPARED columns that differ from the incident's previous alert, as [was, now]."""

    state: str
    event: EventRow
    labels: Mapping[str, str]
    changed: Mapping[str, list[Any]] = field(default_factory=dict)

    @property
    def dedupe_key(self) -> str:
        return f"{self.event['event_id']}:{self.state}:{self.event['updated']}"

    @property
    def closes(self) -> bool:
        """The incident is closed once this alert is out: its close, or an update written after the close."""
        return self.state == "close" or (self.state == "update" and self.event["state"] == "closed")


def compared_values(event: EventRow) -> dict[str, Any]:
    """The COMPARED columns of a row, as the ledger keeps them to tell what a later row changed."""
    return {name: event[name] for name in COMPARED}


def changes(was: Mapping[str, Any], event: EventRow) -> dict[str, list[Any]]:
    """The COMPARED columns `event` holds differently from `was`, as [was, now]."""
    return {name: [was.get(name), event[name]] for name in COMPARED if was.get(name) != event[name]}


def event_rows(batch: Batch) -> list[dict[str, Any]]:
    """The rows of an `events` batch (codec.to_columns) as plain Python: times in µs, NaN as None,
    `details` parsed from its JSON text (kept as text if it is not JSON)."""
    size = len(batch["event_id"])
    columns: dict[str, list[Any]] = {}
    for name in EVENT_COLUMNS:
        if name in TIME_COLUMNS:
            columns[name] = [int(value) for value in times_us(batch[name])]
        else:
            columns[name] = [_plain(value) for value in batch[name]]
    rows = [{name: columns[name][index] for name in EVENT_COLUMNS} for index in range(size)]
    for row in rows:
        row["details"] = _details(row["details"])
    return rows


def identity_labels(event: EventRow) -> dict[str, str]:
    """The labels that name an incident in Alertmanager (empty values left out, as Alertmanager does)."""
    labels = {"alertname": str(event["kind"]), "event_id": str(event["event_id"]),
              "severity": str(event["severity"])}
    for name in _IDENTITY:
        value = str(event[name])
        if value and value != "unknown":
            labels[name] = value
    return labels


def alertmanager_body(alert: Alert) -> list[dict[str, Any]]:
    """The `postableAlerts` array of one alert."""
    event = alert.event
    annotations = {"summary": str(event["summary"]), "state": alert.state, "dedupe_key": alert.dedupe_key,
                   "updated": iso(event["updated"]), "details": json.dumps(event["details"], sort_keys=True)}
    for name in _MEASURES:
        if event[name] is not None:
            annotations[name] = f"{event[name]:g}" if isinstance(event[name], float) else str(event[name])
    if alert.state == "update":
        annotations["changed"] = json.dumps(_shown_changes(alert.changed), sort_keys=True)
    posted: dict[str, Any] = {"labels": dict(alert.labels), "annotations": annotations,
                              "startsAt": iso(event["ts"])}
    if alert.closes:
        posted["endsAt"] = iso(event["ts_end"])
    return [posted]


def json_body(alert: Alert) -> dict[str, Any]:
    """The event row as JSON (times ISO 8601 with Z, `details` structured) with the alert's step and key."""
    body: dict[str, Any] = {"alert": alert.state, "dedupe_key": alert.dedupe_key}
    for name in EVENT_COLUMNS:
        value = alert.event[name]
        body[name] = iso(value) if name in TIME_COLUMNS else value
    if alert.state == "update":
        body["changed"] = _shown_changes(alert.changed)
    return body


def _shown_changes(changed: Mapping[str, list[Any]]) -> dict[str, dict[str, Any]]:
    """`changed` for a receiver: {column: {"was": ..., "now": ...}}, times ISO 8601 with Z."""
    return {name: {"was": _shown(name, was), "now": _shown(name, now)} for name, (was, now) in changed.items()}


def _shown(name: str, value: Any) -> Any:
    return iso(value) if name in TIME_COLUMNS and value is not None else value


def render(alert: Alert, format: str) -> bytes:
    """The request body of `alert` in a webhook's `format` (pipeline.alerts.config.FORMATS)."""
    body = alertmanager_body(alert) if format == "alertmanager" else json_body(alert)
    return json.dumps(body, sort_keys=True).encode()


def _plain(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return None if math.isnan(value) else float(value)
    return value


def _details(text: Any) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return text
