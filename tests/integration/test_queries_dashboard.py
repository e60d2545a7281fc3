"""The dashboard's queries and callbacks against the embedded engine holding a link-failure minute: what the
panels receive equals what was inserted, hostile input changes nothing and errors nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from dashboard_fabric import (
    BACKUP_LINK,
    BIN_BYTES_AT_FULL_SPEED,
    CONGESTED_LINK,
    CONGESTION_CE_RATIO,
    ERROR_LINK,
    FAILED_LINK,
    FCS_ERRORS,
    LOCAL_MS,
    PACKETS_LOST,
    REMOTE_MS,
    SECONDS,
    SLOW_MS,
    UTILISATION,
    Fabric,
    affected_flows,
    fill,
    flows,
    topology,
)

from dashboards import callbacks, queries
from dashboards.state import ViewState, from_query_string, window_payload
from pipeline import records
from pipeline.errors import StoreError
from pipeline.store import Store

pytestmark = pytest.mark.integration

HOSTILE = "x' OR '1'='1'; DROP TABLE flows; --"
# As the sink inserts: a repeated block is dropped from `flows` and from every view fed by the insert.
DEDUP = {"deduplicate_blocks_in_dependent_materialized_views": 1}


@pytest.fixture
def fabric(store: Store) -> Fabric:
    return fill(store)


def _around(fabric: Fabric) -> tuple[datetime, datetime]:
    return fabric.start, fabric.end + timedelta(seconds=1)


def test_link_traffic_counters_and_events_equal_the_rows(store: Store, fabric: Fabric) -> None:
    start, end = _around(fabric)
    traffic = queries.run(store, queries.link_traffic(start, end)).set_index(["link", "direction"])
    bins_before_failure = (fabric.fail - fabric.start) // timedelta(milliseconds=10) + 1
    assert traffic.loc[(FAILED_LINK, "up"), "bytes"] == bins_before_failure * int(
        UTILISATION[FAILED_LINK] * BIN_BYTES_AT_FULL_SPEED)
    assert traffic.loc[("leaf4-spine2", "down"), "bytes"] == SECONDS * 100 * int(
        UTILISATION["leaf4-spine2"] * BIN_BYTES_AT_FULL_SPEED)
    # The failure time is the last packet before the link fell silent (DESIGN section 6).
    assert pd.Timestamp(traffic.loc[(FAILED_LINK, "up"), "last_seen"]) == pd.Timestamp(fabric.fail).tz_localize(None)
    congested = traffic.loc[(CONGESTED_LINK, "down")]
    assert congested["pfc_pause"] == 5 * 100 * 3 and congested["cnp"] == 5 * 100 * 20

    counters = queries.run(store, queries.link_counters(start, end)).set_index("link")
    assert counters.loc[ERROR_LINK, "errors"] == FCS_ERRORS
    assert counters.loc[FAILED_LINK, "oper_up"] == 0 and counters.loc[BACKUP_LINK, "oper_up"] == 1

    events = queries.run(store, queries.link_events(start, end)).set_index("link")
    assert pd.Timestamp(events.loc[FAILED_LINK, "last_down"]) == pd.Timestamp(fabric.fail).tz_localize(None)
    assert events.loc[CONGESTED_LINK, "congestion_events"] == 1


def test_rollup_sources_agree_with_the_raw_flows(store: Store, fabric: Fabric) -> None:
    start, end = _around(fabric)
    raw = store.query("SELECT link, direction, sum(bytes) FROM flows GROUP BY link, direction").rows
    expected = {(link, direction): total for link, direction, total in raw}
    for source in queries.TRAFFIC_SOURCES[1:]:
        rolled = queries.run(store, queries.link_traffic(start - timedelta(hours=1), end, source))
        got = {(r.link, r.direction): r.bytes for r in rolled.itertuples() if r.bytes}
        assert got == expected, source.table
        pfc = rolled.set_index(["link", "direction"]).loc[(CONGESTED_LINK, "down"), "pfc_pause"]
        assert pfc == 5 * 100 * 3, source.table


def test_congestion_series_and_iterations(store: Store, fabric: Fabric) -> None:
    start, end = _around(fabric)
    series = queries.run(store, queries.congestion_series(start, end, CONGESTED_LINK))
    assert set(series["link"]) == {CONGESTED_LINK}
    ratio = (series["roce_ce"] / series["roce_ect"]).max()
    assert ratio == pytest.approx(CONGESTION_CE_RATIO, rel=1e-3)
    assert series["cnp"].sum() == 5 * 100 * 20
    # Unfiltered: the SERIES_LINES link directions with the most marks, then the most RoCE, read off the bins.
    everything = queries.run(store, queries.congestion_series(start, end, ""))
    ranked = store.query(
        "SELECT link, direction FROM link_bins WHERE link != '' GROUP BY link, direction"
        " HAVING sum(roce_ect) + sum(cnp) + sum(pfc_pause) > 0"
        " ORDER BY sum(roce_ce) + sum(cnp) + sum(pfc_pause) DESC, sum(roce_ect) DESC, link, direction"
        f" LIMIT {queries.SERIES_LINES}").rows
    drawn_before = store.query("SELECT uniqExact(link, direction) FROM link_bins WHERE link != ''"
                               " AND roce_ect + cnp + pfc_pause > 0").rows[0][0]
    assert drawn_before > len(ranked) == queries.SERIES_LINES and ranked[0] == (CONGESTED_LINK, "down")
    assert set(zip(everything["link"], everything["direction"], strict=True)) == set(ranked)

    short = (fabric.congestion[0] - timedelta(seconds=5), fabric.congestion[1] + timedelta(seconds=5))
    iterations = queries.run(store, queries.iterations(*short, "job-a", ""))
    assert len(iterations) == 30  # one per 500 ms iteration: buckets are finer than the period
    assert sorted(set(iterations["allreduce_ms"])) == [12.0, SLOW_MS]
    through = queries.run(store, queries.iterations(start, end, "", FAILED_LINK))
    assert set(through["job"]) == {"job-b"}
    slowdowns = queries.run(store, queries.slowdowns(start, end, ""))
    assert list(slowdowns["job"]) == ["job-a"]


def test_recovery_event_and_its_flows_moving_links(store: Store, fabric: Fabric) -> None:
    start, end = _around(fabric)
    events = queries.run(store, queries.recovery_events(start, end, ""))
    event = events.iloc[0]
    assert (event["link"], event["local_convergence_ms"], event["remote_convergence_ms"]) == (
        FAILED_LINK, LOCAL_MS, REMOTE_MS)
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (8, 8, PACKETS_LOST)
    rows = queries.run(store, queries.recovery_flows(FAILED_LINK, fabric.fail, REMOTE_MS))
    assert rows["flow"].nunique() == len(affected_flows())
    failed_at = pd.Timestamp(fabric.fail).tz_localize(None)
    for _, flow in rows.groupby("flow"):
        back = flow[flow["link"] == BACKUP_LINK]["ts_start"].min()
        delay_ms = (pd.Timestamp(back) - failed_at).total_seconds() * 1000
        expected = LOCAL_MS if flow["direction"].iloc[0] == "up" else REMOTE_MS
        assert delay_ms == pytest.approx(expected, abs=1e-3)
        assert flow[flow["link"] == FAILED_LINK]["ts_end"].max() == failed_at


def test_the_recovery_view_opens_on_the_newest_failure_that_converged(store: Store, fabric: Fabric) -> None:
    later = fabric.fail + timedelta(seconds=10)
    store.insert_rows("events", [(later, later, "fast_recovery", "critical", ERROR_LINK, "", "leaf3", "",
                                  "silent, not converged yet", None, None, None, 0, 0, 0, None, "{}",
                                  "open-failure", "open", later)],
                      column_names=records.column_names("events"))
    window = window_payload(ViewState(), *_around(fabric))
    timeline, rows, _, flows, empty, status = callbacks.recovery_view(store, topology(), window)
    assert status == empty == "" and [row["link"] for row in rows] == [ERROR_LINK, FAILED_LINK]
    assert "not converged" in {trace.name for trace in timeline.data}
    assert flows.layout.title.text == f"Flows leaving {FAILED_LINK}"


def test_flow_explorer_filters_and_hostile_values(store: Store, fabric: Fabric) -> None:
    start, end = _around(fabric)
    total = store.query("SELECT sum(bytes) FROM flows").rows[0][0]
    everything = queries.run(store, queries.traffic_mix(start, end, queries.FlowFilter()))
    assert everything["bytes"].sum() == total
    for source in (s for s in queries.TRAFFIC_SOURCES if s.table in queries.MIX_ROLLUPS):
        rolled = queries.run(store, queries.traffic_mix(start, end, queries.FlowFilter(), source))
        assert rolled.set_index(["app", "traffic_class"])["bytes"].to_dict() == everything.set_index(
            ["app", "traffic_class"])["bytes"].to_dict(), source.table
    by_host = queries.run(store, queries.flow_table(start, end, queries.FlowFilter(host="10.0.1.1")))
    assert set(by_host["src"]) == {"10.0.1.1"} and set(by_host["link"]) == {FAILED_LINK, BACKUP_LINK}
    by_port = queries.run(store, queries.flow_table(start, end, queries.FlowFilter(port=4420)))
    assert list(by_port["app"]) == ["nvme-tcp"]
    talkers = queries.run(store, queries.top_talkers(start, end, queries.FlowFilter(app="rocev2")))
    assert talkers.iloc[0]["src"] == "10.0.2.5"
    hostile = queries.FlowFilter(link=HOSTILE, app=HOSTILE, traffic_class=HOSTILE, job=HOSTILE, host=HOSTILE)
    assert queries.run(store, queries.flow_table(start, end, hostile)).empty
    assert store.query("SELECT count() FROM flows").rows[0][0] > 0


def _pairs(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int]]:
    return {(r.src, r.dst): (int(r.bytes), int(r.packets)) for r in frame.itertuples()}


def test_talker_rollups_equal_raw_flows_after_a_duplicate_insert(store: Store) -> None:
    fabric = Fabric(start=datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1),
                    fail=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=59, seconds=30))
    rows = flows(fabric)
    for token in ("range-1", "range-1", "range-2"):
        part = rows if token == "range-1" else rows.slice(0, 7)
        store.insert_arrow("flows", part, settings={**DEDUP, "insert_deduplication_token": token})
    raw_totals = store.query("SELECT count(), sum(packets), sum(bytes) FROM flows").rows[0]
    assert raw_totals[0] == rows.num_rows + 7
    keys = "link, app, traffic_class, job, src_ip, dst_ip"
    by_key = f"SELECT {keys}, sum(flows) AS flows, sum(packets), sum(bytes) FROM {{table}} GROUP BY {keys}"
    expected = store.query(f"SELECT {keys}, count(), sum(packets), sum(bytes) FROM flows GROUP BY {keys}").rows
    start, end = fabric.start - timedelta(minutes=5), fabric.end + timedelta(seconds=1)
    # Filters that keep at most TOP_TALKERS pairs, so that no tie decides which pairs are shown.
    selections = (queries.FlowFilter(traffic_class="interactive"),
                  queries.FlowFilter(app="rocev2", traffic_class="collective"),
                  queries.FlowFilter(link=FAILED_LINK, job="job-b"), queries.FlowFilter(host="10.0.1.1"))
    for rollup in queries.TALKER_ROLLUPS:
        assert sorted(store.query(by_key.format(table=rollup.table)).rows) == sorted(expected), rollup.table
        for selection in selections:
            raw = queries.run(store, queries.top_talkers(start, end, selection))
            query = queries.top_talkers(start, end, selection, rollup)
            assert rollup.table in query.sql
            rolled = queries.run(store, query)
            assert not raw.empty and _pairs(rolled) == _pairs(raw), (rollup.table, selection)
        host = queries.FlowFilter(host="10.0.1.1")
        mix = queries.traffic_mix(start, end, host, queries.RAW_BINS, rollup)
        assert rollup.table in mix.sql
        raw_mix = _mix(queries.run(store, queries.traffic_mix(start, end, host)))
        assert raw_mix and _mix(queries.run(store, mix)) == raw_mix, rollup.table


def _mix(frame: pd.DataFrame) -> dict[tuple[str, str], tuple[int, int, int]]:
    return {(r.app, r.traffic_class): (int(r.bytes), int(r.packets), int(r.rows)) for r in frame.itertuples()}


def test_every_dashboard_query_is_read_only(store: Store, fabric: Fabric) -> None:
    before = store.query("SELECT count() FROM events").rows
    with pytest.raises(StoreError, match="readonly"):
        queries.run(store, queries.Query("INSERT INTO events (kind) VALUES ({kind:String})", {"kind": "x"}))
    assert store.query("SELECT count() FROM events").rows == before


def _views() -> list[Callable[..., list[object]]]:
    return [callbacks.fabric_view, callbacks.congestion_view, callbacks.recovery_view, callbacks.flows_view]


def test_callbacks_as_functions_with_hostile_input(store: Store, fabric: Fabric) -> None:
    topo = topology()
    controls = ["history", "9y", HOSTILE, "2026-99-99", HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE, HOSTILE,
                "99999999"]
    clicks = {"points": [{"customdata": HOSTILE}]}
    for trigger in ("url", "live", "range", "from", "link", "job", "fabric-map", "recovery-timeline",
                    "recovery-table"):
        out = callbacks.sync_state(trigger, f"?{HOSTILE}&link={HOSTILE}", controls, clicks, clicks, [7, "x"],
                                   [{"token": HOSTILE}], HOSTILE, {"start": HOSTILE}, topo, True)
        state = from_query_string(out[0], topo.link_ids())
        assert (state.link, state.app, state.traffic_class, state.host, state.port, state.event, state.start) == (
            "", "", "", "", None, "", None), trigger
        assert state.job in ("", HOSTILE), trigger  # free text, only ever bound
    window, _ = callbacks.resolve_window(store, topo, f"?link={HOSTILE}", None, True)
    assert isinstance(window, dict)
    for view in _views():
        result = view(store, topo, window)
        assert result[-1] == "", view.__name__
        garbage = view(store, topo, {"start": HOSTILE, "end": "1e999", "search": HOSTILE})
        assert garbage[-1] == callbacks.NO_WINDOW
    assert store.query("SELECT count() FROM flows").rows[0][0] > 0


def test_a_clicked_link_filters_every_section(store: Store, fabric: Fabric) -> None:
    topo = topology()
    out = callbacks.sync_state("fabric-map", "", ["live", "5m", "", "", None, "util", None, None, "", "", ""],
                               {"points": [{"customdata": ERROR_LINK}]}, None, None, None, "?live=1", None, topo,
                               True)
    assert out[0] == f"?live=1&link={ERROR_LINK}"
    window = window_payload(ViewState(link=ERROR_LINK), *_around(fabric))
    rows = callbacks.flows_view(store, topo, window)[2]
    assert rows and {row["link"] for row in rows} == {ERROR_LINK}
    recovery = callbacks.recovery_view(store, topo, window)
    assert recovery[1] == [] and recovery[4] == f"No link failures in this window with link {ERROR_LINK}."
    again = callbacks.sync_state("fabric-map", "", ["live", "5m", "", "", ERROR_LINK, "util", None, None, "", "",
                                                    ""], {"points": [{"customdata": ERROR_LINK}]}, None, None, None,
                                 out[0], None, topo, True)
    assert again[0] == "?live=1"


def test_a_store_without_tables_shows_the_error_in_the_sections(store_factory: Callable[..., Store]) -> None:
    empty = store_factory(migrated=False)
    now = datetime.now(UTC)
    window = window_payload(ViewState(), now - timedelta(minutes=5), now)
    for view in _views():
        assert "UNKNOWN_TABLE" in str(view(empty, topology(), window)[-1]), view.__name__


def _data_span(store: Store) -> tuple[datetime, datetime]:
    """First and last record time of the fabric's minute, read straight from the tables."""
    first, last = store.query(
        "SELECT least((SELECT min(ts_start) FROM flows), (SELECT min(ts) FROM link_bins)),"
        " greatest((SELECT max(ts_start) FROM flows), (SELECT max(ts) FROM link_bins))").rows[0]
    return pd.Timestamp(first).tz_localize(UTC).to_pydatetime(), pd.Timestamp(last).tz_localize(UTC).to_pydatetime()


