"""The page: a control bar whose values live in the URL, then one section per question an engineer asks.

Built from the topology only (no data): every figure and table is filled by callbacks.
"""

from __future__ import annotations

import warnings
from typing import Any

from dash import dcc, html
from dash.dash_table.DataTable import DataTable
from dash.dash_table.Format import Format, Scheme, Symbol
from dash.development.base_component import Component

from dashboards.health import BIG_FABRIC_LINKS
from dashboards.state import HEATMAP_METRICS, RANGES
from pipeline.labels import APPS, TRAFFIC_CLASSES
from pipeline.topology import Topology

LIVE_INTERVAL_MS = 1000
# Not "responsive": that would drop each figure's own height, and charts like the per-flow recovery
# view grow with what they show.
GRAPH_CONFIG: dcc.Graph.Config = {"displaylogo": False}
SECTION = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "8px 12px", "margin": "10px 0",
           "background": "white"}
ROW = {"display": "flex", "gap": "12px", "flexWrap": "wrap", "alignItems": "center"}
HALF = {"flex": "1 1 560px", "minWidth": "420px"}
TABLE_STYLE: dict[str, Any] = {
    "style_table": {"overflowX": "auto", "maxHeight": "360px", "overflowY": "auto"},
    "style_cell": {"fontFamily": "monospace", "fontSize": "12px", "padding": "2px 6px", "textAlign": "left",
                   "maxWidth": "420px", "whiteSpace": "normal"},
    "style_header": {"fontWeight": "bold", "background": "#f3f5f7"},
    "page_size": 25,
    "export_format": "csv",  # an "Export" button on every table: all its rows (every page), as shown
    "export_headers": "display",
}

RECOVERY_COLUMNS = ("ts", "link", "convergence_ms", "local_convergence_ms", "remote_convergence_ms",
                    "flows_affected", "flows_recovered", "packets_lost", "summary", "details")
CONGESTION_COLUMNS = ("ts", "ts_end", "kind", "severity", "link", "direction", "job", "peak_ce", "summary",
                      "details")
FLOW_COLUMNS = ("first", "last", "link", "direction", "src", "src_port", "dst", "dst_port", "proto", "roce_qp",
                "app", "traffic_class", "job", "packets", "bytes", "ecn_ce", "cnp", "psn_gaps", "events")
PACKET_COLUMNS = ("time", "delta_ms", "link", "direction", "src", "src_port", "dst", "dst_port", "opcode",
                  "dest_qp", "psn", "aeth", "ecn", "cnp", "length", "protocol", "info", "mark")
TIME_COLUMNS = ("ts", "ts_end", "first", "last", "time")  # one line each: a time wrapped over two is hard to read
WORST_COLUMNS = ("link", "status", "utilisation", "ce_ratio", "cnp", "pfc_pause", "errors", "failures",
                 "congestion_events")
LINK_COLUMNS = {"details", "events"}  # markdown: each opens an incident (its window, link and details)
PACKETS_LINK = "open_packets"  # the markdown column of the incident and flow tables that opens the packets view
PACKETS_LINK_HEADER = "view"  # not "packets": the flow table has a packets count
HIDDEN = {"display": "none"}
BYTES_FORMAT = Format(precision=3, scheme=Scheme.decimal_si_prefix).symbol(Symbol.yes).symbol_suffix("B")
# Rows of the packets table by what they show: a silence, a NAK, a CE mark, a PSN gap (first match wins).
PACKET_ROW_STYLES: list[dict[str, Any]] = [
    {"if": {"filter_query": '{mark} = "gap"'}, "backgroundColor": "#fdebd0", "fontWeight": "bold"},
    {"if": {"filter_query": '{mark} contains "NAK"'}, "backgroundColor": "#f5b7b1"},
    {"if": {"filter_query": '{mark} contains "CE"'}, "backgroundColor": "#fcf3cf"},
    {"if": {"filter_query": '{mark} contains "PSN gap"'}, "backgroundColor": "#d7bde2"},
]


