"""One incident as navigation: the URL that selects it everywhere (its window, its link, its flows, and for a
failure its flows-leaving chart), a one-line summary of its details for a table cell, and its details as
structured sub-tables for the incident panel.

Pure functions of rows and the view state; the callbacks run the queries.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
from dash import html

from dashboards.state import MAX_SPAN, ViewState, event_token, state_link
from pipeline.units import counted, percent, shown_time, si_bytes

MIN_CONTEXT = timedelta(seconds=2)  # shown on each side of an incident, at least
CONTEXT_SHARE = 0.1  # ... or this share of its duration, whichever is longer
CELL = {"border": "1px solid #ddd", "padding": "2px 6px", "fontFamily": "monospace", "fontSize": "12px",
        "textAlign": "left", "verticalAlign": "top"}
HEADER_CELL = {**CELL, "background": "#f3f5f7", "fontWeight": "bold"}
LEADING_COLUMNS = ("flow", "link", "direction", "new_link", "job")  # what a row is about, before its numbers


def incident_state(state: ViewState, event: Mapping[str, Any]) -> ViewState:
    """The view of one incident (a row of `incidents`): history around its span, its link, its details open;
    a failure also selects its flows-leaving chart. The other filters stay as they were."""
    ts, ts_end = _utc(event["ts"]), _utc(event.get("ts_end") or event["ts"])
    context = max(MIN_CONTEXT, (ts_end - ts) * CONTEXT_SHARE)
    start, end = ts - context, max(ts_end, ts) + context
    if end - start > MAX_SPAN:
        start = end - MAX_SPAN
    link = str(event.get("link") or "")
    failure = event.get("kind") == "fast_recovery" and link
    return dataclasses.replace(state, live=False, start=start, end=end, link=link, packets="",
                               incident=str(event["event_id"]), event=event_token(link, ts) if failure else "")


def incident_link(text: str, state: ViewState, event: Mapping[str, Any]) -> str:
    """A markdown link (for a table cell) to the page showing `event` as `incident_state` does."""
    return state_link(text, incident_state(state, event))


def details_of(text: Any) -> dict[str, Any]:
    """An event's JSON details as a dict; anything else (broken JSON, a list) as {} — the summary says the rest."""
    try:
        value = json.loads(text) if isinstance(text, str) and text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def details_summary(kind: str, details: Mapping[str, Any]) -> str:
    """What an incident's details hold, in a few words for its table cell (the panel shows them whole)."""
    parts: list[str] = []
    if kind in ("congestion", "pfc_storm"):
        if "bursts" in details:
            parts.append(counted(int(details["bursts"]), "burst"))
        if details.get("ce"):
            parts.append(f"{details['ce']} CE")
        if details.get("pfc_pause"):
            parts.append(counted(int(details["pfc_pause"]), "PFC pause"))
        if details.get("top_flows"):
            parts.append(f"top {counted(len(details['top_flows']), 'flow')}")
    elif kind == "fast_recovery":
        parts.append(f"{counted(len(details.get('flows') or []), 'flow')} traced")
        if details.get("resumed_after_idle"):
            parts.append(f"{len(details['resumed_after_idle'])} resumed after idle")
    return " · ".join(parts) or "details"


def detail_blocks(details: Mapping[str, Any]) -> list[html.Div]:
    """The details as sub-tables: one of the plain values (key, value), then one per list or mapping
    (top flows, per-flow convergence, marks per burst, shares), each headed by its key."""
    plain = {key: value for key, value in details.items() if not isinstance(value, list | dict)}
    blocks = [_block("", _table(["", "value"], [[key, _shown(key, value)] for key, value in plain.items()]))] \
        if plain else []
    for key, value in details.items():
        if isinstance(value, dict):
            blocks.append(_block(key, _table(["", "value"], [[k, _shown(key, v)] for k, v in value.items()])))
        elif isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            found = list(dict.fromkeys(column for item in value for column in item))
            columns = [c for c in LEADING_COLUMNS if c in found] + [c for c in found if c not in LEADING_COLUMNS]
            rows = [[_shown(column, item.get(column)) for column in columns] for item in value]
            blocks.append(_block(key, _table(columns, rows)))
        elif isinstance(value, list) and value:
            blocks.append(_block(key, _table([str(i + 1) for i in range(len(value))],
                                             [[_shown(key, item) for item in value]])))
    return blocks


def _block(title: str, table: html.Table) -> html.Div:
    return html.Div([html.H5(title.replace("_", " "), style={"margin": "6px 0 2px"}) if title else None, table],
                    className="incident-block", style={"display": "inline-block", "verticalAlign": "top",
                                                       "marginRight": "16px"})


def _table(columns: list[str], rows: list[list[str]]) -> html.Table:
    return html.Table([
        html.Thead(html.Tr([html.Th(column.replace("_", " "), style=HEADER_CELL) for column in columns])),
        html.Tbody([html.Tr([html.Td(cell, style=CELL) for cell in row]) for row in rows]),
    ], style={"borderCollapse": "collapse"})


def _shown(key: str, value: Any) -> str:
    """A detail value as people read it: ms to the µs, bytes with SI prefixes, shares as percentages."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value) if not isinstance(value, list | dict) else json.dumps(value)
    if key.endswith("_ms"):
        return f"{value:.3f} ms"
    if key == "bytes" or key.endswith("_bytes"):
        return si_bytes(value)
    if "share" in key:
        return percent(float(value) * 100)
    if key.endswith("_us") and value > 1e12:
        return shown_time(datetime.fromtimestamp(value / 1e6, UTC))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _utc(value: Any) -> datetime:
    moment = pd.Timestamp(value).to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