def test_an_old_capture_fills_the_window_and_is_not_called_live(store: Store, fabric: Fabric) -> None:
    topo = topology()
    first, last = _data_span(store)
    payload, text = callbacks.resolve_window(store, topo, "?live=1&range=15m", None, True)
    span = last + timedelta(microseconds=1) - first
    assert datetime.fromisoformat(payload["start"]) == first - span * 0.02
    assert datetime.fromisoformat(payload["end"]) == last + timedelta(microseconds=1) + span * 0.02
    assert "· no data since" in text and "live" not in text
    # The same store seen while its data arrives: the chosen range ending at the newest record, live.
    payload, text = callbacks.resolve_window(store, topo, "?live=1&range=15m", None, True,
                                             now=last + timedelta(seconds=3))
    assert datetime.fromisoformat(payload["end"]) - datetime.fromisoformat(payload["start"]) == timedelta(minutes=15)
    assert text.endswith("UTC · live")


def test_zoom_to_data_fits_the_window_to_its_records(store: Store, fabric: Fabric) -> None:
    topo = topology()
    first, last = _data_span(store)
    wide = window_payload(ViewState(range="6h"), first - timedelta(hours=2), last + timedelta(hours=3))
    zoom = callbacks.zoom_span(store, topo, wide)
    span = last + timedelta(microseconds=1) - first
    assert zoom == (first - span * 0.02, last + timedelta(microseconds=1) + span * 0.02)
    out = callbacks.sync_state("zoom-data", "", ["live", "6h", "", "", None, "util", None, None, "", "", ""],
                               None, None, None, None, "?live=1&range=6h", wide, topo, True, zoom)
    state = from_query_string(out[0], topo.link_ids())
    assert (state.live, state.start, state.end) == (False, *zoom)
    # A window holding nothing zooms to the newest data.
    empty = window_payload(ViewState(range="6h"), last + timedelta(days=1), last + timedelta(days=2))
    assert callbacks.zoom_span(store, topo, empty) == zoom


