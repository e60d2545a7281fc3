"""Counter and traffic reports of the same outage become one link_down and one link_up; brief traffic-seen
outages are flaps."""

from __future__ import annotations

import json

from pipeline.detect.events import Event, event_us, latest_rows, make_event
from pipeline.detect.link_status import LinkStatus, LinkStatusConfig

T0 = 1_767_225_600_000_000
MS = 1000


def counter_event(kind: str, ts: int, link: str = "leaf1-spine1") -> Event:
    return make_event(kind, ts=ts, ts_end=ts, severity="info", link=link, device="leaf1", summary=kind)


def failure(ts: int, back: int | None, link: str = "leaf1-spine1", flows_affected: int = 3) -> Event:
    return make_event("fast_recovery", ts=ts, ts_end=ts, severity="warning", link=link, device="leaf1",
                      summary="failed", flows_affected=flows_affected, details={"link_back_us": back})


def kinds(events: list[Event]) -> list[tuple[str, int]]:
    return [(str(e["kind"]), int(e["ts"].astype("int64"))) for e in events]


def test_counter_report_first_then_traffic_gives_one_down_and_one_up() -> None:
    """The counters' oper-down is written at once; the traffic's earlier failure time, known later, rewrites
    the same incident, which readers then see timed by the traffic."""
    status = LinkStatus()
    first = status.merge([counter_event("link_down", T0 + 77 * MS)])
    later = status.merge([failure(T0, T0 + 127 * MS), counter_event("link_up", T0 + 177 * MS)])
    assert kinds(first) == [("link_down", T0 + 77 * MS)]
    assert kinds(later) == [("fast_recovery", T0), ("link_down", T0), ("link_up", T0 + 127 * MS)]
    rewrite = later[1]
    assert rewrite["event_id"] == first[0]["event_id"] and rewrite["device"] == "leaf1"
    assert event_us(rewrite, "updated") > event_us(first[0], "updated")
    (down,) = [row for row in latest_rows(first + later) if row["kind"] == "link_down"]
    assert event_us(down, "ts") == T0
    assert [report["source"] for report in json.loads(down["details"])["reports"]] == ["counters", "traffic"]


def test_a_failure_that_cut_no_flow_does_not_retime_the_counters_down() -> None:
    """The soak's leaf3-spine2 at 08:09:56: the link was quiet between bursts, the counters' oper-down found
    the failure, and fast_recovery (no flow affected) is timed by the link's last packet, 163.8 ms before the
    fault. That packet shows the link up, not down: the link_down keeps the counters' time, and the traffic
    back on the link still gives its up."""
    status = LinkStatus()
    down = status.merge([counter_event("link_down", T0 + 164 * MS)])
    later = status.merge([failure(T0, T0 + 400 * MS, flows_affected=0)])
    assert kinds(later) == [("fast_recovery", T0), ("link_up", T0 + 400 * MS)]
    (row,) = [row for row in latest_rows(down + later) if row["kind"] == "link_down"]
    assert event_us(row, "ts") == T0 + 164 * MS


def test_a_later_report_of_a_transition_is_not_written_again() -> None:
    status = LinkStatus()
    status.merge([failure(T0, T0 + 500 * MS)])
    later = [counter_event("link_down", T0 + 77 * MS), counter_event("link_up", T0 + 577 * MS)]
    assert kinds(status.merge(later)) == []


def test_an_earlier_up_from_the_counters_retimes_the_up_and_makes_the_outage_a_flap() -> None:
    """The traffic sees the link back 270 ms after its failure (when flows return); the counters' on-change up
    says 60 ms: the link_up is rewritten and the outage is a flap after all."""
    status = LinkStatus()
    traffic = status.merge([failure(T0, T0 + 270 * MS)])
    counters = status.merge([counter_event("link_up", T0 + 60 * MS)])
    assert kinds(counters) == [("link_up", T0 + 60 * MS), ("link_flap", T0)]
    assert counters[0]["event_id"] == traffic[2]["event_id"]
    assert event_us(counters[1], "ts_end") == T0 + 60 * MS