def _column_spec(column: str, markdown: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Byte counts stay numbers (the table sorts them) shown with an SI prefix: 30.9MB, not 30920640."""
    if column == "bytes":
        return {"name": column, "id": column, "type": "numeric", "format": BYTES_FORMAT}
    if column in LINK_COLUMNS | markdown:
        return {"name": column, "id": column, "presentation": "markdown"}
    return {"name": column, "id": column}


def _table(table_id: str, columns: tuple[str, ...], *, links: bool = False, markdown: frozenset[str] = frozenset(),
           **options: Any) -> DataTable:
    """A table of `columns` (those in LINK_COLUMNS hold markdown links to an incident, those in `markdown` other
    links); with `links`, a last column of markdown links opening the packets view."""
    spec: list[Any] = [_column_spec(c, markdown) for c in columns]
    options.setdefault("style_cell_conditional", [{"if": {"column_id": column}, "whiteSpace": "nowrap"}
                                                  for column in columns if column in TIME_COLUMNS])
    if links:
        spec.append({"name": PACKETS_LINK_HEADER, "id": PACKETS_LINK, "presentation": "markdown"})
    if links or (LINK_COLUMNS | markdown) & set(columns):
        options.setdefault("markdown_options", {"link_target": "_self"})
    # DataTable is deprecated in Dash 4 in favour of dash-ag-grid, which is not a dependency of fabricscope.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return DataTable(id=table_id, data=[], columns=spec, **{**TABLE_STYLE, **options})


def _empty_note(table_id: str) -> html.Div:
    """Below a table, what an empty one means ("no congestion events in this window"), so it never shows a
    bare header."""
    return html.Div(id=f"{table_id}-empty", className="empty-note", style={"color": "#555", "padding": "6px 2px"})


def _graph(graph_id: str) -> dcc.Graph:
    return dcc.Graph(id=graph_id, config=GRAPH_CONFIG)


def _section(title: str, section_id: str, *children: Component, hidden: bool = False) -> html.Section:
    return html.Section(
        [html.H3(title, style={"margin": "4px 0"}), html.Div(id=f"{section_id}-status", className="status",
                                                             style={"color": "#b03a2e"}), *children],
        id=section_id, style={**SECTION, **HIDDEN} if hidden else SECTION,
    )


def controls(topology: Topology) -> html.Div:
    """Live toggle, time range (preset or explicit UTC from/to), zoom to data, link filter, the window shown and
    search (its results below the row)."""
    return html.Div([
        dcc.RadioItems(id="live", options=[{"label": " live", "value": "live"},
                                           {"label": " history", "value": "history"}],
                       value="live", inline=True, style={"display": "flex", "gap": "8px"}),
        html.Label("last"),
        dcc.Dropdown(id="range", options=list(RANGES), value="5m", clearable=False, style={"width": "90px"}),
        html.Label("from"),
        dcc.Input(id="from", type="text", placeholder="2026-01-01T00:00:00Z", debounce=True, style={"width": "210px"}),
        html.Label("to"),
        dcc.Input(id="to", type="text", placeholder="UTC, ISO-8601", debounce=True, style={"width": "210px"}),
        html.Label("link"),
        dcc.Dropdown(id="link", options=topology.link_ids(), value=None, placeholder="all links",
                     style={"width": "190px"}),
        html.Button("zoom to data", id="zoom-data", n_clicks=0,
                    title="fit the window to the records in it (or to the newest data when it holds none)"),
        html.Span(id="window-text", style={"color": "#555", "fontSize": "13px"}),
        dcc.Input(id="search", type="search", placeholder="search link, switch, IP or job", debounce=True,
                  style={"width": "280px"}),
        dcc.Markdown(id="search-results", link_target="_self", style={"flexBasis": "100%", "fontSize": "13px"}),
    ], style={**ROW, **SECTION, "position": "sticky", "top": "0", "zIndex": 10})


def incident_section() -> html.Section:
    """The incident the URL names: what it was, its details as sub-tables (hidden until a details or events
    link opens it)."""
    return _section(
        "Incident", "incident",
        html.Div([html.Span(id="incident-summary", style={"fontSize": "13px", "fontWeight": "bold"}),
                  html.A("packets", id="incident-packets", href=""),
                  html.A("close", id="incident-close", href="")], style=ROW),
        html.Div(id="incident-details"),
        hidden=True,
    )


def packets_section() -> html.Section:
    """The packets of the incident or flow the URL names (hidden until a `packets` link opens it)."""
    return _section(
        "Packets", "packets",
        html.Div([
            html.Span(id="packets-summary", style={"fontSize": "13px"}),
            html.A("download pcap", id="packets-download", href="", download=""),
            html.A("close", id="packets-close", href=""),
        ], style=ROW),
        _table("packets-table", PACKET_COLUMNS, style_data_conditional=PACKET_ROW_STYLES, page_action="none",
               style_cell_conditional=[{"if": {"column_id": column}, "whiteSpace": "nowrap"}
                                       for column in ("time", "link")],
               style_table={**TABLE_STYLE["style_table"], "maxHeight": "420px"}),
        hidden=True,
    )


def layout(topology: Topology, live: bool) -> html.Div:
    """The whole page; `live` sets whether a URL without `live=` follows the newest data."""
    return html.Div([
        dcc.Location(id="url", refresh=False),
        dcc.Store(id="state"),
        dcc.Store(id="window"),
        dcc.Interval(id="tick", interval=LIVE_INTERVAL_MS, disabled=not live),
        html.H2(f"fabricscope · {topology.fabric}", style={"margin": "6px 0"}),
        controls(topology),
        incident_section(),
        packets_section(),
        html.Div([
            html.Div(_section(
                "Fabric map", "fabric", _graph("fabric-map"),
                html.Details([html.Summary("links, worst first"),
                              _table("worst-links", WORST_COLUMNS, markdown=frozenset({"link"}), page_size=12,
                                     style_cell_conditional=[{"if": {"column_id": "link"}, "whiteSpace": "nowrap"}])],
                             open=len(topology.links) > BIG_FABRIC_LINKS),
            ), style=HALF),
            html.Div(_section(
                "ECMP balance", "ecmp",
                dcc.RadioItems(id="metric", options=[{"label": f" {label}", "value": key}
                                                     for key, label in HEATMAP_METRICS.items()],
                               value="util", style={"fontSize": "13px"}),
                _graph("ecmp-heatmap"),
            ), style=HALF),
        ], style=ROW),
        _section(
            "All-reduce congestion", "congestion",
            html.Div([html.Div(_graph("iterations"), style=HALF), html.Div(_graph("congestion-series"), style=HALF)],
                     style=ROW),
            html.H4("Congestion events"),
            _table("congestion-table", CONGESTION_COLUMNS, links=True),
            _empty_note("congestion-table"),
        ),
        _section(
            "Fast recovery", "recovery",
            _graph("recovery-timeline"),
            _table("recovery-table", RECOVERY_COLUMNS, links=True, row_selectable="single", selected_rows=[]),
            _empty_note("recovery-table"),
            _graph("recovery-flows"),
        ),
        _section(
            "Flow explorer", "flows",
            html.Div([
                dcc.Dropdown(id="app", options=list(APPS), placeholder="app", style={"width": "160px"}),
                dcc.Dropdown(id="traffic-class", options=list(TRAFFIC_CLASSES), placeholder="traffic class",
                             style={"width": "160px"}),
                dcc.Input(id="job", type="text", placeholder="job", debounce=True, style={"width": "160px"}),
                dcc.Input(id="host", type="text", placeholder="host IP (src or dst)", debounce=True,
                          style={"width": "220px"}),
                dcc.Input(id="port", type="text", placeholder="port", debounce=True, style={"width": "80px"}),
            ], style=ROW),
            html.Div([html.Div(_graph("top-talkers"), style=HALF), html.Div(_graph("traffic-mix"), style=HALF)],
                     style=ROW),
            html.H4("Heaviest flows of the window's last minute"),
            _table("flow-table", FLOW_COLUMNS, links=True, sort_action="native", filter_action="native"),
            _empty_note("flow-table"),
            html.Details([html.Summary("query that filled this table"),
                          html.Pre(id="flow-query", style={"fontSize": "11px", "whiteSpace": "pre-wrap"})]),
        ),
    ], style={"fontFamily": "system-ui, sans-serif", "background": "#f7f8fa", "padding": "0 16px"})
