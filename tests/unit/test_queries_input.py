"""User input on its way to SQL: the URL state keeps only what validates, and every query's text is constant
whatever the user typed; the values travel as bound parameters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dashboards import queries
from dashboards.callbacks import sync_state
from dashboards.state import (
    MAX_SPAN,
    MIN_SPAN,
    ViewState,
    build_state,
    empty_note,
    event_token,
    from_query_string,
    read_window,
    to_query_string,
    window,
    window_payload,
    window_text,
)
from pipeline.topology import load_topology

LINKS = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml").link_ids()
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
HOSTILE = (
    "²", "٣", "' OR 1=1 --", "'; DROP TABLE flows; --", "leaf1-spine1' OR '1'='1", "{start:String}", "\\'", "\x00",
    "1e999", "../../etc/passwd", "<script>alert(1)</script>", "x" * 10_000, "%27%3B", "NaN", "-1",
    "9999999999999999999999", "2026-13-45T99:99:99", "leaf1-spine1@2026-01-01' --",
)


def test_a_shared_view_survives_the_round_trip() -> None:
    state = ViewState(live=False, start=T0, end=T0 + timedelta(minutes=3), link="leaf2-spine2", metric="ce",
                      app="rocev2", traffic_class="collective", job="job-a", host="10.0.1.7", port=4791,
                      event=event_token("leaf1-spine1", T0 + timedelta(microseconds=123_456)))
    assert from_query_string(to_query_string(state), LINKS) == state
    assert state.event_key() == ("leaf1-spine1", T0 + timedelta(microseconds=123_456))


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_fall_back_to_the_default(value: str) -> None:
    keys = ("live", "range", "from", "to", "link", "metric", "app", "class", "host", "port", "event")
    state = build_state(dict.fromkeys(keys, value), LINKS)
    assert state == ViewState(live=state.live)


def test_free_text_is_kept_bounded_and_printable_but_only_as_a_value() -> None:
    state = build_state({"job": "x') UNION SELECT 1--\x00\n" + "y" * 500}, LINKS)
    assert state.job.startswith("x') UNION SELECT 1--") and len(state.job) == 64 and "\x00" not in state.job


def test_history_ranges_are_bounded_and_ordered() -> None:
    too_long = build_state({"from": T0.isoformat(), "to": (T0 + MAX_SPAN * 2).isoformat()}, LINKS)
    backwards = build_state({"from": T0.isoformat(), "to": (T0 - timedelta(hours=1)).isoformat()}, LINKS)
    ok = build_state({"from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat(), "live": "1"}, LINKS)
    assert too_long.start is None and backwards.start is None
    assert (ok.start, ok.end, ok.live) == (T0, T0 + timedelta(hours=1), False)


def test_live_window_ends_at_the_newest_data_not_the_wall_clock() -> None:
    start, end = window(ViewState(range="1m"), T0, now=T0 + timedelta(days=3))
    assert end - T0 == timedelta(microseconds=1) and end - start == timedelta(minutes=1)
    assert window(ViewState(range="1m"), None, now=T0)[1] == T0


def test_with_nothing_recent_the_window_is_the_data_span_padded() -> None:
    capture = timedelta(milliseconds=260)
    start, end = window(ViewState(range="5m"), T0 + capture, now=T0 + timedelta(days=30), earliest=T0)
    pad = (capture + timedelta(microseconds=1)) * 0.02
    assert (start, end) == (T0 - pad, T0 + capture + timedelta(microseconds=1) + pad)
    tiny_start, tiny_end = window(ViewState(), T0, now=T0 + timedelta(days=1), earliest=T0)
    assert MIN_SPAN <= tiny_end - tiny_start <= MIN_SPAN + timedelta(microseconds=1) and tiny_start < T0 < tiny_end
    # Data older than the range before the newest record is not the view's: the range still bounds it.
    start, end = window(ViewState(range="1m"), T0, now=T0 + timedelta(days=1), earliest=T0 - timedelta(hours=2))
    assert end - start == timedelta(minutes=1)


def test_an_empty_table_says_so_with_the_filters_that_emptied_it() -> None:
    assert empty_note([{"link": "leaf1-spine1"}], "flows", link="") == ""
    assert empty_note([], "link failures", link="") == "No link failures in this window."
    assert empty_note([], "flows", link="leaf1-spine1", app="", traffic_class="bulk", port=None, job="") == \
        "No flows in this window with link leaf1-spine1, traffic class bulk."


def test_the_window_text_says_live_only_while_data_arrives() -> None:
    start, end = T0, T0 + timedelta(milliseconds=260, microseconds=1)
    arriving = window_text(ViewState(), start, end, end, now=end + timedelta(seconds=2))
    assert arriving == "2026-11-01 12:00:00.000 → 12:00:00.260 UTC · live"
    stale = window_text(ViewState(), start, end, T0, now=T0 + timedelta(days=33, hours=5))
    assert stale.endswith("· no data since 2026-11-01 12:00:00.000 UTC (33 days ago)") and "live" not in stale
    assert window_text(ViewState(), start, end, T0, now=T0 + timedelta(days=1, hours=2)).endswith("(1 day ago)")
    assert window_text(ViewState(), start, end, None, now=T0).endswith("· no data yet")
    history = window_text(ViewState(live=False), T0, T0 + timedelta(days=1), T0, now=T0)
    assert history == "2026-11-01 12:00:00.000 → 2026-11-02 12:00:00.000 UTC · history"


def test_window_data_from_the_browser_is_validated_again() -> None:
    payload = window_payload(ViewState(link="leaf1-spine1"), T0, T0 + timedelta(minutes=5))
    assert read_window(payload, LINKS) == (ViewState(link="leaf1-spine1"), T0, T0 + timedelta(minutes=5))
    assert read_window({**payload, "end": (T0 + timedelta(days=400)).isoformat()}, LINKS) is None
    assert read_window({**payload, "start": "'; DROP TABLE flows"}, LINKS) is None
    assert read_window("garbage", LINKS) is None
    assert read_window({**payload, "search": "?link=' OR 1=1"}, LINKS)[0].link == ""  # type: ignore[index]


@given(st.text(max_size=200))
def test_any_url_parses_without_error(search: str) -> None:
    state = from_query_string(search, LINKS)
    assert state.link in {"", *LINKS}
    assert from_query_string(to_query_string(state), LINKS) == state


KEYS = ("live", "range", "from", "to", "link", "metric", "app", "class", "job", "host", "port", "event")


@given(st.dictionaries(st.sampled_from(KEYS), st.one_of(st.text(max_size=80), st.integers(), st.none(),
                                                        st.booleans())))
def test_any_control_values_build_a_valid_state(values: dict[str, object]) -> None:
    state = build_state(values, LINKS)
    assert state.link in {"", *LINKS} and (state.port is None or 0 <= state.port <= 65535)
    assert len(state.job) <= 64 and state.job.isprintable()


def _all_queries(text: str) -> list[queries.Query]:
    start, end = T0, T0 + timedelta(minutes=5)
    flow_filter = queries.FlowFilter(link=text, app=text, traffic_class=text, job=text, host=text)
    return [
        *(queries.congestion_series(start, end, text, source) for source in queries.TRAFFIC_SOURCES),
        queries.iterations(start, end, text, text), queries.slowdowns(start, end, text),
        queries.congestion_events(start, end, text, text), queries.recovery_events(start, end, text),
        queries.recovery_event(text, start), queries.recovery_flows(text, start, 3.4),
        queries.top_talkers(start, end, flow_filter), queries.traffic_mix(start, end, flow_filter),
        *(queries.top_talkers(start, end, flow_filter, rollup) for rollup in queries.TALKER_ROLLUPS),
        *(queries.traffic_mix(start, end, flow_filter, queries.RAW_BINS, rollup) for rollup in queries.TALKER_ROLLUPS),
        queries.flow_table(start, end, flow_filter),
    ]


@pytest.mark.parametrize("value", HOSTILE[:6])
def test_query_text_never_holds_user_input(value: str) -> None:
    for plain, hostile in zip(_all_queries("job-a"), _all_queries(value), strict=True):
        assert hostile.sql == plain.sql
        assert value in hostile.parameters.values()
        assert value not in hostile.sql


def test_the_shown_query_lists_its_bound_values() -> None:
    query = queries.flow_table(T0, T0 + timedelta(minutes=1), queries.FlowFilter(link="leaf1-spine1", port=4791))
    shown = query.shown()
    assert shown.startswith(query.sql.strip())
    assert "--   link = 'leaf1-spine1'" in shown and "--   port = 4791" in shown


def test_traffic_source_by_span_age_and_what_the_store_has() -> None:
    everything = {source.table for source in queries.TRAFFIC_SOURCES}
    now = T0 + timedelta(minutes=10)

    def table(span: timedelta, tables: set[str] = everything, age: timedelta = timedelta()) -> str:
        return queries.traffic_source(T0 - age, T0 - age + span, now, tables).table

    assert table(timedelta(minutes=5)) == "link_bins"
    assert table(timedelta(hours=1)) == "link_stats_1s"
    assert table(timedelta(hours=1), age=timedelta(days=3)) == "flows_1m"
    assert table(timedelta(days=2)) == "flows_1m"
    assert table(timedelta(days=20)) == "flows_1h"
    assert table(timedelta(days=2), {"link_bins"}) == "link_bins"
    # Rows grow with the links read: 5 minutes of a 1,024-link fabric come from the 1-minute rollup, 5 s from
    # the raw bins, and one selected link reads as an 8-link fabric does.
    big = queries.traffic_source(T0, T0 + timedelta(minutes=5), now, everything, links=1024)
    assert big.table == "flows_1m"
    assert queries.traffic_source(T0, T0 + timedelta(seconds=5), now, everything, links=1024).table == "link_bins"
    assert queries.traffic_source(T0, T0 + timedelta(minutes=5), now, everything, links=1).table == "link_bins"
    assert queries.traffic_source(T0, T0 + timedelta(days=30), now, everything, links=1024).table == "flows_1h"


def test_traffic_mix_reads_a_rollup_unless_the_window_is_short_or_a_host_is_chosen() -> None:
    everything = {source.table for source in queries.TRAFFIC_SOURCES}
    start, end = T0, T0 + timedelta(minutes=30)
    source = queries.mix_source(start, end, end, everything)
    assert source.table == "flows_1m"
    assert queries.mix_source(start, start + timedelta(days=20), end, everything).table == "flows_1h"
    rolled = queries.traffic_mix(start + timedelta(seconds=20), end, queries.FlowFilter(app="rocev2"), source)
    assert "FROM flows_1m" in rolled.sql and rolled.parameters["start"] == queries.time_parameter(start)
    assert "host" not in rolled.parameters
    for raw in (queries.traffic_mix(start, end, queries.FlowFilter(host="10.0.1.1"), source),
                queries.traffic_mix(start, end, queries.FlowFilter(port=22), source),
                queries.traffic_mix(start, start + timedelta(minutes=1), queries.FlowFilter(), source)):
        assert raw.sql == queries.TRAFFIC_MIX_SQL


def test_top_talkers_read_a_rollup_unless_the_window_is_short_or_a_port_is_chosen() -> None:
    everything = {rollup.table for rollup in queries.TALKER_ROLLUPS}
    start, end = T0 + timedelta(seconds=20), T0 + timedelta(minutes=30)
    source = queries.talkers_source(start, end, end, everything)
    assert source is not None and source.table == "flows_talkers_1m"
    assert queries.talkers_source(start, start + timedelta(days=1), end, everything).table == "flows_talkers_1h"
    assert queries.talkers_source(start, end, end + timedelta(days=30), everything).table == "flows_talkers_1h"
    assert queries.talkers_source(start, end, end, set()) is None
    rolled = queries.top_talkers(start, end, queries.FlowFilter(host="10.0.1.1"), source)
    assert "FROM flows_talkers_1m" in rolled.sql and rolled.parameters["start"] == queries.time_parameter(T0)
    assert rolled.parameters["host"] == "10.0.1.1" and "port" not in rolled.parameters
    hourly = queries.top_talkers(start, end, queries.FlowFilter(), queries.TALKER_ROLLUPS[1])
    assert hourly.parameters["start"] == queries.time_parameter(T0.replace(minute=0))
    host_mix = queries.traffic_mix(start, end, queries.FlowFilter(host="10.0.1.1"), queries.RAW_BINS, source)
    assert "FROM flows_talkers_1m" in host_mix.sql and host_mix.parameters["host"] == "10.0.1.1"
    port_mix = queries.traffic_mix(start, end, queries.FlowFilter(host="10.0.1.1", port=22), queries.RAW_BINS, source)
    assert port_mix.sql == queries.TRAFFIC_MIX_SQL
    for raw in (queries.top_talkers(start, end, queries.FlowFilter(port=4791), source),
                queries.top_talkers(start, start + timedelta(minutes=2), queries.FlowFilter(), source),
                queries.top_talkers(start, end, queries.FlowFilter(), None)):
        assert raw.sql == queries.TOP_TALKERS_SQL and raw.parameters["start"] == queries.time_parameter(start)


def test_the_flow_table_reads_only_the_last_minute_of_any_window() -> None:
    end = T0 + timedelta(days=1)
    day = queries.flow_table(T0, end, queries.FlowFilter(app="rocev2"))
    assert day.parameters["start"] == queries.time_parameter(end - timedelta(minutes=1))
    assert day.parameters["end"] == queries.time_parameter(end) and day.parameters["app"] == "rocev2"
    assert "PREWHERE ts_start >=" in day.sql and f"LIMIT {queries.TABLE_ROWS}" in day.sql
    short = queries.flow_table(T0, T0 + timedelta(seconds=20), queries.FlowFilter())
    assert short.parameters["start"] == queries.time_parameter(T0)


def test_buckets_are_round_and_never_finer_than_a_bin() -> None:
    assert queries.bucket_ms(T0, T0 + timedelta(seconds=1)) == 10
    assert queries.bucket_ms(T0, T0 + timedelta(minutes=5)) == 1_000
    assert queries.bucket_ms(T0, T0 + timedelta(days=31)) == 21_600_000
    series = queries.congestion_series(T0, T0 + timedelta(minutes=1), "", queries.TRAFFIC_SOURCES[2])
    assert series.parameters["step_ms"] == 60_000


def test_switching_to_history_freezes_the_shown_window_in_the_url() -> None:
    topology = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml")
    shown = window_payload(ViewState(range="15m"), T0, T0 + timedelta(minutes=15))
    controls = ["history", "15m", "", "", "leaf1-spine2", "util", None, None, "", "", ""]
    out = sync_state("live", "", controls, None, None, None, None, "?live=1&range=15m", shown, topology, True)
    state = from_query_string(out[0], LINKS)
    assert (state.live, state.start, state.end, state.link) == (False, T0, T0 + timedelta(minutes=15), "leaf1-spine2")
    assert out[-1] is True  # the live tick stops
    back = sync_state("live", "", ["live", *controls[1:]], None, None, None, None, out[0], shown, topology, True)
    assert from_query_string(back[0], LINKS).start is None and back[-1] is False
