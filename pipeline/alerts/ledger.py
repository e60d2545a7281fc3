"""Which step of each incident's alert stream a webhook has had, so every step goes out once.

The events topic can hold an incident's row more than once (the detectors re-emit what they had not
checkpointed when they were killed) and out of order (an incident whose link changes is keyed to another
partition). The ledger keeps, per incident, the newest row taken (`updated`, closed or not), the labels
its first alert gave it and the COMPARED columns of the row last alerted: a row no newer than that is not
an alert. An incident first seen closed (it opened and closed within one detector batch) gives an open and
a close, so every incident pages and resolves.

After the close, the detectors may still rewrite an incident (a link_down or link_up retimed by an earlier
report, a flap retimed with its outage): a newer closed row that changes a MATERIAL column (times,
convergence) is one `update`, so the page carries the incident's latest times; one that changes none of them,
or an open row, is not an alert. A ledger saved by format 1 kept no columns for a closed incident: a newer
row of one is taken as material, with nothing to list as changed.

Two views: `taken` (queued, in memory) decides at intake; `done` (delivered or dead-lettered) is what
`save` writes, so after a restart the rows consumed again and already done are recognised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.alerts.body import MATERIAL, Alert, EventRow, changes, compared_values, identity_labels
from pipeline.errors import InputError

FORMAT_VERSION = 2  # 2 adds each step's compared columns and changes; 1 is read too
READ_VERSIONS = (1, FORMAT_VERSION)
MAX_CLOSED = 10_000  # closed incidents remembered per webhook: far more than a restart can replay


@dataclass
class Step:
    """The newest alert of one incident a webhook took: its row's data time, its step (open, update, close;
    `close` stays once the incident is closed, through the updates after it), its labels, the COMPARED
    columns of its row (None: unknown, from a format-1 ledger), and in `done` while the incident is open, its
    row and changes (what is sent again on a resend)."""

    updated: int
    state: str
    labels: dict[str, str]
    event: dict[str, Any] | None = None
    values: dict[str, Any] | None = None
    changed: dict[str, list[Any]] = field(default_factory=dict)

    @property
    def closed(self) -> bool:
        return self.state == "close"

    def dump(self) -> list[Any]:
        return [self.updated, self.state, self.labels, self.event, self.values, self.changed]

    @classmethod
    def load(cls, saved: list[Any]) -> Step:
        """A step as `dump` wrote it, or as format 1 did (the first four fields)."""
        updated, state, labels, event, *rest = saved
        values = rest[0] if rest else compared_values(event) if event is not None else None
        return cls(int(updated), str(state), dict(labels), event, values, dict(rest[1]) if rest else {})

    def alert(self) -> Alert | None:
        """The alert to send again while the incident is open."""
        if self.closed or self.event is None:
            return None
        return Alert(self.state, self.event, self.labels, self.changed)

    def material(self, event: EventRow) -> bool:
        """Whether `event` changes a MATERIAL column of the row this step alerted (unknown: it does)."""
        return self.values is None or any(self.values.get(name) != event[name] for name in MATERIAL)


class Ledger:
    """One webhook's incidents: event_id → Step, in `taken` (intake) and `done` (saved)."""

    def __init__(self, done: dict[str, Step] | None = None) -> None:
        self.done: dict[str, Step] = dict(done or {})
        self.taken: dict[str, Step] = dict(self.done)

    def alerts(self, event: EventRow) -> list[Alert]:
        """The alerts one event row makes: none for a row already taken or older, nor after the close unless
        it is a closed row with a material change."""
        event_id = str(event["event_id"])
        closed = event["state"] == "closed"
        seen = self.taken.get(event_id)
        values = compared_values(event)
        if seen is None:
            labels = identity_labels(event)
            _remember(self.taken, event_id, Step(event["updated"], "close" if closed else "open", labels,
                                                 values=values))
            if closed:
                return [Alert("open", event, labels), Alert("close", event, labels)]
            return [Alert("open", event, labels)]
        if (event["updated"], closed) <= (seen.updated, seen.closed):
            return []
        if seen.closed and not (closed and seen.material(event)):
            return []
        state = "close" if closed and not seen.closed else "update"
        changed = changes(seen.values, event) if state == "update" and seen.values is not None else {}
        _remember(self.taken, event_id, Step(event["updated"], "close" if closed else state, seen.labels,
                                             values=values))
        return [Alert(state, event, seen.labels, changed)]

    def finished(self, alert: Alert) -> None:
        """The alert was delivered or dead-lettered: it is not sent again."""
        event = alert.event
        step = Step(event["updated"], "close" if alert.closes else alert.state, dict(alert.labels),
                    values=compared_values(event))
        if not alert.closes:
            step.event, step.changed = dict(event), dict(alert.changed)
        _remember(self.done, str(event["event_id"]), step)

    def firing(self) -> list[Alert]:
        """The latest alert done of each open incident."""
        return [alert for step in self.done.values() if (alert := step.alert()) is not None]


def _remember(steps: dict[str, Step], event_id: str, step: Step) -> None:
    """Record the step (newest last) and forget the oldest closed incidents beyond MAX_CLOSED."""
    steps.pop(event_id, None)
    steps[event_id] = step
    closed = [key for key, value in steps.items() if value.closed]
    for key in closed[: max(0, len(closed) - MAX_CLOSED)]:
        del steps[key]


def load_ledgers(path: Path, webhooks: Iterable[str]) -> dict[str, Ledger]:
    """Each webhook's ledger as the last run saved it (empty for a webhook new to the file)."""
    saved: dict[str, Any] = {}
    if path.is_file():
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("version") not in READ_VERSIONS:
                raise ValueError(f"format {document.get('version')}, expected one of {READ_VERSIONS}")
            saved = document["webhooks"]
            return {name: Ledger({event_id: Step.load(step) for event_id, step in saved.get(name, {}).items()})
                    for name in webhooks}
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as exc:
            raise InputError(str(path), f"alert ledger unreadable ({exc}); remove it to start afresh") from exc
    return {name: Ledger() for name in webhooks}


def save_ledgers(path: Path, ledgers: dict[str, Ledger]) -> None:
    """Write every webhook's `done` view atomically (a temporary file renamed over the last one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": FORMAT_VERSION,
                "webhooks": {name: {event_id: step.dump() for event_id, step in ledger.done.items()}
                             for name, ledger in ledgers.items()}}
    temporary = path.with_suffix(path.suffix + ".tmp")
    with temporary.open("w", encoding="utf-8") as out:
        json.dump(document, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)
