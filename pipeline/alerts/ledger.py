"""Which step of each incident's alert stream a webhook has had, so every step goes out once.

The events topic can hold an incident's row more than once (the detectors re-emit what they had not
checkpointed when they were killed) and out of order (an incident whose link changes is keyed to another
partition). The ledger keeps, per incident, the newest row taken (`updated`, closed or not) and the labels
its first alert gave it: a row no newer than that, or any row after the close, is not an alert. An incident
first seen closed (it opened and closed within one detector batch) gives an open and a close, so every
incident pages and resolves.

Two views: `taken` (queued, in memory) decides at intake; `done` (delivered or dead-lettered) is what
`save` writes, so after a restart the rows consumed again and already done are recognised.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.alerts.body import Alert, EventRow, identity_labels
from pipeline.errors import InputError

FORMAT_VERSION = 1
MAX_CLOSED = 10_000  # closed incidents remembered per webhook: far more than a restart can replay


@dataclass
class Step:
    """The newest alert of one incident a webhook took: its row's data time, its step (open, update,
    close), its labels, and in `done` while the incident is open, its row (what is sent again on a resend)."""

    updated: int
    state: str
    labels: dict[str, str]
    event: dict[str, Any] | None = None

    @property
    def closed(self) -> bool:
        return self.state == "close"

    def dump(self) -> list[Any]:
        return [self.updated, self.state, self.labels, self.event]

    def alert(self) -> Alert | None:
        """The alert to send again while the incident is open."""
        return None if self.closed or self.event is None else Alert(self.state, self.event, self.labels)


class Ledger:
    """One webhook's incidents: event_id → Step, in `taken` (intake) and `done` (saved)."""

    def __init__(self, done: dict[str, Step] | None = None) -> None:
        self.done: dict[str, Step] = dict(done or {})
        self.taken: dict[str, Step] = dict(self.done)

    def alerts(self, event: EventRow) -> list[Alert]:
        """The alerts one event row makes (none for a row already taken, older, or after the close)."""
        event_id = str(event["event_id"])
        closed = event["state"] == "closed"
        seen = self.taken.get(event_id)
        if seen is not None and (seen.closed or (event["updated"], closed) <= (seen.updated, seen.closed)):
            return []
        labels = seen.labels if seen is not None else identity_labels(event)
        state = "close" if closed else "update" if seen is not None else "open"
        _remember(self.taken, event_id, Step(event["updated"], state, labels))
        if seen is None and closed:
            return [Alert("open", event, labels), Alert("close", event, labels)]
        return [Alert(state, event, labels)]

    def finished(self, alert: Alert) -> None:
        """The alert was delivered or dead-lettered: it is not sent again."""
        event = alert.event
        kept = None if alert.state == "close" else dict(event)
        _remember(self.done, str(event["event_id"]), Step(event["updated"], alert.state, dict(alert.labels), kept))

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
            if document.get("version") != FORMAT_VERSION:
                raise ValueError(f"format {document.get('version')}, expected {FORMAT_VERSION}")
            saved = document["webhooks"]
        except (ValueError, KeyError, AttributeError, OSError) as exc:
            raise InputError(str(path), f"alert ledger unreadable ({exc}); remove it to start afresh") from exc
    return {name: Ledger({event_id: Step(int(step[0]), str(step[1]), dict(step[2]), step[3])
                          for event_id, step in saved.get(name, {}).items()}) for name in webhooks}


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
