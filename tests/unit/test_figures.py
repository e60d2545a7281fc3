"""Figures and link health are pure functions: build frames, call, read the numbers back off the figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from dashboards import figures
from dashboards.health import STATUSES, ecmp_cells, leaves_frame, link_health, links_frame, worst_first
from pipeline.topology import load_topology
from simulator.fabric import Fabric
from simulator.scenario import FabricSpec

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml")
T0 = datetime(2026, 11, 1, 12, 0, 0)
SPAN_S = 10.0
FULL = 400e9 / 8 * SPAN_S  # bytes of a fully used 400 Gb/s direction over the span


def traffic(rows: list[tuple[str, str, float, dict[str, float]]]) -> pd.DataFrame:
    """(link, direction, share of full speed, extra counters) → the frame link_traffic returns."""
    records = []
    for link, direction, share, extra in rows:
        records.append({"link": link, "direction": direction, "bytes": share * FULL, "packets": 1000.0,
                        "roce_ect": 1000.0, "roce_ce": 0.0, "cnp": 0.0, "pfc_pause": 0.0,
                        "first_seen": T0, "last_seen": T0 + timedelta(seconds=SPAN_S), **extra})
    return pd.DataFrame(records)


NO_COUNTERS = pd.DataFrame(columns=["link", "errors", "oper_up"])
NO_EVENTS = pd.DataFrame(columns=["link", "last_down", "last_up", "congestion_events", "failures"])


def health(rows: list[tuple[str, str, float, dict[str, float]]], counters: pd.DataFrame = NO_COUNTERS,
           events: pd.DataFrame = NO_EVENTS) -> pd.DataFrame:
    return link_health(links_frame(TOPOLOGY), traffic(rows), counters, events, SPAN_S).set_index("link",
                                                                                                  drop=False)


def test_link_status_follows_triage_order_and_utilisation_is_the_busier_direction() -> None:
    frame = health(
        [
            ("leaf1-spine1", "up", 0.2, {}), ("leaf1-spine1", "down", 0.5, {}),
            ("leaf1-spine2", "up", 0.9, {}),
            ("leaf2-spine1", "up", 0.1, {"roce_ce": 50.0}),
            ("leaf2-spine2", "up", 0.1, {"pfc_pause": 3.0}),
            ("leaf3-spine1", "up", 0.95, {"roce_ce": 500.0}),
            ("leaf4-spine1", "up", 0.1, {}),
        ],
        counters=pd.DataFrame([("leaf3-spine1", 7, 1), ("leaf4-spine1", 0, 0)], columns=["link", "errors", "oper_up"]),
        events=pd.DataFrame([("leaf3-spine2", T0 + timedelta(seconds=3), None, 0, 1),
                             ("leaf2-spine1", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2), 0, 2)],
                            columns=["link", "last_down", "last_up", "congestion_events", "failures"]),
    )
    assert frame.loc["leaf1-spine1", "util"] == pytest.approx(0.5)
    assert frame.loc["leaf1-spine1", "down_bps"] == pytest.approx(0.5 * 400e9)
    assert frame["status"].to_dict() == {
        "leaf1-spine1": "ok",
        "leaf1-spine2": "hot",
        "leaf2-spine1": "failed",          # failed twice in the window, back up: outranks its 5% CE
        "leaf2-spine2": "congested",       # PFC pauses
        "leaf3-spine1": "errors",          # errors outrank congestion
        "leaf3-spine2": "down",            # failed, never seen since
        "leaf4-spine1": "down",            # a port reports oper down
        "leaf4-spine2": "idle",
    }
    assert frame.loc["leaf2-spine1", "ce_ratio"] == pytest.approx(0.05)
    hosts = pd.DataFrame(columns=["leaf", "hosts"])
    labels = next(t for t in figures.fabric_map(frame, leaves_frame(TOPOLOGY), hosts).data if t.name == "links")
    shown = dict(zip(labels.customdata, labels.text, strict=True))
    assert (shown["leaf2-spine1"], shown["leaf3-spine2"]) == ("failed 2×", "DOWN")


def test_traffic_after_a_failure_brings_the_link_back_up() -> None:
    events = pd.DataFrame([("leaf1-spine1", T0 + timedelta(seconds=1), None, 0, 1)],
                          columns=["link", "last_down", "last_up", "congestion_events", "failures"])
    frame = health([("leaf1-spine1", "up", 0.3, {})], events=events)
    assert not frame.loc["leaf1-spine1", "down"]


def test_rates_use_the_part_of_the_window_holding_data() -> None:
    rows = traffic([("leaf1-spine1", "up", 0.5, {})])
    frame = link_health(links_frame(TOPOLOGY), rows, NO_COUNTERS, NO_EVENTS, 10 * SPAN_S)
    assert frame.set_index("link").loc["leaf1-spine1", "util"] == pytest.approx(0.5)


def test_fabric_map_draws_every_link_with_its_status_width_and_click_target() -> None:
    frame = health([("leaf1-spine1", "up", 1.0, {}), ("leaf1-spine2", "up", 0.1, {})])
    hosts = pd.DataFrame([("leaf1", 8)], columns=["leaf", "hosts"])
    figure = figures.fabric_map(frame, leaves_frame(TOPOLOGY), hosts, selected="leaf1-spine2")
    links = {t.meta["link"]: t for t in figure.data if t.meta}
    assert set(links) == set(TOPOLOGY.link_ids())
    assert links["leaf1-spine1"].line.width == figures.MAX_WIDTH
    assert links["leaf1-spine1"].line.color == figures.STATUS_COLOURS["hot"]
    assert links["leaf4-spine2"].line.color == figures.STATUS_COLOURS["idle"]
    assert set(links["leaf1-spine1"].customdata) == {"leaf1-spine1"}
    halo = [t for t in figure.data if t.line.color == figures.SELECTED_COLOUR]
    assert len(halo) == 1 and set(halo[0].customdata) == {"leaf1-spine2"}
    labels = next(t for t in figure.data if t.name == "links")
    shown = dict(zip(labels.customdata, labels.text, strict=True))
    assert (shown["leaf1-spine1"], shown["leaf1-spine2"], shown["leaf2-spine1"]) == ("100%", "10%", "0%")
    assert "the widest 100% of link speed" in figure.layout.title.text
    host_text = next(t for t in figure.data if t.name == "hosts").text
    assert host_text[0] == "8 active hosts" and host_text[1] == "0 active hosts"


def test_ecmp_cells_show_utilisation_share_ce_and_pfc() -> None:
    frame = health([
        ("leaf1-spine1", "up", 0.6, {"roce_ce": 100.0, "pfc_pause": 4.0}), ("leaf1-spine2", "up", 0.2, {}),
    ])
    cells = {metric: ecmp_cells(frame, metric).set_index(["leaf", "spine"])["value"]
             for metric in ("util", "share", "ce", "pfc")}
    assert cells["util"][("leaf1", "spine1")] == pytest.approx(60.0)
    assert cells["share"][("leaf1", "spine1")] == pytest.approx(75.0)
    assert cells["share"][("leaf1", "spine2")] == pytest.approx(25.0)
    assert cells["ce"][("leaf1", "spine1")] == pytest.approx(10.0)
    assert cells["pfc"][("leaf1", "spine1")] == 4.0
    heatmap = figures.ecmp_heatmap(frame, "share", "uplink share", selected="leaf1-spine2")
    assert list(heatmap.data[0].y) == ["leaf1", "leaf2", "leaf3", "leaf4"]
    assert heatmap.data[0].z[0][0] == pytest.approx(75.0)
    assert heatmap.data[0].zmid == pytest.approx(50.0)
    assert heatmap.layout.shapes[0].x0 == pytest.approx(0.5)


def test_iteration_times_plot_each_iteration_and_mark_those_in_a_slowdown() -> None:
    iterations = pd.DataFrame(
        [("job-a", T0 + timedelta(seconds=i), i, 30.0 if 3 <= i <= 4 else 12.0) for i in range(8)]
        + [("job-b", T0 + timedelta(seconds=i), i, 8.0) for i in range(8)],
        columns=["job", "ts", "iteration", "allreduce_ms"],
    )
    slowdowns = pd.DataFrame([("job-a", T0 + timedelta(seconds=3), T0 + timedelta(seconds=4.5), "slow"),
                              ("job-z", T0, T0 + timedelta(seconds=9), "another job")],
                             columns=["job", "ts", "ts_end", "summary"])
    figure = figures.iteration_times(iterations, slowdowns, T0, T0 + timedelta(seconds=10))
    traces = {t.name: t for t in figure.data}
    assert list(traces["job-a"].y) == list(iterations[iterations["job"] == "job-a"]["allreduce_ms"])
    assert list(traces["slowdown"].y) == [30.0, 30.0]
    assert list(traces["slowdown"].customdata) == ["job-a", "job-a"]
    assert len(figure.layout.shapes) == 1


def test_congestion_series_rates_and_only_signalling_link_directions() -> None:
    bins = pd.DataFrame([
        (T0, "leaf2-spine2", "down", 1000, 250, 40, 6),
        (T0 + timedelta(seconds=2), "leaf2-spine2", "down", 1000, 0, 0, 0),
        (T0, "leaf1-spine1", "up", 1000, 0, 0, 0),
        (T0, "leaf3-spine1", "up", 1000, 0, 0, 0),
    ], columns=["t", "link", "direction", "roce_ect", "roce_ce", "cnp", "pfc_pause"])
    end = (T0 + timedelta(seconds=6)).replace(tzinfo=UTC)
    colours = figures.link_colours(TOPOLOGY.link_ids())
    figure = figures.congestion_series(bins, 2.0, T0.replace(tzinfo=UTC), end, colours, link="leaf3-spine1")
    by_axis = {(t.name, t.yaxis): list(t.y) for t in figure.data}
    assert by_axis[("leaf2-spine2 down", "y")][:2] == [25.0, 0.0]
    assert by_axis[("leaf2-spine2 down", "y2")] == [20.0, 0.0, 0.0, 0.0]  # the bucket at +4 s had no CNP
    assert by_axis[("leaf2-spine2 down", "y3")] == [3.0, 0.0, 0.0, 0.0]
    assert pd.isna(by_axis[("leaf2-spine2 down", "y")][2])  # no ECN-capable packets: no ratio, not 0 %
    assert list(figure.data[0].x) == [pd.Timestamp(T0 + timedelta(seconds=s)) for s in (0, 2, 4, 6)]
    assert {name for name, _ in by_axis} == {"leaf2-spine2 down", "leaf3-spine1 up"}
    quiet = figures.congestion_series(bins[bins["link"] == "leaf1-spine1"], 2.0, T0, end, colours)
    assert quiet.data == ()
    # A link keeps its colour whichever links the window shows.
    alone = figures.congestion_series(bins[bins["link"] == "leaf3-spine1"], 2.0, T0, end, colours,
                                      link="leaf3-spine1")
    assert {t.line.color for t in alone.data} == {t.line.color for t in figure.data if t.name == "leaf3-spine1 up"}
    assert len(set(colours.values())) == len(colours)


def test_recovery_timeline_and_flows_in_ms_from_the_failure() -> None:
    failed = T0 + timedelta(seconds=30, microseconds=123_456)
    events = pd.DataFrame([(failed, "leaf1-spine1", 3.4, 1.2, 3.4, 8, 8, 12, "leaf1-spine1@x")],
                          columns=["ts", "link", "convergence_ms", "local_convergence_ms", "remote_convergence_ms",
                                   "flows_affected", "flows_recovered", "packets_lost", "token"])
    ongoing = pd.DataFrame([(failed + timedelta(seconds=5), "leaf2-spine2", None, None, None, 0, 0, 0, "l2@y")],
                           columns=events.columns)
    timeline = figures.recovery_timeline(pd.concat([ongoing, events]), T0, T0 + timedelta(minutes=1),
                                         selected="leaf1-spine1@x")
    traces = {t.name: t for t in timeline.data}
    assert list(traces["local"].y)[1:] == [1.2] and list(traces["remote"].y)[1:] == [3.4]
    assert list(traces["convergence"].text)[1:] == ["leaf1-spine1 3.400 ms"]
    assert list(traces["convergence"].customdata)[1] == "leaf1-spine1@x"
    assert list(traces["not converged"].text) == ["leaf2-spine2 not converged"]
    rows = pd.DataFrame([
        ("flow 1", "leaf1-spine1", "up", failed - timedelta(milliseconds=900), failed, 100),
        ("flow 1", "leaf1-spine2", "up", failed + timedelta(microseconds=1200), failed + timedelta(seconds=1), 90),
    ], columns=["flow", "link", "direction", "ts_start", "ts_end", "packets"])
    chart = figures.recovery_flows(rows, failed.replace(tzinfo=UTC), "leaf1-spine1", 1.2, 3.4,
                                   figures.link_colours(TOPOLOGY.link_ids()))
    segments = {t.name: [x for x in t.x if x is not None] for t in chart.data}
    assert segments["on leaf1-spine1"] == pytest.approx([-900.0, 0.0])
    assert segments["on leaf1-spine2"] == pytest.approx([1.2, 1000.0])
    assert [shape.x0 for shape in chart.layout.shapes] == pytest.approx([0.0, 1.2, 3.4])
    assert chart.data[-1].line.color == figures.FAILED_LINK_COLOUR  # drawn on top


def test_a_burst_of_failures_labels_its_slowest_and_leaves_the_rest_to_hover() -> None:
    """Six failures within 2 s of a 1-minute window (labels of 1/8 of the width apart): one label, the slowest;
    one 30 s later gets its own."""
    times = [T0 + timedelta(milliseconds=300 * n) for n in range(6)] + [T0 + timedelta(seconds=30)]
    events = pd.DataFrame([(ts, f"leaf{n}-spine1", 1.0 + n, 1.0, 1.0 + n, 4, 4, 0, f"t{n}")
                           for n, ts in enumerate(times)],
                          columns=["ts", "link", "convergence_ms", "local_convergence_ms", "remote_convergence_ms",
                                   "flows_affected", "flows_recovered", "packets_lost", "token"])
    events.loc[6, "convergence_ms"] = 0.5
    timeline = figures.recovery_timeline(events, T0, T0 + timedelta(minutes=1))
    text = list(next(t for t in timeline.data if t.name == "convergence").text)
    assert [label for label in text if label] == ["leaf5-spine1 6.000 ms", "leaf6-spine1 0.500 ms"]


def test_flow_explorer_charts_carry_the_bytes() -> None:
    talkers = pd.DataFrame([("10.0.1.1", "10.0.3.1", 500, 5), ("10.0.2.1", "10.0.4.1", 900, 9)],
                           columns=["src", "dst", "bytes", "packets"])
    bars = figures.top_talkers(talkers).data[0]
    assert list(bars.y) == ["10.0.1.1 → 10.0.3.1", "10.0.2.1 → 10.0.4.1"] and list(bars.x) == [500, 900]
    mix = pd.DataFrame([("rocev2", "collective", 800), ("rocev2", "p2p", 100), ("tls", "interactive", 5)],
                       columns=["app", "traffic_class", "bytes"])
    stacked = {t.name: dict(zip(t.y, t.x, strict=True)) for t in figures.traffic_mix(mix).data}
    assert stacked == {"collective": {"rocev2": 800}, "interactive": {"tls": 5}, "p2p": {"rocev2": 100}}


def test_empty_frames_give_a_titled_blank_chart() -> None:
    empty = pd.DataFrame(columns=["job", "ts", "iteration", "allreduce_ms"])
    figure = figures.iteration_times(empty, pd.DataFrame(columns=["job", "ts", "ts_end", "summary"]), T0, T0)
    assert figure.data == () and "no collective iterations" in figure.layout.annotations[0].text


def test_incidents_are_marked_on_every_row_of_a_time_series() -> None:
    bins = pd.DataFrame([(T0, "leaf2-spine2", "down", 1000, 250, 40, 6)],
                        columns=["t", "link", "direction", "roce_ect", "roce_ce", "cnp", "pfc_pause"])
    series = figures.congestion_series(bins, 2.0, T0, T0 + timedelta(seconds=6), figures.link_colours(["x"]))
    incidents = pd.DataFrame([
        ("congestion", T0 + timedelta(seconds=1), T0 + timedelta(seconds=3), "leaf2-spine2"),
        ("fast_recovery", T0 + timedelta(seconds=4), T0 + timedelta(seconds=4), "leaf3-spine1"),
        ("collective_slowdown", T0, T0 + timedelta(seconds=5), ""),
    ], columns=["kind", "ts", "ts_end", "link"])
    marked = figures.mark_incidents(series, incidents)
    shapes = {shape.name: shape for shape in marked.layout.shapes}
    assert set(shapes) == {"congestion leaf2-spine2", "fast_recovery leaf3-spine1"}
    assert (shapes["congestion leaf2-spine2"].type, shapes["congestion leaf2-spine2"].yref) == ("rect", "paper")
    assert shapes["fast_recovery leaf3-spine1"].x0 == T0 + timedelta(seconds=4)
    blank = figures.empty("t", "nothing")
    assert figures.mark_incidents(blank, incidents).layout.shapes == ()


def test_a_quiet_fabric_reads_in_plain_percentages_and_widths_follow_its_load() -> None:
    frame = health([("leaf1-spine1", "up", 0.00092, {}), ("leaf1-spine2", "up", 0.00046, {}),
                    ("leaf2-spine1", "up", 0.0000004, {})])
    figure = figures.fabric_map(frame, leaves_frame(TOPOLOGY), pd.DataFrame(columns=["leaf", "hosts"]))
    labels = next(t for t in figure.data if t.name == "links")
    shown = dict(zip(labels.customdata, labels.text, strict=True))
    assert (shown["leaf1-spine1"], shown["leaf1-spine2"], shown["leaf2-spine1"]) == ("0.092%", "0.046%", "<0.001%")
    widths = {t.meta["link"]: t.line.width for t in figure.data if t.meta}
    assert widths["leaf1-spine1"] == figures.MAX_WIDTH
    assert widths["leaf1-spine2"] == pytest.approx((figures.MIN_WIDTH + figures.MAX_WIDTH) / 2)
    assert "the widest 0.092% of link speed" in figure.layout.title.text
    heatmap = figures.ecmp_heatmap(frame, "util", "utilisation")
    assert heatmap.data[0].zmax == pytest.approx(0.092)
    assert "full scale<br>0.092%" in heatmap.data[0].colorbar.title.text
    assert "e-" not in " ".join(str(v) for v in heatmap.data[0].text.flatten())


def test_a_1024_link_fabric_map_names_its_worst_links_and_draws_one_trace_per_status(tmp_path: Path) -> None:
    topology = Fabric(FabricSpec(name="big", leaves=64, spines=16)).write_topology(tmp_path / "big.yaml",
                                                                                   mirrored=False)
    links = links_frame(topology)
    rng = pd.Series(range(len(links))) % 97 / 97
    frame = link_health(links, traffic([(link, "up", float(share) * 0.5, {})
                                        for link, share in zip(links["link"], rng, strict=True)]),
                        NO_COUNTERS, pd.DataFrame([("leaf7-spine3", T0, None, 0, 1)],
                                                  columns=["link", "last_down", "last_up", "congestion_events",
                                                           "failures"]), SPAN_S)
    figure = figures.fabric_map(frame, leaves_frame(topology), pd.DataFrame(columns=["leaf", "hosts"]))
    lines = [t for t in figure.data if t.meta]
    assert len(lines) <= len(STATUSES) and sum(len(t.meta["links"]) for t in lines) == 1024
    labels = next(t for t in figure.data if t.name == "links")
    at = {link: (x, y) for link, x, y in zip(labels.customdata, labels.x, labels.y, strict=True)}
    named = [link for link, text in zip(labels.customdata, labels.text, strict=True) if text]
    worst = worst_first(frame)["link"].tolist()
    assert worst[0] == "leaf7-spine3" and frame.set_index("link").loc[worst[1], "util"] == frame["util"].max()
    assert len(labels.customdata) == 1024 and 6 <= len(named) <= figures.LABELLED_LINKS
    assert worst[0] in named and set(named) <= set(worst[:len(worst) // 2])
    # Each label named is the worst of those near it: no two within a label's width and height.
    assert all(abs(at[a][0] - at[b][0]) > 64 / 7 or abs(at[a][1] - at[b][1]) > figures.LABEL_HEIGHT
               for a in named for b in named if a != b)
    leaf_names = next(t for t in figure.data if t.name == "leaves").text
    assert sum(1 for name in leaf_names if name) <= figures.MAX_NAMED_SWITCHES
    heatmap = figures.ecmp_heatmap(frame, "util", "utilisation").data[0]
    assert heatmap.texttemplate == "" and heatmap.z.shape == (64, 16) and "%{text}" in heatmap.hovertemplate
    small = health([("leaf1-spine1", "up", 0.1, {})])
    assert figures.ecmp_heatmap(small, "util", "utilisation").data[0].texttemplate == "%{text}"
