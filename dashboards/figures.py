"""Every chart of the dashboard as a pure function: DataFrames and options in, a plotly Figure out.

No store, no Dash, no globals: tests build a frame, call the function and read the figure's data back.
Times arrive as naive UTC datetimes (what the store returns) and are shown as UTC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboards.health import BIG_FABRIC_LINKS, STATUSES, ecmp_cells, worst_first
from pipeline.units import counted, percent

P = TypeVar("P")

STATUS_COLOURS: dict[str, str] = {
    "down": "#1f1f1f",
    "failed": "#9467bd",
    "errors": "#d62728",
    "congested": "#ff7f0e",
    "hot": "#e6c200",
    "ok": "#2ca02c",
    "idle": "#b0b0b0",
}
SELECTED_COLOUR = "rgba(31, 119, 180, 0.35)"
INCIDENT_COLOURS = {"congestion": "#ff7f0e", "pfc_storm": "#8c564b", "fast_recovery": "#d62728", "link_flap": "#7f7f7f"}
FAILED_LINK_COLOUR = "#d62728"
LINK_PALETTE = tuple(c for c in plotly.colors.qualitative.Dark24 if c != FAILED_LINK_COLOUR)
MIN_WIDTH, MAX_WIDTH = 2.0, 14.0
SPINE_Y, LEAF_Y, HOSTS_Y = 2.0, 1.0, 0.35
LINK_POINTS = 21
LABEL_AT = 0.2
LABEL_STAGGER = 0.14
MARGIN = {"l": 40, "r": 20, "t": 40, "b": 30}
LABELLED_LINKS = 12  # the worst links a big fabric's map names (those whose labels fit)
LABEL_HEIGHT = 0.06  # a line of label text, in the map's y units
STATUSES_DRAWN = tuple(reversed(STATUSES))  # healthy links first, so a problem is drawn over them
MAX_CELL_TEXTS = 128  # a heatmap of more cells (a 64 × 16 fabric has 1,024) keeps its values to hover
MAX_NAMED_SWITCHES = 12  # a row holding more leaves (or spines) names every n-th only, the rest on hover


def link_colours(link_ids: Sequence[str]) -> dict[str, str]:
    """One colour per link, by its place in the topology: the same link keeps its colour in every chart and
    across refreshes, whichever links a window happens to show."""
    return {link: LINK_PALETTE[index % len(LINK_PALETTE)] for index, link in enumerate(link_ids)}


def empty(title: str, message: str) -> go.Figure:
    """A titled blank chart that says why it is blank."""
    figure = go.Figure()
    figure.update_layout(title=title, margin=MARGIN, xaxis={"visible": False}, yaxis={"visible": False})
    figure.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    return figure


def _rate(bits_per_s: float) -> str:
    for unit, scale in (("Tb/s", 1e12), ("Gb/s", 1e9), ("Mb/s", 1e6), ("kb/s", 1e3)):
        if bits_per_s >= scale:
            return f"{bits_per_s / scale:.2f} {unit}"
    return f"{bits_per_s:.0f} b/s"


def _positions(names: list[str], width: float) -> dict[str, float]:
    """Spread names evenly across [0, width]."""
    step = width / len(names)
    return {name: step * (i + 0.5) for i, name in enumerate(names)}


def fabric_map(health: pd.DataFrame, leaves: pd.DataFrame, hosts: pd.DataFrame, selected: str = "") -> go.Figure:
    """Spines on top, leaves below, each leaf's hosts summarised under it; a link's colour is its status and
    its width its utilisation. Every point of a link carries the link id as customdata so a click names it.
    Above BIG_FABRIC_LINKS links (a 64 × 16 fabric has 1,024) lines are thin, one trace per status, and only the
    LABELLED_LINKS worst are named; the table beside the map lists them in the same order.

    `health` comes from health.link_health; `leaves` has leaf, prefixes; `hosts` has leaf, hosts (active).
    """
    spines = list(dict.fromkeys(health["spine"]))
    leaf_names = list(leaves["leaf"])
    width = float(max(len(leaf_names), len(spines)))
    full = float(health["util"].max()) if len(health) else 0.0
    spine_x, leaf_x = _positions(spines, width), _positions(leaf_names, width)
    big = len(health) > BIG_FABRIC_LINKS
    figure = _status_lines(health, leaf_x, spine_x, selected) if big else \
        _link_lines(health, leaf_x, spine_x, full, selected)
    # Labels sit low on each link, higher for each further spine, so links leaving one leaf do not collide.
    fractions = [LABEL_AT + LABEL_STAGGER * spines.index(spine) for spine in health["spine"]] if not big else \
        [LABEL_AT + 0.6 * spines.index(spine) / len(spines) for spine in health["spine"]]
    points = [_link_path(leaf_x[leaf], spine_x[spine], p, np.array([f]))
              for leaf, spine, p, f in zip(health["leaf"], health["spine"], health["parallel"], fractions,
                                           strict=True)]
    labels = health.assign(x=[float(x[0]) for x, _ in points], y=[float(y[0]) for _, y in points])
    named = _uncrowded(worst_first(labels), width) if big else set(labels["link"])
    figure.add_trace(go.Scatter(
        x=labels["x"], y=labels["y"], mode="markers+text", name="links", showlegend=False,
        marker={"size": 7 if big else 11, "color": "white", "line": {"width": 1, "color": "#555"},
                "opacity": [1.0 if link in named else 0.0 for link in labels["link"]]},
        text=[("" if row.link not in named else f"{row.link} {_link_label(row)}" if big else _link_label(row))
              for row in labels.itertuples(index=False)],
        textposition="middle right", textfont={"size": 10}, customdata=list(labels["link"]),
        hovertext=[_link_hover(row) for row in labels.itertuples(index=False)], hoverinfo="text",
    ))
    figure.add_trace(go.Scatter(
        x=[spine_x[s] for s in spines], y=[SPINE_Y] * len(spines), mode="markers+text", name="spines",
        showlegend=False, text=_every_nth(spines), hovertext=spines, textposition="top center", hoverinfo="text",
        marker={"symbol": "square", "size": 30 if len(spines) <= MAX_NAMED_SWITCHES else 12, "color": "#34495e"},
    ))
    host_count = hosts.set_index("leaf")["hosts"] if len(hosts) else pd.Series(dtype="int64")
    few = len(leaf_names) <= MAX_NAMED_SWITCHES
    figure.add_trace(go.Scatter(
        x=[leaf_x[leaf] for leaf in leaf_names], y=[LEAF_Y] * len(leaf_names), mode="markers+text",
        name="leaves", showlegend=False, text=_every_nth(leaf_names), hovertext=leaf_names,
        textposition="bottom center", hoverinfo="text",
        marker={"symbol": "square", "size": 26 if few else 8, "color": "#5d6d7e"},
    ))
    figure.add_trace(go.Scatter(
        x=[leaf_x[leaf] for leaf in leaf_names], y=[HOSTS_Y] * len(leaf_names), mode="markers+text",
        name="hosts", showlegend=False, hoverinfo="text",
        text=[f"{int(host_count.get(leaf, 0))} active hosts" if few else "" for leaf in leaf_names],
        hovertext=[f"{leaf}: {int(host_count.get(leaf, 0))} active hosts, {prefixes}"
                   for leaf, prefixes in zip(leaves["leaf"], leaves["prefixes"], strict=True)],
        textposition="bottom center", marker={"symbol": "circle", "size": 14 if few else 5, "color": "#aab7b8"},
    ))
    scale = (f"{len(leaf_names)} × {len(spines)}: the worst links named where they fit, all on hover and in "
             "the table" if big else
             f"line width: utilisation, the widest {percent(full * 100)} of link speed")
    figure.update_layout(
        title={"text": f"Click a link to filter every view to it<br><sup>{scale}</sup>"}, margin=MARGIN, height=420,
        legend={"orientation": "h", "y": 0.0, "x": 0.5, "xanchor": "center", "yanchor": "top",
                "traceorder": "normal"},
        xaxis={"visible": False, "range": [-0.2, width + 0.2], "fixedrange": True},
        yaxis={"visible": False, "range": [HOSTS_Y - 0.45, SPINE_Y + 0.35], "fixedrange": True},
        plot_bgcolor="white", clickmode="event", hovermode="closest",
    )
    return figure


def _uncrowded(ordered: pd.DataFrame, width: float) -> set[str]:
    """Up to LABELLED_LINKS links from `ordered` (worst first, with their label's x, y) whose labels do not print
    over an earlier one's: a label takes about a seventh of the map's width and a line of text."""
    points = list(zip(ordered["x"], ordered["y"], strict=True))
    kept = first_apart(points, lambda a, b: abs(a[0] - b[0]) > width / 7 or abs(a[1] - b[1]) > LABEL_HEIGHT,
                       LABELLED_LINKS)
    return {ordered["link"].iloc[at] for at in kept}


def first_apart(points: Sequence[P], apart: Callable[[P, P], bool], limit: int | None = None) -> list[int]:
    """The indexes of `points` (most important first) each `apart` from every one kept before it, up to
    `limit`: the labels a chart can print without one over another."""
    kept: list[int] = []
    for at, point in enumerate(points):
        if limit is not None and len(kept) == limit:
            break
        if all(apart(point, points[other]) for other in kept):
            kept.append(at)
    return kept


def _every_nth(names: list[str]) -> list[str]:
    """Names for a row of switches: all when they fit, else every n-th so at most MAX_NAMED_SWITCHES show."""
    step = -(-len(names) // MAX_NAMED_SWITCHES)
    return [name if at % step == 0 else "" for at, name in enumerate(names)]


def _link_lines(health: pd.DataFrame, leaf_x: dict[str, float], spine_x: dict[str, float], full: float,
                selected: str) -> go.Figure:
    """One trace per link: its status colour and a width following its utilisation."""
    figure = go.Figure()
    shown: set[str] = set()
    for row in health.itertuples(index=False):
        xs, ys = _link_path(leaf_x[row.leaf], spine_x[row.spine], row.parallel, np.linspace(0.0, 1.0, LINK_POINTS))
        if row.link == selected:
            figure.add_trace(go.Scatter(
                x=xs, y=ys, mode="lines", line={"color": SELECTED_COLOUR, "width": _width(row.util, full) + 12},
                hoverinfo="skip", showlegend=False, customdata=[row.link] * LINK_POINTS,
            ))
        figure.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=row.status, legendgroup=row.status,
            showlegend=row.status not in shown,
            line={"color": STATUS_COLOURS[row.status], "width": _width(row.util, full),
                  "dash": "dash" if row.status == "down" else "solid"},
            customdata=[row.link] * LINK_POINTS, hovertext=[_link_hover(row)] * LINK_POINTS, hoverinfo="text",
            meta={"link": row.link, "status": row.status},
        ))
        shown.add(row.status)
    return figure


def _status_lines(health: pd.DataFrame, leaf_x: dict[str, float], spine_x: dict[str, float],
                  selected: str) -> go.Figure:
    """A big fabric's links as one thin trace per status (a thousand traces would stall the browser); every point
    still carries its link for hover and click."""
    figure = go.Figure()
    t = np.linspace(0.0, 1.0, 3)
    for status in STATUSES_DRAWN:
        rows = health[health["status"] == status]
        if rows.empty:
            continue
        xs: list[float | None] = []
        ys: list[float | None] = []
        links: list[str | None] = []
        hover: list[str | None] = []
        for row in rows.itertuples(index=False):
            x, y = _link_path(leaf_x[row.leaf], spine_x[row.spine], row.parallel, t)
            xs += [*x.tolist(), None]
            ys += [*y.tolist(), None]
            links += [row.link] * len(t) + [None]
            hover += [_link_hover(row)] * len(t) + [None]
        figure.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=status, customdata=links, hovertext=hover, hoverinfo="text",
            line={"color": STATUS_COLOURS[status], "width": 1.0 if status in ("ok", "idle") else 2.5,
                  "dash": "dash" if status == "down" else "solid"},
            meta={"status": status, "links": list(rows["link"])},
        ))
    if selected in set(health["link"]):
        row = next(health[health["link"] == selected].itertuples(index=False))
        x, y = _link_path(leaf_x[row.leaf], spine_x[row.spine], row.parallel, t)
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", line={"color": SELECTED_COLOUR, "width": 8},
                                    hoverinfo="skip", showlegend=False, customdata=[row.link] * len(t)))
    return figure


def _link_path(leaf_x: float, spine_x: float, parallel: int, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points at fractions t from leaf to spine; parallel links bow out to alternate sides."""
    bend = 0.12 * parallel * (1 if parallel % 2 else -1)
    return leaf_x + (spine_x - leaf_x) * t + bend * np.sin(np.pi * t), LEAF_Y + (SPINE_Y - LEAF_Y) * t


def _width(util: float, full: float) -> float:
    """Line width by utilisation against the busiest link shown (`full`), so load differences stay visible
    whether the fabric runs at 0.07% or at 70%; the map's title states the full-scale value."""
    share = float(util) / full if full > 0 else 0.0
    return MIN_WIDTH + (MAX_WIDTH - MIN_WIDTH) * min(max(share, 0.0), 1.0)


def _link_label(row: Any) -> str:
    if row.status == "down":
        return "DOWN"
    return f"failed {row.failures}×" if row.status == "failed" else percent(row.util * 100)


def _link_hover(row: Any) -> str:
    return (
        f"<b>{row.link}</b> ({row.status})<br>"
        f"up {_rate(row.up_bps)} · down {_rate(row.down_bps)} · {percent(row.util * 100)} of "
        f"{_rate(row.speed_gbps * 1e9)}<br>"
        f"ECN-CE ratio {percent(row.ce_ratio * 100)} · CNP {row.cnp:.0f} · PFC pauses {row.pfc_pause:.0f}<br>"
        f"errors+discards {row.errors:.0f} · {counted(int(row.congestion_events), 'congestion event')} · "
        f"{counted(int(row.failures), 'failure')}"
    )


def ecmp_heatmap(health: pd.DataFrame, metric: str, label: str, selected: str = "") -> go.Figure:
    """Leaves as rows, spines as columns: an uneven row is ECMP imbalance at a glance. The selected link's
    cell is outlined. Values print in the cells while they fit (MAX_CELL_TEXTS), else on hover."""
    cells = ecmp_cells(health, metric)
    leaves = list(dict.fromkeys(health["leaf"]))
    spines = list(dict.fromkeys(health["spine"]))
    grid = cells.pivot(index="leaf", columns="spine", values="value").reindex(index=leaves, columns=spines)
    text = grid.map(lambda v: "" if pd.isna(v) else f"{v:.0f}" if metric == "pfc" else percent(v))
    full = float(np.nanmax(grid.to_numpy())) if grid.notna().to_numpy().any() else 0.0
    scale = "" if metric == "share" else f"<br>full scale<br>{f'{full:.0f}' if metric == 'pfc' else percent(full)}"
    figure = go.Figure(go.Heatmap(
        z=grid.to_numpy(), x=spines, y=leaves, text=text.to_numpy(),
        texttemplate="%{text}" if grid.size <= MAX_CELL_TEXTS else "",
        colorscale="RdBu_r" if metric == "share" else "YlOrRd",
        zmid=100.0 / len(spines) if metric == "share" else None,
        zmin=0.0 if metric != "share" else None,
        zmax=(full if full > 0 else 1.0) if metric != "share" else None,
        hovertemplate="%{y} → %{x}: %{text}<extra></extra>",
        colorbar={"title": {"text": f"{metric}{scale}"}, "tickformat": "~g"},
    ))
    if selected:
        match = health[health["link"] == selected]
        if len(match):
            row, col = leaves.index(match["leaf"].iloc[0]), spines.index(match["spine"].iloc[0])
            figure.add_shape(type="rect", x0=col - 0.5, x1=col + 0.5, y0=row - 0.5, y1=row + 0.5,
                             line={"color": "#1f77b4", "width": 4})
    figure.update_layout(title={"text": label, "font": {"size": 13}}, margin=MARGIN, height=360,
                         yaxis={"autorange": "reversed"})
    return figure


def iteration_times(iterations: pd.DataFrame, slowdowns: pd.DataFrame, start: datetime, end: datetime) -> go.Figure:
    """All-reduce time of each job's iterations across the window; a job's slowdown windows are shaded and the
    iterations inside them marked.

    `iterations` has job, ts, iteration, allreduce_ms; `slowdowns` has job, ts, ts_end, summary.
    """
    if iterations.empty:
        return empty("All-reduce time per iteration", "no collective iterations in this window")
    figure = go.Figure()
    for job, rows in iterations.groupby("job", sort=True):
        figure.add_trace(go.Scatter(
            x=rows["ts"], y=rows["allreduce_ms"], mode="lines+markers", name=str(job) or "(no job)",
            marker={"size": 4}, customdata=rows["iteration"],
            hovertemplate=f"{job} iteration %{{customdata}}<br>%{{x}}<br>%{{y:.3f}} ms<extra></extra>",
        ))
    jobs = set(iterations["job"])
    marked = []
    for slowdown in slowdowns.itertuples(index=False):
        if slowdown.job not in jobs:
            continue
        figure.add_vrect(x0=slowdown.ts, x1=slowdown.ts_end, fillcolor="#d62728", opacity=0.12, line_width=0,
                         annotation_text=f"slowdown {slowdown.job}", annotation_position="top left")
        inside = iterations[(iterations["job"] == slowdown.job) & (iterations["ts"] >= slowdown.ts)
                            & (iterations["ts"] <= slowdown.ts_end)]
        marked.append(inside)
    if marked:
        slow = pd.concat(marked)
        figure.add_trace(go.Scatter(
            x=slow["ts"], y=slow["allreduce_ms"], mode="markers", name="slowdown",
            marker={"symbol": "x", "size": 9, "color": "#d62728"}, customdata=slow["job"],
            hovertemplate="%{customdata} slowed: %{y:.3f} ms<extra></extra>",
        ))
    figure.update_layout(title="All-reduce time per iteration", margin=MARGIN, height=340,
                         xaxis={"range": [_naive(start), _naive(end)]},
                         yaxis={"title": {"text": "all-reduce ms"}, "rangemode": "tozero"},
                         legend={"orientation": "h", "y": -0.2})
    return figure


DIRECTION_DASHES = {"up": "solid", "down": "dot"}


def congestion_series(bins: pd.DataFrame, step_s: float, start: datetime, end: datetime, colours: Mapping[str, str],
                      link: str = "") -> go.Figure:
    """ECN-CE ratio, CNP rate and PFC pause rate over the window, one line per link direction that saw any of
    them (both directions of `link` always, when one is selected).

    Each link keeps its colour from `colours` (up solid, down dotted, a direction not known dash-dotted).
    `bins` has t, link, direction, roce_ect, roce_ce, cnp, pfc_pause, summed over buckets of `step_s`; a bucket
    the store did not return had no marks, so rates drop to zero there rather than being drawn across.
    """
    title = "Congestion per link direction" + (f": {link}" if link else "")
    signals = bins.groupby(["link", "direction"])[["roce_ce", "cnp", "pfc_pause"]].sum().sum(axis=1)
    keep = {key for key, total in signals.items() if total > 0 or key[0] == link}
    series = bins[[key in keep for key in zip(bins["link"], bins["direction"], strict=True)]]
    if series.empty:
        return empty(title, "no ECN-CE marks, CNPs or PFC pauses in this window")
    figure = make_subplots(rows=3, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                           subplot_titles=("ECN-CE ratio (%)", "CNP per second", "PFC pauses per second"))
    step = pd.Timedelta(seconds=step_s)
    grid = pd.date_range(pd.Timestamp(_naive(start)).floor(step), _naive(end), freq=step)
    for (link_id, direction), rows in series.groupby(["link", "direction"], sort=True):
        buckets = rows.assign(t=pd.to_datetime(rows["t"])).groupby("t")[
            ["roce_ect", "roce_ce", "cnp", "pfc_pause"]].sum().reindex(grid, fill_value=0)
        values = {
            "ce_pct": buckets["roce_ce"] / buckets["roce_ect"].where(buckets["roce_ect"] > 0) * 100,
            "cnp_rate": buckets["cnp"] / step_s,
            "pfc_rate": buckets["pfc_pause"] / step_s,
        }
        name = f"{link_id} {direction}"
        for row, column in enumerate(("ce_pct", "cnp_rate", "pfc_rate"), start=1):
            figure.add_trace(go.Scatter(
                x=grid, y=values[column], mode="lines", name=name, legendgroup=name, showlegend=row == 1,
                line={"color": colours.get(link_id, LINK_PALETTE[0]), "width": 1.5,
                      "dash": DIRECTION_DASHES.get(direction, "dashdot")},
            ), row=row, col=1)
    figure.update_layout(title=title, margin=MARGIN, height=460, legend={"orientation": "h", "y": -0.12})
    return figure


LABELS_ACROSS = 8  # at most this many labels fit across a chart without printing over each other


def spaced_labels(times: pd.Series, priority: pd.Series, gap: timedelta) -> list[bool]:
    """Which points get a text label: the highest `priority` first, then each point at least `gap` from every
    labelled one, so a burst of failures shows its slowest by name and the rest on hover."""
    order = sorted(range(len(times)), key=lambda at: -priority.iloc[at] if pd.notna(priority.iloc[at]) else 0.0)
    kept = first_apart([times.iloc[at] for at in order], lambda a, b: abs(a - b) >= gap)
    labelled = [False] * len(times)
    for at in kept:
        labelled[order[at]] = True
    return labelled


def recovery_timeline(events: pd.DataFrame, start: datetime, end: datetime, selected: str = "") -> go.Figure:
    """Each fast-recovery event at its failure time, height = convergence ms, with the local and remote
    components beside it; customdata is the event's URL token so a click selects it.

    `events` has ts, link, convergence_ms, local_convergence_ms, remote_convergence_ms, flows_affected,
    flows_recovered, packets_lost, token; the x axis spans the window [start, end].
    """
    if events.empty:
        return empty("Fast recovery", "no link failures in this window")
    figure = go.Figure()
    labelled = spaced_labels(pd.to_datetime(events["ts"]), pd.to_numeric(events["convergence_ms"], errors="coerce"),
                             (end - start) / LABELS_ACROSS)
    hover = [
        f"<b>{row.link}</b> failed {row.ts}<br>convergence {_ms(row.convergence_ms)} "
        f"(local {_ms(row.local_convergence_ms)}, remote {_ms(row.remote_convergence_ms)})<br>"
        f"flows {row.flows_recovered}/{row.flows_affected} recovered · {counted(int(row.packets_lost), 'packet')} lost"
        for row in events.itertuples(index=False)
    ]
    for column, name, symbol in (("local_convergence_ms", "local", "triangle-up"),
                                 ("remote_convergence_ms", "remote", "triangle-down"),
                                 ("convergence_ms", "convergence", "circle-open")):
        figure.add_trace(go.Scatter(
            x=events["ts"], y=events[column], mode="markers+text" if name == "convergence" else "markers",
            name=name, customdata=events["token"], hovertext=hover, hoverinfo="text",
            text=[f"{row.link} {_ms(row.convergence_ms)}" if show else ""
                  for row, show in zip(events.itertuples(index=False), labelled, strict=True)]
            if name == "convergence" else None,
            textposition="top center",
            marker={"symbol": symbol, "size": 16 if name == "convergence" else 9,
                    "line": {"width": [3 if token == selected else 0 for token in events["token"]],
                             "color": "#1f77b4"}},
        ))
    open_failures = events[pd.to_numeric(events["convergence_ms"], errors="coerce").isna()]
    if len(open_failures):
        figure.add_trace(go.Scatter(
            x=open_failures["ts"], y=[0.0] * len(open_failures), mode="markers+text", name="not converged",
            customdata=open_failures["token"], hovertext=[f"{link} not converged" for link in open_failures["link"]],
            text=[f"{link} not converged" if show else "" for link, show in zip(
                open_failures["link"], spaced_labels(pd.to_datetime(open_failures["ts"]),
                                                     pd.Series([0.0] * len(open_failures)),
                                                     (end - start) / LABELS_ACROSS), strict=True)],
            textposition="top center", hoverinfo="text", marker={"symbol": "x", "size": 12, "color": "#d62728"},
        ))
    figure.update_layout(title="Fast recovery: convergence per link failure", margin=MARGIN, height=320,
                         xaxis={"range": [_naive(start), _naive(end)]},
                         yaxis={"title": {"text": "ms"}, "range": [0, _top(events)]}, clickmode="event",
                         legend={"orientation": "h", "y": -0.2})
    return figure


def _top(events: pd.DataFrame) -> float:
    """Room above the slowest convergence for its label."""
    values = pd.to_numeric(events[["convergence_ms", "local_convergence_ms", "remote_convergence_ms"]].stack(),
                           errors="coerce")
    return float(values.max()) * 1.35 + 0.5 if values.notna().any() else 1.0


def _naive(value: datetime) -> datetime:
    """UTC without a zone, as the store's times are, so both sit on one axis."""
    timestamp = pd.Timestamp(value)
    return (timestamp.tz_convert("UTC").tz_localize(None) if timestamp.tzinfo else timestamp).to_pydatetime()


def _ms(value: float | None) -> str:
    return "n/a" if value is None or pd.isna(value) else f"{float(value):.3f} ms"


def recovery_flows(
    rows: pd.DataFrame, failed_at: datetime, failed_link: str, local_ms: float | None, remote_ms: float | None,
    colours: Mapping[str, str],
) -> go.Figure:
    """The flows that were on the failed link: each row is a segment from its first to its last packet on one
    link, in ms from the failure, so the gap before a flow reappears on another link is the convergence.

    `rows` has flow (label), link, direction, ts_start, ts_end, packets.
    """
    title = f"Flows leaving {failed_link}"
    if rows.empty:
        return empty(title, "no flow rows around this failure")
    at = pd.Timestamp(_naive(failed_at))
    start_ms = (pd.to_datetime(rows["ts_start"]) - at).dt.total_seconds() * 1000
    end_ms = (pd.to_datetime(rows["ts_end"]) - at).dt.total_seconds() * 1000
    segments = rows.assign(start_ms=start_ms, end_ms=end_ms)
    figure = go.Figure()
    # The failed link is drawn last and thinner, so where a flow crossed it and another monitored link at
    # once (a remote flow seen on its way up and on the way down) both stay visible.
    links = sorted(set(segments["link"]), key=lambda link: (link == failed_link, link))
    for link in links:
        part = segments[segments["link"] == link]
        xs: list[float | None] = []
        ys: list[str | None] = []
        for segment in part.itertuples(index=False):
            xs += [segment.start_ms, segment.end_ms, None]
            ys += [segment.flow, segment.flow, None]
        failed = link == failed_link
        colour = FAILED_LINK_COLOUR if failed else colours.get(link, LINK_PALETTE[0])
        figure.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines+markers", name=f"on {link}", line={"color": colour, "width": 4 if failed else 9},
            marker={"size": 6}, hovertemplate="%{y}<br>%{x:.3f} ms<extra>" + link + "</extra>",
        ))
    figure.add_vline(x=0, line={"color": FAILED_LINK_COLOUR, "dash": "dash"}, annotation_text="failure")
    # Local below, remote above: the two are often close and their labels would overprint.
    for value, name, where in ((local_ms, "local", "bottom right"), (remote_ms, "remote", "top right")):
        if value is not None and not pd.isna(value):
            figure.add_vline(x=float(value), line={"color": "#555", "dash": "dot"},
                             annotation_text=f"{name} {float(value):.3f} ms", annotation_position=where)
    known = [float(v) for v in (local_ms, remote_ms) if v is not None and not pd.isna(v)]
    reach = max([5.0, *known])
    figure.update_layout(
        title=title, margin={**MARGIN, "l": 260}, height=max(300, 26 * segments["flow"].nunique() + 120),
        xaxis={"title": {"text": "ms from the failure"}, "range": [-reach, 2.5 * reach]},
        legend={"orientation": "h", "y": 1.08},
    )
    return figure