def test_a_flap_is_retimed_with_its_outage() -> None:
    """The counters report a brief outage on change before the traffic's evidence of its earlier start is in:
    the flap they made is one incident, rewritten with the earlier down."""
    status = LinkStatus()
    counters = status.merge([counter_event("link_down", T0 + 20 * MS), counter_event("link_up", T0 + 60 * MS)])
    assert kinds(counters) == [("link_down", T0 + 20 * MS), ("link_up", T0 + 60 * MS), ("link_flap", T0 + 20 * MS)]
    traffic = status.merge([failure(T0, T0 + 90 * MS)])
    assert kinds(traffic) == [("fast_recovery", T0), ("link_down", T0), ("link_flap", T0)]
    flap = traffic[-1]
    assert flap["event_id"] == counters[-1]["event_id"] and flap["value"] == 60.0
    assert event_us(flap, "ts_end") == T0 + 60 * MS


def test_brief_outage_seen_only_in_traffic_is_down_up_and_flap() -> None:
    events = LinkStatus().merge([failure(T0, T0 + 25 * MS)])
    assert kinds(events) == [("fast_recovery", T0), ("link_down", T0), ("link_up", T0 + 25 * MS),
                             ("link_flap", T0)]
    flap = events[-1]
    assert int(flap["ts_end"].astype("int64")) == T0 + 25 * MS and flap["value"] == 25.0


def test_longer_outage_is_not_a_flap_and_an_unrepaired_one_has_no_up() -> None:
    status = LinkStatus(LinkStatusConfig(flap_max_ms=100))
    assert kinds(status.merge([failure(T0, T0 + 150 * MS)])) == [
        ("fast_recovery", T0), ("link_down", T0), ("link_up", T0 + 150 * MS)]
    assert kinds(status.merge([failure(T0 + 5000 * MS, None, link="leaf2-spine1")])) == [
        ("fast_recovery", T0 + 5000 * MS), ("link_down", T0 + 5000 * MS)]


def test_a_counter_flap_is_not_reported_twice() -> None:
    status = LinkStatus()
    counter_flap = make_event("link_flap", ts=T0 - 10 * MS, ts_end=T0 + 60 * MS, severity="critical",
                              link="leaf1-spine1", summary="flap")
    status.merge([counter_flap])
    assert "link_flap" not in [kind for kind, _ in kinds(status.merge([failure(T0, T0 + 25 * MS)]))]


def test_an_outage_the_counters_report_on_change_is_a_flap_when_brief() -> None:
    """gNMI ON_CHANGE reports a 60 ms outage that the traffic sees end only when the flows return, 270 ms later."""
    status = LinkStatus()
    events = status.merge([failure(T0, T0 + 270 * MS), counter_event("link_down", T0 + 100),
                           counter_event("link_up", T0 + 60 * MS)])
    assert kinds(events) == [("fast_recovery", T0), ("link_down", T0), ("link_up", T0 + 270 * MS),
                             ("link_up", T0 + 60 * MS), ("link_flap", T0)]
    assert events[2]["event_id"] == events[3]["event_id"]  # one incident, timed by the counters' earlier up
    flap = events[-1]
    assert (int(flap["ts"].astype("int64")), int(flap["ts_end"].astype("int64"))) == (T0, T0 + 60 * MS)


def test_the_traffics_reports_of_an_outage_merge_after_the_counters_reported_the_next_one() -> None:
    """A bulk replay (fuzzed soak, seed 2): the counters' reports of two outages 5.6 s apart come first; the
    traffic's failure of the first, known once its flows recovered, comes after them. Its down and up are
    the first outage's, rewritten under the same incidents, not two more."""
    status = LinkStatus()
    counters = status.merge([counter_event("link_down", T0 + 59 * MS), counter_event("link_up", T0 + 2059 * MS),
                             counter_event("link_down", T0 + 5659 * MS), counter_event("link_up", T0 + 7559 * MS)])
    traffic = status.merge([failure(T0, T0 + 2041 * MS)])
    assert kinds(traffic) == [("fast_recovery", T0), ("link_down", T0), ("link_up", T0 + 2041 * MS)]
    assert {str(e["event_id"]) for e in traffic[1:]} <= {str(e["event_id"]) for e in counters}
    rows = latest_rows(counters + traffic)
    assert sorted(kinds([row for row in rows if row["kind"] != "fast_recovery"])) == [
        ("link_down", T0), ("link_down", T0 + 5659 * MS), ("link_up", T0 + 2041 * MS), ("link_up", T0 + 7559 * MS)]
