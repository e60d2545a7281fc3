"""An incident as navigation: the view that selects it, a table cell's summary of its details, and the details
as sub-tables."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dashboards.incident import detail_blocks, details_of, details_summary, incident_link, incident_state
from dashboards.state import ViewState, from_query_string
from pipeline.topology import load_topology

LINKS = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml").link_ids()
T0 = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
CONGESTION = {"event_id": "0123456789abcdef", "kind": "congestion", "link": "leaf4-spine2",
              "ts": T0.replace(tzinfo=None), "ts_end": (T0 + timedelta(seconds=40)).replace(tzinfo=None)}
DETAILS = {"ce": 590, "ect": 9000, "bursts": 3, "marks_per_burst": [200, 190, 200], "jobs": ["llama-70b"],
           "top_flows": [{"flow": "10.0.1.1:4791 → 10.0.3.1:4791 qp 17", "job": "llama-70b", "bytes": 30920640,
                          "ecn_ce": 300}],
           "shares": {"spine1": 0.75, "spine2": 0.25}, "median_convergence_ms": 1.2345}


def _texts(component: object) -> list[str]:
    """Every string inside a Dash component tree, in order."""
    if isinstance(component, str):
        return [component]
    children = getattr(component, "children", None)
    if children is None:
        return []
    return [text for child in (children if isinstance(children, list) else [children]) for text in _texts(child)]


def test_an_incident_selects_its_window_link_and_details() -> None:
    state = incident_state(ViewState(app="rocev2", packets="x"), CONGESTION)
    assert (state.live, state.link, state.incident, state.app, state.packets, state.event) == (
        False, "leaf4-spine2", "0123456789abcdef", "rocev2", "", "")
    assert (state.start, state.end) == (T0 - timedelta(seconds=4), T0 + timedelta(seconds=44))
    failure = incident_state(ViewState(), {**CONGESTION, "kind": "fast_recovery", "ts_end": CONGESTION["ts"]})
    assert (failure.start, failure.end) == (T0 - timedelta(seconds=2), T0 + timedelta(seconds=2))
    assert failure.event.startswith("leaf4-spine2@2026-01-15T12:00:00")
    text, url = incident_link("3 bursts [x]", ViewState(), CONGESTION)[1:-1].split("](")
    assert text == "3 bursts (x)" and from_query_string(url, LINKS) == incident_state(ViewState(), CONGESTION)


def test_details_summarise_in_a_cell_and_open_as_sub_tables() -> None:
    assert details_summary("congestion", DETAILS) == "3 bursts · 590 CE · top 1 flow"
    assert details_summary("fast_recovery", {"flows": [{}, {}], "resumed_after_idle": [{}]}) == (
        "2 flows traced · 1 resumed after idle")
    assert details_of("not json {") == {} and details_of("[1]") == {} and details_of(json.dumps(DETAILS)) == DETAILS
    blocks = detail_blocks(DETAILS)
    titles = [_texts(block)[0] for block in blocks[1:]]
    assert titles == ["marks per burst", "jobs", "top flows", "shares"]
    plain = _texts(blocks[0])
    assert plain[:2] == ["", "value"] and plain[2:4] == ["ce", "590"] and "1.234 ms" in plain
    flows = _texts(blocks[3])
    assert flows[1:5] == ["flow", "job", "bytes", "ecn ce"] and "30.9 MB" in flows
    assert _texts(blocks[1])[-3:] == ["200", "190", "200"] and "75%" in _texts(blocks[4])