def top_talkers(talkers: pd.DataFrame) -> go.Figure:
    """The heaviest source → destination pairs by bytes. `talkers` has src, dst, bytes, packets."""
    if talkers.empty:
        return empty("Top talkers", "no flows match")
    ordered = talkers.sort_values("bytes")
    figure = go.Figure(go.Bar(
        x=ordered["bytes"], y=[f"{s} → {d}" for s, d in zip(ordered["src"], ordered["dst"], strict=True)],
        orientation="h", customdata=ordered["packets"],
        hovertemplate="%{y}<br>%{x:.4s}B · %{customdata} packets<extra></extra>",
    ))
    figure.update_layout(title="Top talkers (bytes)", margin={**MARGIN, "l": 220}, height=360,
                         xaxis={"exponentformat": "SI", "ticksuffix": "B"})
    return figure


def traffic_mix(mix: pd.DataFrame) -> go.Figure:
    """Bytes per DPI app, stacked by DFI traffic class. `mix` has app, traffic_class, bytes."""
    if mix.empty:
        return empty("Traffic mix", "no flows match")
    figure = go.Figure()
    order = list(mix.groupby("app")["bytes"].sum().sort_values().index)
    for traffic_class, rows in mix.groupby("traffic_class", sort=True):
        figure.add_trace(go.Bar(
            x=rows["bytes"], y=rows["app"], orientation="h", name=str(traffic_class),
            hovertemplate="%{y} · " + str(traffic_class) + ": %{x:.4s}B<extra></extra>",
        ))
    figure.update_layout(title="Traffic mix: app × traffic class (bytes)", barmode="stack", margin=MARGIN,
                         height=360, yaxis={"categoryorder": "array", "categoryarray": order},
                         xaxis={"exponentformat": "SI", "ticksuffix": "B"})
    return figure


def mark_incidents(figure: go.Figure, incidents: pd.DataFrame) -> go.Figure:
    """Each incident of the window on a time series (every row of a stacked one): a shaded span for an episode,
    a dashed line at a failure or flap; each shape is named after its kind and link. A blank chart stays blank.

    `incidents` has kind, ts, ts_end, link (collective slowdowns are drawn by the iteration chart itself)."""
    if not figure.data:
        return figure
    for row in incidents.itertuples(index=False):
        colour = INCIDENT_COLOURS.get(str(row.kind))
        if colour is None:
            continue
        name = f"{row.kind} {row.link}"
        if row.kind in ("fast_recovery", "link_flap"):
            figure.add_shape(type="line", xref="x", yref="paper", x0=row.ts, x1=row.ts, y0=0, y1=1, name=name,
                             line={"color": colour, "dash": "dash", "width": 1.5})
        else:
            figure.add_shape(type="rect", xref="x", yref="paper", x0=row.ts, x1=row.ts_end, y0=0, y1=1, name=name,
                             fillcolor=colour, opacity=0.12, line_width=0, layer="below")
    return figure
