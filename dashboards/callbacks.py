"""Callbacks: they only plumb. Each is a plain function of (store, topology, inputs) so tests can call it;
`register` binds them to the app in closures (no data in module globals).

Flow: URL or a control changes → `sync_state` writes the canonical URL and state → `resolve_window` turns
it into times (and on every live tick, follows the newest data) → each section reads its queries.
A store failure shows in the section's status line; the rest of the page keeps working.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import dash
import pandas as pd
from dash import Input, Output, State, no_update

from dashboards import figures, queries
from dashboards.health import leaves_frame, link_health, links_frame, worst_first
from dashboards.incident import detail_blocks, details_of, details_summary, incident_link
from dashboards.layout import CONGESTION_COLUMNS, FLOW_COLUMNS, HIDDEN, PACKETS_LINK, RECOVERY_COLUMNS, SECTION
from dashboards.packets import (
    PCAP_ROUTE,
    VIEW_ROWS,
    PacketRequest,
    PacketSource,
    marked_rows,
    request_of_token,
)
from dashboards.search import MAX_MATCHES, flow_matches, link_matches, results_markdown, search_text
from dashboards.state import (
    DEFAULT_RANGE,
    HEATMAP_METRICS,
    RANGES,
    ViewState,
    build_state,
    empty_note,
    event_token,
    from_query_string,
    is_recent,
    padded_span,
    read_window,
    state_link,
    to_query_string,
    window,
    window_payload,
    window_text,
)
from pipeline.errors import FabricscopeError, StoreError
from pipeline.store import Store
from pipeline.topology import Topology
from pipeline.units import percent, protocol_name, shown_time

CONTROLS = ("live", "range", "from", "to", "link", "metric", "app", "traffic-class", "job", "host", "port")
NO_WINDOW = "no valid window"


def _iso(value: Any) -> str:
    return "" if value is None or pd.isna(value) else pd.Timestamp(value).isoformat(timespec="microseconds")


def _clicked(click: Any) -> str:
    """The customdata of the first clicked point, '' when there is none (validated by build_state later)."""
    try:
        value = click["points"][0]["customdata"]
    except (KeyError, IndexError, TypeError):
        return ""
    return value if isinstance(value, str) else ""


def _control_values(state: ViewState) -> list[Any]:
    return [
        "live" if state.live else "history", state.range, _iso(state.start), _iso(state.end), state.link or None,
        state.metric, state.app or None, state.traffic_class or None, state.job, state.host,
        "" if state.port is None else str(state.port),
    ]


def sync_state(
    trigger: str | None,
    search: str | None,
    controls: Sequence[Any],
    map_click: Any,
    timeline_click: Any,
    selected_rows: Any,
    recovery_rows: Any,
    previous: str | None,
    window_data: Any,
    topology: Topology,
    live_default: bool,
    zoom: tuple[datetime, datetime] | None = None,
) -> list[Any]:
    """The canonical URL, the state and every control's value after one change, then whether to tick;
    `zoom` is the data's span when "zoom to data" was pressed (the page turns to history on it).

    On page load (or back/forward) the URL wins; otherwise the controls and clicks do. Each value is
    validated by dashboards.state, so garbage ends up as the default, never in a query.
    """
    link_ids = topology.link_ids()
    if trigger in (None, "url"):
        state = from_query_string(search, link_ids, live=live_default)
    else:
        current = from_query_string(previous, link_ids, live=live_default)
        values: dict[str, object] = {
            "live": controls[0] == "live", "range": controls[1], "from": controls[2], "to": controls[3],
            "link": controls[4] or "", "metric": controls[5], "app": controls[6] or "",
            "class": controls[7] or "", "job": controls[8], "host": controls[9], "port": controls[10],
            "event": current.event, "packets": current.packets, "incident": current.incident,
        }
        if trigger == "fabric-map":
            clicked = _clicked(map_click)
            values["link"] = "" if clicked == current.link else clicked
        elif trigger == "recovery-timeline":
            values["event"] = _clicked(timeline_click)
        elif trigger == "recovery-table":
            values["event"] = _selected_token(selected_rows, recovery_rows)
        elif trigger == "zoom-data" and zoom is not None:
            values["live"] = False
            values["from"], values["to"] = _iso(zoom[0]), _iso(zoom[1])
        elif trigger in ("live", "range"):
            values["from"] = values["to"] = ""
            resolved = read_window(window_data, link_ids)
            if trigger == "live" and controls[0] == "history" and resolved is not None:
                values["from"], values["to"] = _iso(resolved[1]), _iso(resolved[2])
        state = build_state(values, link_ids, live=live_default)
    canonical = to_query_string(state)
    return [canonical, canonical, *_control_values(state), not state.live]


def _selected_token(selected_rows: Any, rows: Any) -> str:
    if not isinstance(selected_rows, list) or not selected_rows or not isinstance(rows, list):
        return ""
    index = selected_rows[0]
    if not isinstance(index, int) or not 0 <= index < len(rows) or not isinstance(rows[index], dict):
        return ""
    token = rows[index].get("token", "")
    return token if isinstance(token, str) else ""


def resolve_window(store: Store, topology: Topology, search: str | None, previous: Any,
                   live_default: bool, now: datetime | None = None) -> tuple[Any, str]:
    """The window the sections show (ending at the newest data when live, the data's own span when nothing is
    recent); unchanged → no refresh. The text says whether data is arriving."""
    state = from_query_string(search, topology.link_ids(), live=live_default)
    now = now or datetime.now(UTC)
    try:
        newest = queries.latest_time(queries.run(store, queries.latest()))
        earliest = None
        if state.start is None and newest is not None and not is_recent(newest, now, state.range):
            end = _aware(newest) + timedelta(microseconds=1)
            span = queries.span_of(queries.run(store, queries.data_span(end - RANGES[state.range], end)))
            earliest = span[0] if span is not None else None
    except StoreError as exc:
        return no_update, f"store unavailable: {exc}"
    start, end = window(state, newest, now, earliest)
    payload = window_payload(state, start, end)
    return (no_update if payload == previous else payload), window_text(state, start, end, newest, now)


def zoom_span(store: Store, topology: Topology, window_data: Any) -> tuple[datetime, datetime] | None:
    """What "zoom to data" fits the window to: the span of the records in the window shown, else of the newest
    data (the chosen range before it); None when the store holds nothing."""
    resolved = read_window(window_data, topology.link_ids())
    span = queries.span_of(queries.run(store, queries.data_span(*resolved[1:]))) if resolved else None
    if span is None:
        newest = queries.latest_time(queries.run(store, queries.latest()))
        if newest is None:
            return None
        end = _aware(newest) + timedelta(microseconds=1)
        reach = RANGES[resolved[0].range] if resolved else RANGES[DEFAULT_RANGE]
        span = queries.span_of(queries.run(store, queries.data_span(end - reach, end)))
        if span is None:
            return None
    return padded_span(span[0], span[1] + timedelta(microseconds=1))


def _stored_now(store: Store, start: datetime, now: datetime) -> datetime:
    """The time a window's age is counted from when choosing a rollup: the store's newest record when that is
    older than now, since retention runs from arrival (a capture from January replayed today is still in the
    raw bins). A window younger than every retention needs no lookup: that is every live refresh."""
    if now - start <= queries.SHORTEST_RETENTION:
        return now
    newest = queries.latest_time(queries.run(store, queries.latest()))
    return min(now, _aware(newest)) if newest else now


def _traffic_source(store: Store, start: datetime, end: datetime, now: datetime,
                    links: int) -> queries.TrafficSource:
    tables = set(queries.run(store, queries.existing_tables())["name"])
    return queries.traffic_source(start, end, _stored_now(store, start, now), tables, links)


def fabric_view(store: Store, topology: Topology, data: Any, now: datetime | None = None) -> list[Any]:
    """Map and heatmap: link traffic from the source the span calls for, counters, events, hosts."""
    resolved = read_window(data, topology.link_ids())
    if resolved is None:
        return [no_update, no_update, no_update, "", NO_WINDOW]
    state, start, end = resolved
    try:
        source = _traffic_source(store, start, end, now or datetime.now(UTC), len(topology.links))
        health = link_health(
            links_frame(topology),
            queries.run(store, queries.link_traffic(start, end, source)),
            queries.run(store, queries.link_counters(start, end)),
            queries.run(store, queries.link_events(start, end)),
            (end - start).total_seconds(),
        )
        hosts = queries.run(store, queries.leaf_hosts(start, end))
    except StoreError as exc:
        return [no_update, no_update, no_update, "", str(exc)]
    label = f"{HEATMAP_METRICS[state.metric]}<br><sup>leaf × spine, from {source.table}</sup>"
    return [
        figures.fabric_map(health, leaves_frame(topology), hosts, state.link),
        figures.ecmp_heatmap(health, state.metric, label, state.link),
        worst_links(health, state), "", "",
    ]


def worst_links(health: pd.DataFrame, state: ViewState) -> list[dict[str, Any]]:
    """Every link in triage order, each name a link to the page filtered to it: on a big fabric the map names
    only the worst, this table has them all."""
    return [{"link": state_link(row.link, dataclasses.replace(state, link=row.link)),
             "status": row.status, "utilisation": percent(row.util * 100), "ce_ratio": percent(row.ce_ratio * 100),
             "cnp": int(row.cnp), "pfc_pause": int(row.pfc_pause), "errors": int(row.errors),
             "failures": int(row.failures), "congestion_events": int(row.congestion_events)}
            for row in worst_first(health).itertuples(index=False)]


def congestion_view(store: Store, topology: Topology, data: Any, now: datetime | None = None) -> list[Any]:
    """Iteration times with slowdowns, CE/CNP/PFC per link direction, and the congestion events."""
    resolved = read_window(data, topology.link_ids())
    if resolved is None:
        return [no_update, no_update, no_update, no_update, NO_WINDOW]
    state, start, end = resolved
    try:
        source = _traffic_source(store, start, end, now or datetime.now(UTC),
                                 1 if state.link else len(topology.links))
        series_query = queries.congestion_series(start, end, state.link, source)
        iterations = queries.run(store, queries.iterations(start, end, state.job, state.link))
        slowdowns = queries.run(store, queries.slowdowns(start, end, state.job))
        series = queries.run(store, series_query)
        events = queries.run(store, queries.congestion_events(start, end, state.link, state.job))
        marks = queries.run(store, queries.window_incidents(start, end))
    except StoreError as exc:
        return [no_update, no_update, no_update, no_update, str(exc)]
    rows = [
        {**{c: _cell(c, row.get(c)) for c in CONGESTION_COLUMNS}, "peak_ce": _percent(row.get("value")),
         "details": incident_link(details_summary(str(row["kind"]), details_of(row.get("details"))), state, row),
         PACKETS_LINK: _packets_link(state, PacketRequest(event=str(row["event_id"])))}
        for row in events.to_dict("records")
    ]
    step_s = series_query.parameters["step_ms"] / 1000
    series_figure = figures.congestion_series(series, step_s, start, end, figures.link_colours(topology.link_ids()),
                                              state.link)
    return [figures.mark_incidents(figures.iteration_times(iterations, slowdowns, start, end), marks),
            figures.mark_incidents(series_figure, marks), rows,
            empty_note(rows, "congestion events", link=state.link, job=state.job), ""]


def recovery_view(store: Store, topology: Topology, data: Any) -> list[Any]:
    """The failures of the window and, for the selected one (else the newest), its flows moving links."""
    link_ids = topology.link_ids()
    resolved = read_window(data, link_ids)
    if resolved is None:
        return [no_update, no_update, no_update, no_update, no_update, NO_WINDOW]
    state, start, end = resolved
    try:
        events = queries.run(store, queries.recovery_events(start, end, state.link))
        events["token"] = [event_token(link, pd.Timestamp(ts).to_pydatetime())
                           for link, ts in zip(events["link"], events["ts"], strict=True)]
        key = state.event_key() or _newest(events)
        flows_figure = figures.empty("Flows leaving the failed link", "no link failure selected")
        if key is not None:
            event = queries.run(store, queries.recovery_event(*key))
            if len(event):
                first = event.iloc[0]
                rows = queries.run(store, queries.recovery_flows(key[0], key[1], _float(first["convergence_ms"])))
                flows_figure = figures.recovery_flows(rows, key[1], key[0], _float(first["local_convergence_ms"]),
                                                      _float(first["remote_convergence_ms"]),
                                                      figures.link_colours(link_ids))
    except StoreError as exc:
        return [no_update, no_update, no_update, no_update, no_update, str(exc)]
    selected_token = event_token(*key) if key is not None else ""
    rows = [{**{c: _cell(c, row.get(c)) for c in RECOVERY_COLUMNS}, "token": row["token"],
             "details": incident_link(details_summary("fast_recovery", details_of(row.get("details"))), state, row),
             PACKETS_LINK: _packets_link(state, PacketRequest(event=str(row["event_id"])))}
            for row in events.to_dict("records")]
    highlight = [{"if": {"filter_query": f'{{token}} = "{selected_token}"'}, "backgroundColor": "#d6eaf8"}]
    timeline = figures.recovery_timeline(events, start, end, selected_token)
    return [timeline, rows, highlight if key else [], flows_figure, empty_note(rows, "link failures", link=state.link),
            ""]


def search_view(store: Store, topology: Topology, typed: Any, data: Any, now: datetime | None = None) -> str:
    """The links, hosts and jobs of the window matching what was typed, as links filtering the page."""
    text = search_text(typed)
    resolved = read_window(data, topology.link_ids())
    if not text or resolved is None:
        return ""
    state, start, end = resolved
    try:
        tables = set(queries.run(store, queries.existing_tables())["name"])
        source = queries.talkers_source(start, end, _stored_now(store, start, now or datetime.now(UTC)), tables)
        found = queries.run(store, queries.search(start, end, text, MAX_MATCHES, source))
    except StoreError as exc:
        return f"search failed: {exc}"
    return results_markdown(link_matches(text, topology) + flow_matches(found), state, text)


def _newest(events: pd.DataFrame) -> tuple[str, datetime] | None:
    """The newest failure that converged (it has flows to show), else the newest; events come newest first."""
    if events.empty:
        return None
    converged = events[events["convergence_ms"].notna()]
    first = (converged if len(converged) else events).iloc[0]
    return str(first["link"]), pd.Timestamp(first["ts"]).tz_localize(UTC).to_pydatetime()


def flows_view(store: Store, topology: Topology, data: Any, now: datetime | None = None) -> list[Any]:
    """Top talkers, traffic mix, the flow table and the exact query (text and bound values) behind it."""
    resolved = read_window(data, topology.link_ids())
    if resolved is None:
        return [no_update, no_update, no_update, no_update, no_update, NO_WINDOW]
    state, start, end = resolved
    flow_filter = queries.FlowFilter(link=state.link, app=state.app, traffic_class=state.traffic_class,
                                     job=state.job, host=state.host,
                                     port=queries.NO_PORT if state.port is None else state.port)
    table_query = queries.flow_table(start, end, flow_filter)
    try:
        tables = set(queries.run(store, queries.existing_tables())["name"])
        now = _stored_now(store, start, now or datetime.now(UTC))
        talkers_source = queries.talkers_source(start, end, now, tables)
        mix_source = queries.mix_source(start, end, now, tables)
        talkers = queries.run(store, queries.top_talkers(start, end, flow_filter, talkers_source))
        mix = queries.run(store, queries.traffic_mix(start, end, flow_filter, mix_source, talkers_source))
        table = queries.run(store, table_query)
        incidents = queries.run(store, queries.window_incidents(start, end))
    except StoreError as exc:
        return [no_update, no_update, no_update, table_query.shown(), no_update, str(exc)]
    rows = [{**{c: _cell(c, row.get(c)) for c in FLOW_COLUMNS}, "events": _flow_events(state, row, incidents),
             PACKETS_LINK: _packets_link(state, _flow_request(row))}
            for row in table.to_dict("records")]
    return [figures.top_talkers(talkers), figures.traffic_mix(mix), rows, table_query.shown(),
            empty_note(rows, "flows", link=state.link, app=state.app, traffic_class=state.traffic_class,
                       job=state.job, host=state.host, port=state.port), ""]


def _flow_events(state: ViewState, row: dict[str, Any], incidents: pd.DataFrame) -> str:
    """Links to the incidents of a flow-table row: those on its link overlapping its first to last packet."""
    if incidents.empty:
        return ""
    first, last = pd.Timestamp(row["first"]), pd.Timestamp(row["last"])
    mine = incidents[(incidents["link"] == row["link"]) & (pd.to_datetime(incidents["ts"]) <= last)
                     & (pd.to_datetime(incidents["ts_end"]) >= first)]
    return " ".join(incident_link(str(event["kind"]), state, event) for event in mine.to_dict("records"))


def incident_view(store: Store, topology: Topology, search: str | None, live_default: bool = True) -> list[Any]:
    """The incident panel for the URL's `incident`: hidden when there is none, else what it was (kind, state,
    span to the ms, summary), its details as sub-tables, and links to its packets and to close it."""
    state = from_query_string(search, topology.link_ids(), live=live_default)
    if not state.incident:
        return [{**SECTION, **HIDDEN}, "", "", "", [], ""]
    close = to_query_string(dataclasses.replace(state, incident=""))
    packets = to_query_string(dataclasses.replace(state, packets=PacketRequest(event=state.incident).token()))
    try:
        found = queries.run(store, queries.incident(state.incident))
    except StoreError as exc:
        return [{**SECTION}, "", packets, close, [], str(exc)]
    if found.empty:
        return [{**SECTION}, "", packets, close, [], f"no incident {state.incident} in the store"]
    event = found.iloc[0].to_dict()
    where = " ".join(str(event[c]) for c in ("link", "direction") if event.get(c)) or str(event.get("device", ""))
    summary = (f"{event['kind']} on {where} · {event['state']} · {_cell('ts', event['ts'])} → "
               f"{_cell('ts_end', event['ts_end'])} · {event['summary']}")
    return [{**SECTION}, summary, packets, close, detail_blocks(details_of(event.get("details"))), ""]


def _packets_link(state: ViewState, packet_request: PacketRequest) -> str:
    """A markdown link to this page with the packets view open on `packet_request`."""
    return state_link("packets", dataclasses.replace(state, packets=packet_request.token()))


def _flow_request(row: dict[str, Any]) -> PacketRequest:
    """The packets of one flow-table row: its 5-tuple and QP, on its link, between its first and last packet
    (the end one µs later: the store keeps µs, the packets ns)."""
    def endpoint(address: Any, port: Any) -> str:
        text = str(address)
        return f"[{text}]:{port}" if ":" in text else f"{text}:{port}"

    qp = int(row["roce_qp"]) if row.get("roce_qp") else None
    return PacketRequest(
        flow=f"{endpoint(row['src'], row['src_port'])}>{endpoint(row['dst'], row['dst_port'])}/{row['proto']}",
        qp=qp, link=str(row["link"]), start=_aware(row["first"]),
        end=_aware(row["last"]) + timedelta(microseconds=1))


def _aware(value: Any) -> datetime:
    moment = pd.Timestamp(value).to_pydatetime()
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def packets_view(source: PacketSource | None, topology: Topology, search: str | None,
                 live_default: bool = True) -> list[Any]:
    """The packets section for the URL's `packets` request: hidden when there is none, else up to VIEW_ROWS
    packets around the incident (or from the flow's start), marked, with the download link; what fails
    (no packets stored, no tshark) shows in the status line."""
    state = from_query_string(search, topology.link_ids(), live=live_default)
    packet_request = request_of_token(state.packets)
    if packet_request is None:
        return [{**SECTION, **HIDDEN}, "", "", "", [], ""]
    shown = {**SECTION}
    close = to_query_string(dataclasses.replace(state, packets=""))
    download = f"{PCAP_ROUTE}?{packet_request.token()}"
    if source is None:
        return [shown, packet_request.described(), download, close, [], "no packet store behind this dashboard"]
    try:
        listing = source.listing(packet_request, VIEW_ROWS)
    except FabricscopeError as exc:
        return [shown, packet_request.described(), download, close, [], str(exc)]
    more = " (more matched than were read)" if listing.capped else ""
    summary = (f"{packet_request.described()}: {len(listing.rows)} of {listing.matched} packets{more}, "
               f"first {VIEW_ROWS} around the " + ("incident" if packet_request.event else "flow's start")
               + "; Δ ms from " + ("the incident" if packet_request.event else "the first packet"))
    return [shown, summary, download, close, marked_rows(listing), ""]


def _cell(column: str, value: Any) -> Any:
    """A value the table can hold, as people read it: times to the ms with their zone, the IP protocol by name,
    missing as ''; numbers stay numbers (the tables sort them and format bytes with SI prefixes)."""
    if value is None or (not isinstance(value, str | list) and pd.isna(value)):
        return ""
    if isinstance(value, datetime | pd.Timestamp):
        return shown_time(pd.Timestamp(value).to_pydatetime())
    plain = value.item() if hasattr(value, "item") else value
    return protocol_name(plain) if column == "proto" and isinstance(plain, int) else plain


def _float(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else float(value)


def _percent(value: Any) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value) * 100:.2f}%"


def register(app: dash.Dash, store: Store, topology: Topology, *, live: bool,
             packets: PacketSource | None = None) -> None:
    """Bind the functions above to the page's components; `packets` answers the packets view."""
    outputs = [Output("url", "search"), Output("state", "data"), *(Output(c, "value") for c in CONTROLS),
               Output("tick", "disabled")]
    inputs = [Input("url", "search"), *(Input(c, "value") for c in CONTROLS), Input("fabric-map", "clickData"),
              Input("recovery-timeline", "clickData"), Input("recovery-table", "selected_rows"),
              Input("zoom-data", "n_clicks")]

    @app.callback(outputs, inputs, State("recovery-table", "data"), State("state", "data"),
                  State("window", "data"))
    def _sync(search: str, *args: Any) -> list[Any]:
        controls, (map_click, timeline_click, selected_rows, _zoom, recovery_rows, previous, window_data) = (
            args[: len(CONTROLS)], args[len(CONTROLS):])
        trigger = dash.ctx.triggered_id
        zoom = None
        if trigger == "zoom-data":
            try:
                zoom = zoom_span(store, topology, window_data)
            except StoreError:
                return [no_update] * len(outputs)
        return sync_state(str(trigger) if trigger else None, search, controls, map_click, timeline_click,
                          selected_rows, recovery_rows, previous, window_data, topology, live, zoom)

    @app.callback(Output("window", "data"), Output("window-text", "children"),
                  Input("state", "data"), Input("tick", "n_intervals"), State("window", "data"))
    def _window(search: str, _tick: int, previous: Any) -> tuple[Any, str]:
        return resolve_window(store, topology, search, previous, live)

    @app.callback(Output("incident", "style"), Output("incident-summary", "children"),
                  Output("incident-packets", "href"), Output("incident-close", "href"),
                  Output("incident-details", "children"), Output("incident-status", "children"),
                  Input("state", "data"))
    def _incident(search: str) -> list[Any]:
        return incident_view(store, topology, search, live)

    @app.callback(Output("packets", "style"), Output("packets-summary", "children"),
                  Output("packets-download", "href"), Output("packets-close", "href"), Output("packets-table", "data"),
                  Output("packets-status", "children"), Input("state", "data"))
    def _packets(search: str) -> list[Any]:
        return packets_view(packets, topology, search, live)

    @app.callback(Output("search-results", "children"), Input("search", "value"), State("window", "data"))
    def _search(typed: Any, data: Any) -> str:
        return search_view(store, topology, typed, data)

    _bind(app, fabric_view, store, topology,
          ["fabric-map.figure", "ecmp-heatmap.figure", "worst-links.data", "ecmp-status.children",
           "fabric-status.children"])
    _bind(app, congestion_view, store, topology,
          ["iterations.figure", "congestion-series.figure", "congestion-table.data", "congestion-table-empty.children",
           "congestion-status.children"])
    _bind(app, recovery_view, store, topology,
          ["recovery-timeline.figure", "recovery-table.data", "recovery-table.style_data_conditional",
           "recovery-flows.figure", "recovery-table-empty.children", "recovery-status.children"])
    _bind(app, flows_view, store, topology,
          ["top-talkers.figure", "traffic-mix.figure", "flow-table.data", "flow-query.children",
           "flow-table-empty.children", "flows-status.children"])


def _bind(app: dash.Dash, view: Callable[[Store, Topology, Any], list[Any]], store: Store, topology: Topology,
          targets: list[str]) -> None:
    outputs = [Output(component, prop) for component, prop in (target.split(".", 1) for target in targets)]

    @app.callback(outputs, Input("window", "data"))
    def _section(data: Any) -> list[Any]:
        return view(store, topology, data)