def test_an_old_capture_is_drawn_from_the_raw_bins(store: Store, fabric: Fabric) -> None:
    """Retention counts from arrival: a capture from months ago replayed today is drawn at 10 ms from the raw
    bins, not as one hourly point an hour before the window."""
    topo = topology()
    first, last = _data_span(store)
    window = window_payload(ViewState(), first, last + timedelta(microseconds=1))
    series = callbacks.congestion_view(store, topo, window, now=last + timedelta(days=300))[1]
    times = [pd.Timestamp(x).tz_localize(UTC) for trace in series.data if trace.x is not None for x in trace.x]
    assert times and min(times) >= pd.Timestamp(first).floor("10ms") and len(set(times)) > 2


def test_search_finds_hosts_and_jobs_of_the_window_heaviest_first(store: Store, fabric: Fabric) -> None:
    topo = topology()
    start, end = _around(fabric)
    window = window_payload(ViewState(), start, end)
    expected = store.query(
        "SELECT ip, sum(bytes) AS b FROM (SELECT arrayJoin([replaceRegexpOne(IPv6NumToString(src_ip), '^::ffff:', ''),"
        " replaceRegexpOne(IPv6NumToString(dst_ip), '^::ffff:', '')]) AS ip, bytes FROM flows)"
        " WHERE startsWith(ip, '10.0.2.') GROUP BY ip ORDER BY b DESC LIMIT 8").rows
    assert len(expected) >= 3
    found = queries.run(store, queries.search(start, end, "10.0.2.", 8))
    hosts = found[found["kind"] == "host"]
    assert [(row.value, row.bytes) for row in hosts.itertuples()] == [tuple(row) for row in expected]
    text = callbacks.search_view(store, topo, "JOB-", window)
    assert text.startswith("**jobs**: [job-a](") and "[job-b](" in text and "**hosts**" not in text
    # An address finds its leaf's links and the host itself; following a job link filters the flow table by it.
    by_address = callbacks.search_view(store, topo, "10.0.2.5", window)
    assert by_address.startswith("**links**: [leaf2-spine1]") and "**hosts**: [10.0.2.5](" in by_address
    job_link = text.split("[job-a](", 1)[1].split(")", 1)[0]
    state = from_query_string(job_link, topo.link_ids())
    rows = callbacks.flows_view(store, topo, window_payload(state, start, end))[2]
    assert rows and {row["job"] for row in rows} == {"job-a"}
    assert callbacks.search_view(store, topo, HOSTILE, window) == \
        f"Nothing in this window matches “{HOSTILE}” (links, hosts or jobs)."
