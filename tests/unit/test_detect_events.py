"""Event rows: exactly the `events` columns, plain Python values, JSON details, known kinds only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.detect.events import make_event
from pipeline.records import column_names


def test_event_row_has_exactly_the_events_columns_with_plain_values() -> None:
    event = make_event("congestion", ts=1_000_001, ts_end=1_000_002, severity="warning", summary="s",
                       link=np.str_("leaf1-spine1"), value=np.float64(0.25), details={"ce": np.int64(3)})
    assert list(event) == column_names("events")
    assert type(event["link"]) is str and event["direction"] == "unknown"
    assert event["ts"] == np.datetime64(1_000_001, "us")
    assert type(event["value"]) is float and event["convergence_ms"] is None
    assert json.loads(event["details"]) == {"ce": 3}


@pytest.mark.parametrize(("kind", "severity"), [("link_wobble", "info"), ("congestion", "loud")])
def test_unknown_kind_or_severity_is_refused(kind: str, severity: str) -> None:
    with pytest.raises(ValueError, match="unknown"):
        make_event(kind, ts=0, ts_end=0, severity=severity, summary="")
