"""Fast recovery on hand-built flow rows: exact convergence, flows and PSNs lost, and the edge cases."""

from __future__ import annotations

import ipaddress
import json
import tracemalloc
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest

from pipeline.detect.events import EVENT_COLUMNS, latest_rows
from pipeline.detect.fast_recovery import FastRecoveryConfig, FastRecoveryDetector, psn_skipped
from pipeline.detect.flowkey import describe
from pipeline.records import empty_columns
from pipeline.topology import load_topology

T0 = 1_700_000_000_000_000  # µs since the epoch
TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml")
MS = 1000


def ip(text: str) -> bytes:
    return ipaddress.IPv6Address(f"::ffff:{text}").packed


@dataclass(frozen=True)
class Flow:
    src: str
    dst: str
    qp: int
    acks: bool = False


F1 = Flow("10.0.1.1", "10.0.3.1", 101)
F2 = Flow("10.0.1.2", "10.0.4.1", 102)
F3 = Flow("10.0.2.1", "10.0.1.3", 103)  # into leaf1 from leaf2
F4 = Flow("10.0.1.4", "10.0.3.4", 104)
F5 = Flow("10.0.3.5", "10.0.4.5", 105)
ACKS = Flow("10.0.1.6", "10.0.2.6", 106, acks=True)  # ACKs of a QP: PSNs jump by coalescing, not loss


@dataclass(frozen=True)
class Row:
    flow: Flow
    link: str
    direction: str
    start: int
    end: int
    tail: int
    psn: tuple[int, int]
    packets: int | None


def row(flow: Flow, link: str, direction: str, start: int, end: int, *, tail: int | None = None,
        psn: tuple[int, int] = (0, 0), packets: int | None = None) -> Row:
    """A flow row; by default its 3rd-to-last packet is 300 µs before its last, and it holds 1000 packets."""
    return Row(flow, link, direction, start, end, end - 300 if tail is None else tail, psn, packets)


def batch(rows: list[Row]) -> dict[str, np.ndarray]:
    columns = empty_columns("flows", len(rows))
    for i, r in enumerate(rows):
        columns["link"][i], columns["direction"][i] = r.link, r.direction
        columns["leaf"][i], columns["spine"][i] = r.link.split("-")
        columns["src_ip"][i], columns["dst_ip"][i] = ip(r.flow.src), ip(r.flow.dst)
        columns["src_port"][i], columns["dst_port"][i], columns["proto"][i] = 49152, 4791, 17
        columns["roce_qp"][i] = r.flow.qp
        columns["ts_start"][i] = np.datetime64(r.start, "us")
        columns["ts_end"][i] = np.datetime64(r.end, "us")
        columns["ts_tail"][i] = np.datetime64(r.tail, "us")
        columns["psn_first"][i], columns["psn_last"][i] = r.psn
        columns["packets"][i] = (r.packets or 1000 if r.direction != "unknown"
                                 else (r.end - r.start) * 2 // (r.end - r.tail) + 1)
        columns["roce_ack" if r.flow.acks else "roce_write"][i] = 1000
    return columns


def counters(link: str, ts: int, up: bool) -> dict[str, np.ndarray]:
    columns = empty_columns("counters", 1)
    columns["ts"][0] = np.datetime64(ts, "us")
    columns["device"][0], columns["ifname"][0], columns["link"][0] = link.split("-")[0], "Ethernet49", link
    columns["oper_up"][0] = int(up)
    return columns


FAIL = T0 + 500 * MS  # last packet on leaf1-spine1


def before_failure() -> list[Row]:
    """Two export intervals on leaf1-spine1 (and F3 also crossing leaf2-spine1 upward)."""
    return [
        row(F1, "leaf1-spine1", "up", T0, T0 + 300 * MS, psn=(0, 500)),
        row(F1, "leaf1-spine1", "up", T0 + 300 * MS + 1, FAIL, psn=(501, 1000)),
        row(F2, "leaf1-spine1", "up", T0 + 300 * MS + 5, FAIL - 200, psn=(7000, 7300)),
        row(F3, "leaf1-spine1", "down", T0 + 300 * MS + 9, FAIL - 100, psn=(16_777_000, 16_777_200)),
        row(F3, "leaf2-spine1", "up", T0 + 300 * MS + 7, FAIL + 6 * MS, psn=(16_777_000, 16_777_210)),
        row(ACKS, "leaf1-spine1", "up", T0 + 300 * MS + 3, FAIL - 40, psn=(100, 4000)),
    ]


def after_failure(until: int) -> list[Row]:
    """Local convergence 1.4 ms (F1: 10 PSNs skipped, F2: 27), remote 6.2 ms (F3: PSN wraps, 0 skipped)."""
    return [
        row(F1, "leaf1-spine2", "up", FAIL + 1400, until, psn=(1011, 5000)),
        row(F2, "leaf1-spine2", "up", FAIL + 900, until, psn=(7328, 9000)),
        row(F3, "leaf2-spine2", "up", FAIL + 6100, until, psn=(16_777_211, 300)),
        row(F3, "leaf1-spine2", "down", FAIL + 6200, until, psn=(16_777_201, 300)),
        row(ACKS, "leaf1-spine2", "up", FAIL + 1100, until, psn=(4100, 9000)),
    ]


def only(events: list[dict[str, object]]) -> dict[str, object]:
    assert len(events) == 1, events
    return events[0]


def test_failure_measured_exactly_from_rows_split_across_batches() -> None:
    detector = FastRecoveryDetector()
    rows = before_failure() + after_failure(FAIL + 1500 * MS)
    assert detector.update(batch(rows[:2])) == []
    assert detector.update(batch(rows[2:6])) == []
    event = only(detector.update(batch(rows[6:])))
    assert tuple(event) == EVENT_COLUMNS
    assert event["kind"] == "fast_recovery" and event["link"] == "leaf1-spine1" and event["device"] == "leaf1"
    assert event["ts"] == np.datetime64(FAIL, "us")
    assert event["ts_end"] == np.datetime64(FAIL + 6200, "us")
    assert event["local_convergence_ms"] == pytest.approx(1.4)
    assert event["remote_convergence_ms"] == pytest.approx(6.2)
    assert event["convergence_ms"] == pytest.approx(6.2)
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (4, 4, 37)
    assert event["severity"] == "warning"
    details = json.loads(str(event["details"]))
    assert details["trigger"] == "silence" and details["spine"] == "spine1"
    assert {f["new_link"] for f in details["flows"]} == {"leaf1-spine2"}
    assert detector.flush() == []


def test_a_link_that_resumed_does_not_hold_back_a_failure_through_its_spine() -> None:
    """leaf3-spine1 looked silent when another collector's rows moved the watermark past its last row (a hole
    still being judged, which may be the far side of a failure of spine1), then its rows resumed and filled
    the hole: the leaf1-spine1 failure that follows is reported when its flows recovered, not held until
    the end of input (a big-fabric run's second collector missed its event this way)."""
    resumed = Flow("10.0.3.5", "10.0.4.5", 105)
    elsewhere = Flow("10.0.4.7", "10.0.3.7", 107)
    detector = FastRecoveryDetector()
    first = [row(resumed, "leaf3-spine1", "up", T0, FAIL - 100 * MS),
             row(elsewhere, "leaf4-spine2", "up", T0, FAIL - 40 * MS)]
    assert detector.update(batch(first)) == []
    until = FAIL + 1500 * MS
    rest = [row(resumed, "leaf3-spine1", "up", FAIL - 100 * MS + 1, until),
            row(elsewhere, "leaf4-spine2", "up", FAIL - 40 * MS + 1, until)]
    event = only(detector.update(batch(before_failure() + after_failure(until) + rest)))
    assert event["link"] == "leaf1-spine1" and event["ts"] == np.datetime64(FAIL, "us")
    assert event["local_convergence_ms"] == pytest.approx(1.4)
    assert event["remote_convergence_ms"] == pytest.approx(6.2)
    assert detector.flush() == []


def test_far_side_of_the_failed_spine_is_not_a_failure_of_its_own() -> None:
    detector = FastRecoveryDetector()
    events = detector.update(batch(before_failure() + after_failure(FAIL + 1500 * MS))) + detector.flush()
    assert [e["link"] for e in events] == ["leaf1-spine1"]


def test_flow_that_never_recovers_is_reported_after_the_timeout() -> None:
    detector = FastRecoveryDetector()
    stuck = row(F4, "leaf1-spine1", "up", T0 + 300 * MS, FAIL - 50, psn=(0, 99))
    opened = detector.update(batch([*before_failure(), stuck, *after_failure(FAIL + 1500 * MS)]))
    assert [e["state"] for e in opened] == ["open"]  # declared as soon as known, 4 of 5 flows back so far
    keep_going = [row(F1, "leaf1-spine2", "up", FAIL + 1500 * MS + 1, FAIL + 3100 * MS)]
    event = only(detector.update(batch(keep_going)))
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (5, 4, 37)
    assert event["local_convergence_ms"] == pytest.approx(1.4)
    assert event["severity"] == "critical"
    unrecovered = [f for f in json.loads(str(event["details"]))["flows"] if f["new_link"] is None]
    assert len(unrecovered) == 1 and unrecovered[0]["convergence_ms"] is None


def test_failure_at_the_very_start_of_the_capture() -> None:
    fail = T0 + 5 * MS
    rows = [
        row(F1, "leaf1-spine1", "up", T0, fail, tail=fail - 300, psn=(0, 40)),
        row(F2, "leaf1-spine1", "up", T0 + 10, fail - 20, tail=fail - 250, psn=(0, 30)),
        row(F1, "leaf1-spine2", "up", fail + 800, T0 + 1200 * MS, psn=(41, 900)),
        row(F2, "leaf1-spine2", "up", fail + 2100, T0 + 1200 * MS, psn=(33, 900)),
    ]
    event = only(FastRecoveryDetector().update(batch(rows)))
    assert event["ts"] == np.datetime64(fail, "us")
    assert event["local_convergence_ms"] == pytest.approx(2.1)
    assert event["remote_convergence_ms"] is None
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (2, 2, 2)


def test_failure_at_the_very_end_of_the_capture_is_reported_at_flush() -> None:
    detector = FastRecoveryDetector()
    rows = before_failure()[:4] + [r for r in after_failure(FAIL + 8 * MS) if r.link == "leaf1-spine2"]
    assert detector.update(batch(rows)) == []
    event = only(detector.flush())
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (3, 3, 37)
    assert event["convergence_ms"] == pytest.approx(6.2)


def test_two_failures_at_once_on_different_links() -> None:
    other = T0 + 500 * MS + 3
    rows = [
        *before_failure()[:4],
        row(F5, "leaf3-spine2", "up", T0, other, psn=(0, 10)),
        *after_failure(FAIL + 1500 * MS),
        row(F5, "leaf3-spine1", "up", other + 2500, FAIL + 1500 * MS, psn=(14, 20)),
    ]
    detector = FastRecoveryDetector()
    events = sorted(detector.update(batch(rows)) + detector.flush(), key=lambda e: str(e["link"]))
    assert [e["link"] for e in events] == ["leaf1-spine1", "leaf3-spine2"]
    assert events[0]["packets_lost"] == 37 and events[0]["convergence_ms"] == pytest.approx(6.2)
    assert events[1]["ts"] == np.datetime64(other, "us")
    assert events[1]["local_convergence_ms"] == pytest.approx(2.5)
    assert (events[1]["flows_affected"], events[1]["packets_lost"]) == (1, 3)


def test_oper_down_before_the_last_mirrored_packet_sets_the_failure_time() -> None:
    detector = FastRecoveryDetector()
    detector.observe_counters(counters("leaf1-spine1", FAIL - 500, up=False))
    event = only(detector.update(batch(before_failure()[:4] + after_failure(FAIL + 1500 * MS))))
    assert event["ts"] == np.datetime64(FAIL - 500, "us")
    assert event["local_convergence_ms"] == pytest.approx(1.9)
    assert json.loads(str(event["details"]))["trigger"] == "oper_down"


def test_oper_down_after_a_late_sessions_packet_retimes_the_failure_it_confirms() -> None:
    """leaf1-spine1's silence is a failure at F1's last packet. Then a BFD row arrives late (a live exporter
    sends a sparse flow's row long after) with a packet 0.3 ms later, and the counters report the link down
    at 1 ms: the same outage, one incident, now timed by that packet (a fuzzed soak with storage traffic,
    seed 101, live-paced: written twice, a silence and an oper-down 0.3 ms apart)."""
    detector = FastRecoveryDetector()
    clock = [row(F4, "leaf2-spine1", "up", T0, FAIL + 400 * MS)]
    events = detector.update(batch(before_failure()[:2] + after_failure(FAIL + 400 * MS)[:1] + clock))
    assert [(e["state"], e["ts"]) for e in events] == [("closed", np.datetime64(FAIL, "us"))]
    detector.observe_counters(counters("leaf1-spine1", FAIL + 1 * MS, up=False))
    events += detector.update(batch([control("leaf1-spine1", T0, FAIL + 300),
                                     row(F4, "leaf2-spine1", "up", FAIL + 400 * MS + 1, FAIL + 900 * MS)]))
    event = only(latest_rows(events + detector.flush()))
    assert (event["ts"], event["local_convergence_ms"]) == (np.datetime64(FAIL + 300, "us"), pytest.approx(1.1))


def test_a_keepalive_exported_late_is_the_links_last_packet_not_the_link_back() -> None:
    """The counters report leaf1-spine1 down and the failure is declared at F1's last packet. Then F1's row on
    spine2 arrives, and with it the row of the link's BGP session, exported at its idle timeout: one keepalive
    1.4 ms after F1's last packet, the one before it 2 s earlier. It is a sparse session's packet from before
    the failure, not the link carrying traffic again (a fuzzed soak with storage traffic, seed 122,
    live-paced: a link_up and a flap of 1.4 ms read from it)."""
    detector = FastRecoveryDetector()
    detector.observe_counters(counters("leaf1-spine1", FAIL + 50 * MS, up=False))
    events = detector.update(batch([*before_failure()[:2], row(F4, "leaf2-spine1", "up", T0, FAIL + 100 * MS)]))
    assert [e["state"] for e in events] == ["open"]
    moved = row(F1, "leaf1-spine2", "up", FAIL + 4 * MS, FAIL + 400 * MS, psn=(1011, 5000))
    bgp = row(Flow("10.254.0.1", "10.254.0.2", 0), "leaf1-spine1", "unknown", FAIL + 1400, FAIL + 1400,
              tail=FAIL + 1400 - 2000 * MS)
    events += detector.update(batch([moved, bgp, row(F4, "leaf2-spine1", "up", FAIL + 100 * MS + 1, FAIL + 900 * MS)]))
    event = only(latest_rows(events + detector.flush()))
    assert (event["ts"], json.loads(str(event["details"]))["link_back_us"]) == (np.datetime64(FAIL, "us"), None)


def test_oper_down_with_traffic_gone_reports_no_flow_recovered() -> None:
    detector = FastRecoveryDetector(FastRecoveryConfig(lateness_ms=100))
    detector.observe_counters(counters("leaf1-spine1", FAIL + 2 * MS, up=False))
    elsewhere = [row(F4, "leaf2-spine1", "up", T0, FAIL + 2200 * MS)]
    event = only(detector.update(batch(before_failure()[:4] + elsewhere)))
    assert event["ts"] == np.datetime64(FAIL, "us")
    assert (event["flows_affected"], event["flows_recovered"], event["convergence_ms"]) == (3, 0, None)


def test_traffic_that_just_stops_or_pauses_is_no_failure() -> None:
    detector = FastRecoveryDetector()
    pause_then_resume = [
        row(F1, "leaf1-spine1", "up", T0, FAIL, psn=(0, 1000)),
        row(F1, "leaf1-spine1", "up", FAIL + 300 * MS, FAIL + 600 * MS, psn=(1001, 2000)),
        row(F2, "leaf1-spine1", "up", T0, FAIL),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 4000 * MS),
    ]
    assert detector.update(batch(pause_then_resume)) == []
    assert detector.flush() == []


def test_psn_skipped_wraps_at_24_bits_and_ignores_a_step_back() -> None:
    last = np.array([100, 16_777_215, 16_777_210, 500])
    first = np.array([111, 4, 2, 480])
    assert psn_skipped(last, first).tolist() == [10, 4, 7, 0]


def test_oper_down_reported_after_the_traffic_showed_the_failure_is_the_same_failure() -> None:
    detector = FastRecoveryDetector()
    first = only(detector.update(batch(before_failure()[:4] + after_failure(FAIL + 1500 * MS))))
    detector.observe_counters(counters("leaf1-spine1", FAIL + 900 * MS, up=False))
    later = [row(F1, "leaf1-spine2", "up", FAIL + 1500 * MS + 1, FAIL + 2500 * MS)]
    assert detector.update(batch(later)) == []
    assert detector.flush() == []
    assert first["ts"] == np.datetime64(FAIL, "us")


def test_rows_of_one_export_interval_in_any_order_with_a_lateness_of_the_interval() -> None:
    """Rows exported once per 1 s epoch-aligned interval (an exporter that does not close rows at pauses), the
    new link's rows first: right when `lateness_ms` covers the interval."""
    second = T0 + 1000 * MS
    moved = [replace(r, end=second - 1, tail=second - 301) for r in after_failure(second)]
    interval_1 = [replace(r, start=second, end=second + 999 * MS, tail=second + 999 * MS - 300, psn=(0, 0))
                  for r in after_failure(second)]
    detector = FastRecoveryDetector(FastRecoveryConfig(lateness_ms=1000))
    assert detector.update(batch(moved)) == []
    assert detector.update(batch(before_failure()[:4])) == []
    event = only(detector.update(batch(interval_1)))
    assert event["ts"] == np.datetime64(FAIL, "us")
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (3, 3, 37)


def test_a_flow_still_sending_on_the_link_is_waited_for_before_a_hole_is_a_failure() -> None:
    """Rows in the order the collector closes them: F1's burst ended 50 ms before the failure and its next one
    went elsewhere, closed before F2's row, which ran on the link up to the failure, left the flow table."""
    detector = FastRecoveryDetector()
    assert detector.update(batch([row(F1, "leaf1-spine1", "up", FAIL - 60 * MS, FAIL - 50 * MS)])) == []
    assert detector.update(batch([row(F1, "leaf1-spine2", "up", FAIL + MS, FAIL + 6 * MS)])) == []
    assert detector.update(batch([row(F2, "leaf1-spine1", "up", T0, FAIL)])) == []
    opened = detector.update(batch([row(F2, "leaf1-spine2", "up", FAIL + 1500, FAIL + 60 * MS)]))
    assert [(e["state"], e["ts"]) for e in opened] == [("open", np.datetime64(FAIL, "us"))]
    event = only(detector.update(batch([row(F4, "leaf2-spine1", "up", FAIL, FAIL + 160 * MS)])))
    assert event["ts"] == np.datetime64(FAIL, "us")
    assert (event["flows_affected"], event["flows_recovered"]) == (1, 1)
    assert event["convergence_ms"] == pytest.approx(1.5)


def test_a_recovered_failure_waits_a_little_for_the_link_to_come_back() -> None:
    """Emitted once the link is seen back, with that time (a brief outage is reported with its end)."""
    detector = FastRecoveryDetector()
    rows = [row(F1, "leaf1-spine1", "up", T0, FAIL), row(F1, "leaf1-spine2", "up", FAIL + 1400, FAIL + 20 * MS)]
    assert detector.update(batch(rows)) == []
    opened = detector.update(batch([row(F4, "leaf2-spine1", "up", T0, FAIL + 80 * MS)]))  # declared, waits
    assert [e["state"] for e in opened] == ["open"]
    back = row(F1, "leaf1-spine1", "up", FAIL + 25 * MS, FAIL + 90 * MS)
    event = only(detector.update(batch([back])))
    assert json.loads(str(event["details"]))["link_back_us"] == FAIL + 25 * MS
    assert event["local_convergence_ms"] == pytest.approx(1.4)


def test_link_back_after_a_short_flap_leaves_a_hole_in_its_rows() -> None:
    """Rows cut at the silence: the flows leave leaf1-spine1 for 25 ms and come back once it is up again."""
    back = FAIL + 25 * MS
    rows = [
        *before_failure()[:2],
        row(F1, "leaf1-spine2", "up", FAIL + 1400, back - 100, psn=(1011, 1100)),
        row(F1, "leaf1-spine1", "up", back + 300, FAIL + 1500 * MS, psn=(1101, 9000)),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 1600 * MS),
    ]
    event = only(FastRecoveryDetector().update(batch(rows)))
    assert (event["link"], event["ts"]) == ("leaf1-spine1", np.datetime64(FAIL, "us"))
    assert event["ts_end"] == np.datetime64(FAIL + 1400, "us")
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (1, 1, 10)


def test_flow_seen_again_only_on_the_repaired_link_did_not_recover_elsewhere() -> None:
    back = FAIL + 25 * MS
    rows = [
        *before_failure()[:3],
        row(F1, "leaf1-spine2", "up", FAIL + 1400, back - 100, psn=(1011, 1100)),
        row(F1, "leaf1-spine1", "up", back + 300, FAIL + 1500 * MS, psn=(1101, 9000)),
        row(F2, "leaf1-spine1", "up", back + 400, FAIL + 1500 * MS, psn=(7400, 9000)),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 1600 * MS),
    ]
    event = only(FastRecoveryDetector().update(batch(rows)))
    assert (event["flows_affected"], event["flows_recovered"], event["packets_lost"]) == (2, 1, 10)


def test_failure_between_bursts_is_timed_by_control_traffic_and_affects_no_flow() -> None:
    """The all-reduce burst ended 400 ms before; BFD (direction unknown) was the link's last packet."""
    bfd = Flow("192.0.2.1", "192.0.2.2", 0)
    rows = [
        row(F1, "leaf1-spine1", "up", T0, T0 + 100 * MS, psn=(0, 900)),
        row(bfd, "leaf1-spine1", "unknown", T0, FAIL),
        row(F1, "leaf1-spine2", "up", FAIL + 20 * MS, FAIL + 1500 * MS, psn=(901, 5000)),
    ]
    event = only(FastRecoveryDetector().update(batch(rows)))
    assert event["ts"] == np.datetime64(FAIL, "us")
    assert (event["flows_affected"], event["flows_recovered"], event["convergence_ms"]) == (0, 0, None)


def control(link: str, start: int, end: int, interval: int = 20 * MS) -> Row:
    """A session of the link itself (BFD): neither up nor down, one packet every `interval`."""
    return row(Flow("10.254.0.1", "10.254.0.2", 0), link, "unknown", start, end, tail=end - 2 * interval)


def test_flows_moved_promptly_without_loss_are_an_ecmp_rehash_not_a_failure() -> None:
    """Another link came back and ECMP moved leaf1-spine1's flows to spine2 within their packet spacing,
    without skipping a PSN: the link fell silent, but nothing was cut."""
    rows = [
        row(F1, "leaf1-spine1", "up", T0, FAIL, psn=(0, 1000)),
        row(F2, "leaf1-spine1", "up", T0 + 5, FAIL - 50, psn=(7000, 7300)),
        row(F1, "leaf1-spine2", "up", FAIL + 150, FAIL + 900 * MS, psn=(1001, 5000)),
        row(F2, "leaf1-spine2", "up", FAIL + 100, FAIL + 900 * MS, psn=(7301, 9000)),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 2600 * MS),
    ]
    detector = FastRecoveryDetector()
    assert detector.update(batch(rows)) + detector.flush() == []


def test_rows_kept_as_a_flows_latest_leave_no_hole_where_the_link_had_traffic() -> None:
    """The demo's phantom flap: a link elsewhere came back and ECMP moved F2 from leaf1-spine1 to spine2
    at T0 + 972 ms, promptly, while F1 went on through leaf1-spine1. All rows arrive at once and show no
    hole; once they are old, each flow keeps only its latest row per link, and F1's row across the move and
    F2's first rows on spine2 are gone. That must not turn into a 28 ms silence with PSNs skipped."""
    first = [
        row(F1, "leaf1-spine1", "up", T0 + 900 * MS, T0 + 999_400, psn=(0, 99)),
        row(F1, "leaf1-spine1", "up", T0 + 1_000_400, T0 + 1100 * MS, psn=(100, 199)),
        row(F1, "leaf1-spine1", "up", T0 + 1_100_500, T0 + 1202 * MS, psn=(200, 301)),
        row(F2, "leaf1-spine1", "up", T0 + 900 * MS, T0 + 972 * MS, psn=(0, 72)),
        row(F2, "leaf1-spine2", "up", T0 + 973 * MS, T0 + 999_900, psn=(73, 99)),
        row(F2, "leaf1-spine2", "up", T0 + 1_000_100, T0 + 1100 * MS, psn=(100, 199)),
        row(F2, "leaf1-spine2", "up", T0 + 1_100_200, T0 + 1202 * MS, psn=(200, 301)),
    ]
    detector = FastRecoveryDetector()
    assert detector.update(batch(first)) == []
    for second in range(1, 4):
        start, end = T0 + (1202 + 1000 * (second - 1)) * MS + 500, T0 + (1202 + 1000 * second) * MS
        later = [row(F1, "leaf1-spine1", "up", start, end, psn=(302 * second, 302 * second + 300)),
                 row(F2, "leaf1-spine2", "up", start, end, psn=(302 * second, 302 * second + 300))]
        assert detector.update(batch(later)) == []
    assert detector.flush() == []


def test_a_link_still_carrying_its_own_session_inside_the_hole_has_not_failed() -> None:
    """Only the flows toward one leaf were cut (the remote half of that leaf's failure): leaf1-spine1's BFD
    went on, so the failure is not on this link."""
    rows = [*before_failure(), *after_failure(FAIL + 1500 * MS),
            control("leaf1-spine1", T0, FAIL - 10 * MS), control("leaf1-spine1", FAIL + 10 * MS, FAIL + 1500 * MS)]
    detector = FastRecoveryDetector()
    assert detector.update(batch(rows)) + detector.flush() == []


def test_a_session_back_on_a_flapped_link_before_its_flows_does_not_undo_the_flap() -> None:
    """leaf1-spine1 flaps for 60 ms: F1 is cut (PSNs skipped) and back on spine2 1.4 ms later, and on
    leaf1-spine1 again 110 ms after the failure. The link's BFD (every 300 ms) sent its next packet 80 ms
    after the failure, once the link was repaired and before F1 came back: that says nothing of the link
    while F1 was being rerouted (a fuzzed soak, seed 136: found when the rows came as a live collector
    exports them, where that row was still open, and missed in a bulk replay, where it was in)."""
    back = FAIL + 110 * MS
    rows = [
        *before_failure()[:2],
        row(F1, "leaf1-spine2", "up", FAIL + 1400, back - 100, psn=(1011, 1100)),
        row(F1, "leaf1-spine1", "up", back + 300, FAIL + 1500 * MS, psn=(1101, 9000)),
        control("leaf1-spine1", T0, FAIL - 220 * MS, interval=300 * MS),
        control("leaf1-spine1", FAIL + 80 * MS, FAIL + 1400 * MS, interval=300 * MS),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 1600 * MS),
    ]
    event = only(latest_rows(FastRecoveryDetector().update(batch(rows))))
    assert (event["link"], event["ts"], event["local_convergence_ms"]) == (
        "leaf1-spine1", np.datetime64(FAIL, "us"), pytest.approx(1.4))


def test_a_burst_that_ended_before_the_failure_resumed_after_idle_and_is_not_in_the_convergence() -> None:
    """F4's burst ended 7 ms before the failure (its spacing is 150 µs) and came back on its next burst 88 ms
    later on spine2: listed as resumed after idle, not an 88 ms convergence."""
    ended = row(F4, "leaf1-spine1", "up", FAIL - 12 * MS, FAIL - 7 * MS, psn=(0, 40))
    resumed = row(F4, "leaf1-spine2", "up", FAIL + 88 * MS, FAIL + 93 * MS, psn=(41, 80))
    rows = [*before_failure(), ended, *after_failure(FAIL + 1500 * MS), resumed]
    event = only(latest_rows(FastRecoveryDetector().update(batch(rows))))
    assert event["local_convergence_ms"] == pytest.approx(1.4)
    details = json.loads(str(event["details"]))
    assert [f["back_after_ms"] for f in details["resumed_after_idle"]] == [pytest.approx(88.0)]
    assert event["flows_affected"] == 5 and details["interrupted"] == 4


def test_a_failure_between_bursts_needs_the_links_own_sessions_to_fall_silent() -> None:
    """Between bursts nothing is cut: the failure shows as BFD silent on the link while the flows' next
    bursts go elsewhere. The same move with BFD going on is a rehash."""
    burst = row(F1, "leaf1-spine1", "up", FAIL - 20 * MS, FAIL - 12 * MS, psn=(0, 50))
    next_burst = row(F1, "leaf1-spine2", "up", FAIL + 18 * MS, FAIL + 26 * MS, psn=(51, 100))
    other = row(F4, "leaf2-spine1", "up", T0, FAIL + 2600 * MS)
    failed = [burst, control("leaf1-spine1", T0, FAIL), next_burst, other]
    events = latest_rows(FastRecoveryDetector().update(batch(failed)))
    assert [(e["link"], e["ts"], e["flows_affected"]) for e in events] == [
        ("leaf1-spine1", np.datetime64(FAIL, "us"), 0)]
    rehashed = [burst, control("leaf1-spine1", T0, FAIL + 2600 * MS), next_burst, other]
    assert FastRecoveryDetector().update(batch(rehashed)) == []


def test_a_session_whose_running_row_spans_the_hole_did_not_fall_silent() -> None:
    """The link's BFD sends every 300 ms; its latest row began before the hole and is still running across it
    (a row is cut only after 8 spacings), its 3rd-to-last packet 116 ms into the hole. Its row before that
    ended 484 ms before the hole: read alone, the session fell silent for longer than 2 spacings while F1's
    next burst went to spine2 (a fuzzed soak's phantom, seed 71). It did not: the link was alive."""
    burst = row(F1, "leaf1-spine1", "up", FAIL - 20 * MS, FAIL - 12 * MS, psn=(0, 50))
    rows = [burst, row(F1, "leaf1-spine2", "up", FAIL + 30 * MS, FAIL + 38 * MS, psn=(51, 100)),
            control("leaf1-spine1", FAIL - 1084 * MS, FAIL - 484 * MS, interval=300 * MS),
            control("leaf1-spine1", FAIL - 184 * MS, FAIL + 716 * MS, interval=300 * MS),
            row(F4, "leaf1-spine1", "up", FAIL + 666 * MS, FAIL + 2600 * MS),
            row(F5, "leaf3-spine1", "up", T0, FAIL + 2600 * MS)]
    detector = FastRecoveryDetector()
    assert detector.update(batch(rows)) + detector.flush() == []


def test_the_far_side_of_a_failure_declared_first_is_dropped_once_the_failure_is_known() -> None:
    """leaf4-spine2 fails between bursts: only its BFD shows it, 40 ms later. The next burst of leaf3's flow
    toward leaf4 is dropped at spine2 until leaf3 reroutes it through spine1, skipping PSNs: leaf3-spine2's
    silence is declared first, but waits while leaf4-spine2's earlier silence is judged: once that is a failure,
    it explains this one, which is never written."""
    toward = Flow("10.0.3.1", "10.0.4.1", 301)
    first = [
        row(toward, "leaf3-spine2", "up", FAIL - 40 * MS, FAIL - 30 * MS, psn=(0, 60)),
        row(toward, "leaf4-spine2", "down", FAIL - 40 * MS, FAIL - 30 * MS, psn=(0, 60)),
        control("leaf4-spine2", T0, FAIL),
        row(toward, "leaf3-spine2", "up", FAIL + 2 * MS, FAIL + 6 * MS, psn=(61, 90)),
        row(toward, "leaf3-spine1", "up", FAIL + 17 * MS, FAIL + 70 * MS, psn=(132, 500)),
    ]
    later = [row(toward, "leaf3-spine1", "up", FAIL + 70 * MS + 1, FAIL + 2600 * MS, psn=(501, 9000)),
             row(toward, "leaf4-spine1", "down", FAIL + 17 * MS, FAIL + 2600 * MS, psn=(132, 9000))]
    detector = FastRecoveryDetector()
    assert detector.update(batch(first)) == []  # leaf3-spine2 is declared, leaf4-spine2 not yet judged
    assert [(f.link, f.updated) for f in detector._pending] == [("leaf3-spine2", 0)]
    events = detector.update(batch(later)) + detector.flush()
    assert [e["link"] for e in latest_rows(events)] == ["leaf4-spine2"]


def test_oper_down_in_a_quiet_gap_is_a_failure_at_the_links_last_packet_even_when_up_came_first() -> None:
    """Between jobs the link carries only sparse sessions; the counters report it down and up again before the
    flow rows reach that time. The failure is still reported, at the link's last packet before the report."""
    last_session = FAIL - 164 * MS
    rows = [row(F1, "leaf1-spine1", "up", T0, T0 + 100 * MS, psn=(0, 900)),  # the job's last burst, long before
            control("leaf1-spine1", T0, last_session, interval=300 * MS),
            control("leaf1-spine1", FAIL + 250 * MS, FAIL + 2600 * MS, interval=300 * MS),
            row(F4, "leaf2-spine1", "up", T0, FAIL + 2600 * MS)]
    detector = FastRecoveryDetector()
    detector.observe_counters(counters("leaf1-spine1", FAIL, up=False))
    detector.observe_counters(counters("leaf1-spine1", FAIL + 200 * MS, up=True))
    events = latest_rows(detector.update(batch(rows)) + detector.flush())
    assert [(e["link"], e["ts"], e["flows_affected"]) for e in events] == [
        ("leaf1-spine1", np.datetime64(last_session, "us"), 0)]
    assert json.loads(str(events[0]["details"]))["trigger"] == "oper_down"


def test_a_keepalive_after_the_counters_report_the_link_down_is_the_link_back() -> None:
    """Between jobs the counters report leaf1-spine1 down, and up 200 ms later. The link's BGP session sends a
    keepalive a second, each exported as its own row of one packet; the first after the report is the link
    back, 8 s before the next job's burst (the 30-minute soak's link_up was read 8 s late from that burst)."""
    keepalive = Flow("10.254.0.1", "10.254.0.2", 0)
    last, back = FAIL - 700 * MS, FAIL + 300 * MS
    rows = [row(F1, "leaf1-spine1", "up", T0 - 1100 * MS, T0 - 1000 * MS, psn=(0, 900)),
            row(keepalive, "leaf1-spine1", "unknown", last, last, tail=last - 2000 * MS),
            row(keepalive, "leaf1-spine1", "unknown", back, back, tail=back - 2000 * MS),
            row(F1, "leaf1-spine1", "up", FAIL + 8000 * MS, FAIL + 8100 * MS, psn=(901, 2000)),
            row(F4, "leaf2-spine1", "up", T0, FAIL + 8200 * MS)]
    detector = FastRecoveryDetector(topology=TOPOLOGY)
    detector.observe_counters(counters("leaf1-spine1", FAIL, up=False))
    detector.observe_counters(counters("leaf1-spine1", FAIL + 200 * MS, up=True))
    event = only(latest_rows(detector.update(batch(rows)) + detector.flush()))
    assert (event["ts"], json.loads(str(event["details"]))["link_back_us"]) == (np.datetime64(last, "us"), back)


def small_flows(link: str, count: int, start: int, end: int) -> dict[str, np.ndarray]:
    """`count` distinct one-packet flows spread over [start, end) on `link` (a flood: no 3rd-to-last packet)."""
    columns = empty_columns("flows", count)
    columns["link"][:], columns["direction"][:] = link, "up"
    columns["leaf"][:], columns["spine"][:] = link.split("-")
    columns["src_ip"][:], columns["dst_ip"][:] = ip("10.0.1.200"), ip("10.0.9.1")
    columns["src_port"][:], columns["dst_port"][:], columns["proto"][:] = np.arange(count) % 65536, 4791, 17
    columns["roce_qp"][:] = np.arange(count)
    ts = start + np.arange(count) * (end - start) // count
    columns["ts_start"][:] = columns["ts_end"][:] = ts.astype("datetime64[us]")
    columns["packets"][:], columns["roce_write"][:] = 1, 1
    return columns


def test_a_flood_of_small_flows_costs_a_few_rows_and_leaves_the_failure_as_it_was() -> None:
    rows = before_failure() + after_failure(FAIL + 1500 * MS)
    expected = only(FastRecoveryDetector().update(batch(rows)))
    detector = FastRecoveryDetector()
    flood = small_flows("leaf1-spine1", 100_000, T0 + 300 * MS, FAIL)
    tracemalloc.start()
    detector.update(flood)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 1_000_000  # one row per flow would hold 100,000 rows of ~100 bytes
    event = only(detector.update(batch(rows)))
    assert {column: event[column] for column in EVENT_COLUMNS if column != "updated"} == {
        column: expected[column] for column in EVENT_COLUMNS if column != "updated"}


def test_a_flow_sent_in_bursts_before_is_measured_as_before() -> None:
    bursts = [row(F1, "leaf1-spine1", "up", T0 + 30 * MS * i, T0 + 30 * MS * i + 16 * MS, psn=(0, 500))
              for i in range(10)]
    rows = before_failure() + after_failure(FAIL + 1500 * MS)
    expected = only(FastRecoveryDetector().update(batch(rows)))
    detector = FastRecoveryDetector()
    for burst in bursts:
        assert detector.update(batch([burst])) == []
    event = only(detector.update(batch(rows)))
    assert {column: event[column] for column in EVENT_COLUMNS if column != "updated"} == {
        column: expected[column] for column in EVENT_COLUMNS if column != "updated"}


def test_a_flow_rehashed_away_before_the_links_last_packet_was_not_cut_by_a_silence_after_it() -> None:
    """Fuzzed soak, seed 22: a link elsewhere came back and ECMP moved F1 from leaf1-spine1 to spine2 2.7 ms
    before leaf1-spine1's last packet of the burst (F2's), then the link was quiet until the next burst. F1's
    first row on spine2 after that last packet is its next burst's, 3 PSNs on; it was not cut, the quiet gap
    is no failure."""
    rows = [
        row(F1, "leaf1-spine1", "up", FAIL - 40 * MS, FAIL - 3000, psn=(0, 36)),
        row(F1, "leaf1-spine2", "up", FAIL - 2700, FAIL - 700, psn=(37, 39)),
        row(F1, "leaf1-spine2", "up", FAIL + 159 * MS, FAIL + 200 * MS, psn=(40, 79)),
        row(F2, "leaf1-spine1", "up", FAIL - 40 * MS, FAIL, psn=(0, 40)),
        row(F2, "leaf1-spine1", "up", FAIL + 160 * MS, FAIL + 200 * MS, psn=(41, 80)),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 2600 * MS),
    ]
    detector = FastRecoveryDetector()
    assert detector.update(batch(rows)) + detector.flush() == []


def test_a_sparse_row_begun_just_before_the_failure_times_it_and_does_not_keep_the_link_alive() -> None:
    """Fuzzed soak, seed 61, bulk: a BFD packet crossed leaf1-spine1 0.3 ms after the burst's last packet and
    just before the link went down; its row (packets hundreds of ms apart, the next after the repair)
    begins in the hole. That packet is the link's last before the failure, not a sign it stayed up."""
    rows = [
        row(F1, "leaf1-spine1", "up", FAIL - 40 * MS, FAIL - 300, psn=(0, 133)),
        control("leaf1-spine1", FAIL, FAIL + 900 * MS, interval=450 * MS),
        row(F1, "leaf1-spine2", "up", FAIL + 1400, FAIL + 1500 * MS, psn=(140, 5000)),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 2600 * MS),
    ]
    detector = FastRecoveryDetector()
    event = only(latest_rows(detector.update(batch(rows)) + detector.flush()))
    assert (event["link"], event["ts"]) == ("leaf1-spine1", np.datetime64(FAIL, "us"))
    assert event["local_convergence_ms"] == pytest.approx(1.4)


def test_a_flow_that_moved_long_after_its_last_packet_does_not_make_the_far_side_a_failure() -> None:
    """leaf4-spine1 fails: the QP pair between leaf1 and leaf4 is cut on both ends of spine1 and rerouted
    through spine2, skipping PSNs; leaf2's flow into leaf4 too. leaf1-spine1 had also carried a storage flow
    to leaf3 that ended 400 ms before and whose next exchange went through spine2 (a fuzzed soak, seed 61):
    it moved, but the silence did not cut it. The flows the silence cut all crossed leaf4-spine1, so
    leaf1-spine1's silence is that failure's far side, not a failure of its own."""
    there, back, storage = Flow("10.0.1.2", "10.0.4.1", 401), Flow("10.0.4.1", "10.0.1.2", 402), Flow(
        "10.0.1.7", "10.0.3.7", 403)
    into = Flow("10.0.2.5", "10.0.4.5", 404)
    end = FAIL + 2600 * MS
    rows = [
        row(there, "leaf4-spine1", "down", T0, FAIL - 100, psn=(0, 1000)),
        row(back, "leaf4-spine1", "up", T0, FAIL, psn=(0, 1000)),
        row(into, "leaf4-spine1", "down", T0, FAIL - 200, psn=(0, 800)),
        row(there, "leaf1-spine1", "up", T0, FAIL - 300, psn=(0, 1000)),
        row(back, "leaf1-spine1", "down", T0, FAIL + 20, psn=(0, 1000)),
        row(storage, "leaf1-spine1", "up", T0, T0 + 100 * MS, psn=(0, 50)),
        row(there, "leaf1-spine2", "up", FAIL + 3 * MS, end, psn=(1010, 9000)),
        row(there, "leaf4-spine2", "down", FAIL + 3200, end, psn=(1010, 9000)),
        row(back, "leaf4-spine2", "up", FAIL + 2900, end, psn=(1008, 9000)),
        row(back, "leaf1-spine2", "down", FAIL + 3100, end, psn=(1008, 9000)),
        row(into, "leaf2-spine2", "up", FAIL + 4 * MS, end, psn=(806, 9000)),
        row(into, "leaf4-spine2", "down", FAIL + 4200, end, psn=(806, 9000)),
        row(storage, "leaf1-spine2", "up", FAIL + 14 * MS, FAIL + 20 * MS, psn=(51, 60)),
        row(into, "leaf4-spine1", "down", FAIL + 60 * MS, end, psn=(9001, 20000)),
        row(F4, "leaf1-spine1", "up", FAIL + 200 * MS, end),
    ]
    detector = FastRecoveryDetector()
    events = latest_rows(detector.update(batch(rows)) + detector.flush())
    assert [(e["link"], e["ts"], e["flows_affected"]) for e in events] == [
        ("leaf4-spine1", np.datetime64(FAIL, "us"), 3)]


def test_the_far_side_of_a_link_not_mirrored_is_not_a_failure_when_the_counters_report_it_down() -> None:
    """Only leaf3's links are mirrored; leaf4-spine2 fails and its counters report it down 30 ms later. leaf3's
    flow toward leaf4 is dropped at spine2 and rerouted through spine1, skipping PSNs: leaf3-spine2 fell silent
    with a cut flow, but every flow it cut goes to leaf4 (the topology's host prefixes), whose link through
    spine2 was reported down. Without the topology the detector cannot tell, and reports leaf3-spine2."""
    toward, other = Flow("10.0.3.1", "10.0.4.1", 301), Flow("10.0.3.2", "10.0.2.2", 302)
    rows = [
        row(toward, "leaf3-spine2", "up", T0, FAIL, psn=(0, 1000)),
        row(toward, "leaf3-spine1", "up", FAIL + 5 * MS, FAIL + 2600 * MS, psn=(1020, 9000)),
        row(other, "leaf3-spine2", "up", FAIL + 300 * MS, FAIL + 2600 * MS, psn=(0, 9000)),
    ]
    down = counters("leaf4-spine2", FAIL + 30 * MS, up=False)
    for topology, reported in ((TOPOLOGY, []), (None, ["leaf3-spine2"])):
        detector = FastRecoveryDetector(topology=topology)
        detector.observe_counters(down)
        events = latest_rows(detector.update(batch(rows)) + detector.flush())
        assert [e["link"] for e in events] == reported


def test_a_flow_going_back_through_the_spine_when_the_far_link_is_repaired_is_no_failure() -> None:
    """leaf2-spine1 fails between two exchanges of a storage flow from leaf4 into leaf2 (the counters report it
    down); the flow comes back on its next exchange through spine2 (on leaf4-spine2 and leaf2-spine2). 3 s
    later leaf2-spine1 is repaired and the flow goes back through spine1, away for 5.5 ms (longer than its
    own spacing allows). leaf4-spine2 fell silent with the flow cut, but the flow went back to leaf4-spine1,
    which it had left when leaf2-spine1 failed: the move back belongs to that failure (a repaired link of a
    generated fabric, nvme-tcp beside the all-reduce). Without the topology the detector cannot tell where
    the flow went, and reports leaf4-spine2."""
    storage, other = Flow("10.0.4.1", "10.0.2.1", 501), Flow("10.0.4.2", "10.0.3.2", 502)
    repair, end = FAIL + 3000 * MS, FAIL + 5000 * MS  # more than timeout_ms: not a brief bounce back
    rows = [
        row(storage, "leaf4-spine1", "up", T0, FAIL - 2 * MS, psn=(0, 1000)),
        row(storage, "leaf2-spine1", "down", T0, FAIL - 2 * MS, psn=(0, 1000)),
        row(other, "leaf4-spine1", "up", T0, end, psn=(0, 90_000)),
        row(storage, "leaf4-spine2", "up", FAIL + 15 * MS, repair - 3500, psn=(1001, 5000)),
        row(storage, "leaf2-spine2", "down", FAIL + 15 * MS, repair - 3400, psn=(1001, 5000)),
        row(storage, "leaf4-spine1", "up", repair + 2000, end, psn=(5001, 9000)),
        row(storage, "leaf2-spine1", "down", repair + 2100, end, psn=(5001, 9000)),
    ]
    down, up = counters("leaf2-spine1", FAIL + 1 * MS, up=False), counters("leaf2-spine1", repair, up=True)
    for topology, reported in ((TOPOLOGY, ["leaf2-spine1"]), (None, ["leaf2-spine1", "leaf4-spine2"])):
        detector = FastRecoveryDetector(topology=topology)
        detector.observe_counters(down)
        detector.observe_counters(up)
        events = latest_rows(detector.update(batch(rows)) + detector.flush())
        assert sorted(str(e["link"]) for e in events) == reported
        assert events[0]["summary"] == ("leaf2-spine1 failed (oper-down): no flow interrupted, 1/1 flows "
                                        "recovered, 0 packets lost")  # the flow came back on its next exchange


def test_a_flow_still_sent_into_the_spine_after_its_last_packet_on_the_failed_link_was_cut() -> None:
    """leaf4-spine2 fails. leaf1 goes on sending a storage flow into leaf4 through spine2 (one packet a ms,
    no PSNs) for 14 ms, where it is dropped, and reroutes it through spine1 20 ms after the failure: too slow
    to be "back within window_ms", and no PSN to show the loss. The flow's packets on leaf1-spine2 after its
    last one on leaf4-spine2 show it was sending into the failure: leaf4-spine2 failed, with a remote
    convergence of 20.1 ms, and leaf1-spine2's silence is its far side (what leaf1 sent after was lost beyond
    it). Without the topology neither link can be told by the other: the far side alone is reported (a fuzzed
    soak with storage traffic, seeds 0 and 4)."""
    storage = Flow("10.0.1.1", "10.0.4.1", 0)
    end = FAIL + 2600 * MS
    rows = [
        row(storage, "leaf1-spine2", "up", T0, FAIL + 14 * MS, tail=FAIL + 12 * MS),
        row(storage, "leaf4-spine2", "down", T0, FAIL, tail=FAIL - 2 * MS),
        row(storage, "leaf1-spine1", "up", FAIL + 20 * MS, end),
        row(storage, "leaf4-spine1", "down", FAIL + 20 * MS + 100, end),
        row(F4, "leaf2-spine1", "up", T0, end),
    ]
    for topology, reported in ((TOPOLOGY, [("leaf4-spine2", 20.1)]), (None, [("leaf1-spine2", None)])):
        detector = FastRecoveryDetector(topology=topology)
        events = latest_rows(detector.update(batch(rows)) + detector.flush())
        assert [(e["link"], e["remote_convergence_ms"]) for e in events] == [
            (link, pytest.approx(ms) if ms else None) for link, ms in reported]


def test_a_known_flows_first_row_on_another_link_is_its_recovery_however_few_its_packets() -> None:
    """F1 comes back on spine2 1.4 ms after the failure with an exchange of 2 packets: a row with no
    3rd-to-last packet (`ts_tail` 0), as a storage flow's first row on a link is. A flow the detector knows is
    matched by it all the same: recovered then, not at its next row 3.6 ms later (a flow never seen before,
    in a flood of small ones, stays merged into the time its link was busy)."""
    rows = [
        row(F1, "leaf1-spine1", "up", T0, FAIL, psn=(0, 1000)),
        row(F1, "leaf1-spine2", "up", FAIL + 1400, FAIL + 1500, tail=0, psn=(1011, 1012)),
        row(F1, "leaf1-spine2", "up", FAIL + 5 * MS, FAIL + 2600 * MS, psn=(1013, 9000)),
        row(F4, "leaf2-spine1", "up", T0, FAIL + 2600 * MS),
    ]
    event = only(latest_rows(FastRecoveryDetector().update(batch(rows))))
    assert (event["link"], event["local_convergence_ms"], event["packets_lost"]) == (
        "leaf1-spine1", pytest.approx(1.4), 10)


def test_a_flow_back_where_it_came_from_within_the_timeout_is_no_failure_of_the_link_it_passed() -> None:
    """leaf1-spine1 flaps for 23 ms: a storage flow (a packet every 2.4 ms) is on spine2 4.7 ms after its last
    packet on spine1, within twice its spacing, so the flap cannot be told from a rehash and is not reported.
    When spine1 is back the flow leaves spine2 and is on spine1 again 5.6 ms later: longer than its spacing
    allows, but it went back where it came from 25 ms before, not away from a failure of leaf1-spine2 (a
    fuzzed soak with storage traffic, seed 5)."""
    storage = Flow("10.0.1.1", "10.0.4.1", 0)
    end = FAIL + 2600 * MS
    rows = [
        row(storage, "leaf1-spine1", "up", T0, FAIL, tail=FAIL - 4800),
        row(storage, "leaf1-spine2", "up", FAIL + 4700, FAIL + 19_800, tail=FAIL + 15_300),
        row(storage, "leaf1-spine1", "up", FAIL + 25_400, end, tail=end - 4800),
        row(F4, "leaf2-spine1", "up", T0, end),
    ]
    detector = FastRecoveryDetector()
    assert detector.update(batch(rows)) + detector.flush() == []


def test_a_failure_soon_after_a_flow_came_from_a_busy_link_is_still_a_failure() -> None:
    """F1 came to leaf1-spine1 from spine2 half a second before leaf1-spine1 fails; it is cut (PSNs skipped)
    and goes back to spine2, which carried F2 all along: that link never went quiet, so this is no move back
    after a flap of it but a failure of leaf1-spine1 (a fuzzed soak, seed 3, missed by a looser rule)."""
    end = FAIL + 2600 * MS
    rows = [
        row(F1, "leaf1-spine2", "up", T0, FAIL - 500 * MS, psn=(0, 500)),
        row(F1, "leaf1-spine1", "up", FAIL - 500 * MS + 100, FAIL, psn=(501, 1000)),
        row(F1, "leaf1-spine2", "up", FAIL + 1400, end, psn=(1011, 9000)),
        row(F2, "leaf1-spine2", "up", T0, end, psn=(0, 9000)),
        row(F4, "leaf2-spine1", "up", T0, end),
    ]
    event = only(latest_rows(FastRecoveryDetector().update(batch(rows))))
    assert (event["link"], event["local_convergence_ms"], event["packets_lost"]) == (
        "leaf1-spine1", pytest.approx(1.4), 10)


def test_the_far_side_of_a_flap_too_brief_to_prove_going_back_is_no_failure_either() -> None:
    """leaf3-spine2 flaps for 23 ms; leaf1's storage flow into leaf3 goes through spine1 4.7 ms after its last
    packet through spine2 (within twice its spacing: the flap is not proven) and back through spine2 once
    leaf3-spine2 carries traffic again, away from leaf1-spine1 for 5.6 ms. leaf1-spine2 never went quiet (it
    carries leaf1's flow to leaf2): it is the flow's far leaf's link through spine2 that resumed, so leaf1-spine1's
    silence is the move back too (a fuzzed soak with storage traffic, seed 71: reported on leaf1-spine1 and
    leaf2-spine1, the far sides of the flap's return)."""
    storage, other = Flow("10.0.1.1", "10.0.3.1", 0), Flow("10.0.1.2", "10.0.2.2", 0)
    end = FAIL + 2600 * MS
    rows = [
        row(storage, "leaf1-spine2", "up", T0, FAIL, tail=FAIL - 4800),
        row(storage, "leaf3-spine2", "down", T0, FAIL + 10, tail=FAIL - 4790),
        row(storage, "leaf1-spine1", "up", FAIL + 4700, FAIL + 19_800, tail=FAIL + 15_300),
        row(storage, "leaf3-spine1", "down", FAIL + 4710, FAIL + 19_810, tail=FAIL + 15_310),
        row(storage, "leaf1-spine2", "up", FAIL + 25_400, end, tail=end - 4800),
        row(storage, "leaf3-spine2", "down", FAIL + 25_410, end, tail=end - 4790),
        row(other, "leaf1-spine2", "up", T0, end),
        row(other, "leaf2-spine2", "down", T0, end),
    ]
    detector = FastRecoveryDetector(topology=TOPOLOGY)
    assert detector.update(batch(rows)) + detector.flush() == []


@pytest.mark.parametrize(("gap", "reported"), [(5100, []), (9900, ["leaf4-spine2"])], ids=["rehashed", "pair-lost"])
def test_a_flow_sending_in_pairs_is_cut_only_when_it_missed_a_pair(gap: int, reported: list[str]) -> None:
    """A storage flow from leaf4 into leaf1 sends an exchange of 2 packets 5 µs apart every 5 ms: each row
    holds one exchange, its 3rd-to-last packet the previous exchange's first, so its mean spacing is half
    its pause. leaf4 moves it from spine2 to spine1. Back 5.1 ms after its last pair (its next one, a little
    late), it missed none: by its mean spacing it looked cut on leaf4-spine2 and on leaf1-spine2, and the
    silence declared first, leaf1-spine2, was reported (a fuzzed soak with storage traffic, seed 93). Back
    9.9 ms after, it lost a pair: leaf4-spine2 failed (its last packet first), with or without the topology."""
    storage = Flow("10.0.4.1", "10.0.1.1", 0)
    end = FAIL + 2600 * MS
    rows = [
        row(storage, "leaf4-spine2", "up", T0, FAIL - 5000, tail=FAIL - 10_000),
        row(storage, "leaf4-spine2", "up", FAIL - 5, FAIL, tail=FAIL - 5005, packets=2),
        row(storage, "leaf1-spine2", "down", T0 + 3, FAIL - 4997, tail=FAIL - 9997),
        row(storage, "leaf1-spine2", "down", FAIL - 2, FAIL + 3, tail=FAIL - 5002, packets=2),
        row(storage, "leaf4-spine1", "up", FAIL + gap, end),
        row(storage, "leaf1-spine1", "down", FAIL + gap + 3, end),
        row(F4, "leaf2-spine1", "up", T0, end),
    ]
    for topology in (TOPOLOGY, None):
        detector = FastRecoveryDetector(topology=topology)
        assert [e["link"] for e in latest_rows(detector.update(batch(rows)) + detector.flush())] == reported


@pytest.mark.parametrize(("back_ms", "reported"), [(11, ["leaf1-spine1"]), (40, [])], ids=["converged", "next-burst"])
def test_a_flow_too_slow_to_be_affected_still_shows_the_cut(back_ms: int, reported: list[str]) -> None:
    """A storage flow from leaf2 into leaf1 sends a packet every 5.2 ms: fewer than 3 in `window_ms`, so it is
    not affected and its convergence is not the fabric's. leaf1-spine1 falls silent after its last packet;
    back through spine2 11 ms later, it missed a packet and came back as soon as the fabric converged: the
    failure's evidence (a fuzzed soak with storage traffic, seed 9: leaf1-spine1 missed). Back 40 ms later,
    it paused and came back on a later burst: no evidence."""
    storage = Flow("10.0.2.1", "10.0.1.1", 0)
    end = FAIL + 2600 * MS
    rows = [
        row(storage, "leaf1-spine1", "down", T0, FAIL, tail=FAIL - 10_400),
        row(storage, "leaf1-spine2", "down", FAIL + back_ms * MS, end, tail=end - 10_400),
        row(F4, "leaf2-spine1", "up", T0, end),
    ]
    detector = FastRecoveryDetector(topology=TOPOLOGY)
    events = latest_rows(detector.update(batch(rows)) + detector.flush())
    assert [(e["link"], e["flows_affected"], e["convergence_ms"]) for e in events] == [
        (link, 0, None) for link in reported]


def test_each_flows_far_leaf_is_where_it_goes_or_comes_from() -> None:
    """The far leaf of an `up` flow is its destination's, of a `down` flow its source's, IPv4 or IPv6, by the
    topology's host prefixes (as `Topology.leaf_of` reads them one address at a time); none for an address
    behind no leaf."""
    flows = [(Flow("10.0.1.1", "10.0.3.1", 1), "up"), (Flow("10.0.2.1", "10.0.1.3", 2), "down"),
             (Flow("fd00:0:0:1::5", "fd00:0:0:4::9", 3), "up"), (Flow("10.0.1.1", "192.0.2.1", 4), "up")]
    v4 = Flow("0.0.0.0", "0.0.0.0", 3)  # the IPv6 flow's row, its addresses set below
    columns = batch([row(v4 if ":" in flow.src else flow, "leaf1-spine1", direction, T0, FAIL, psn=(0, 100))
                     for flow, direction in flows])
    columns["src_ip"][2] = ipaddress.IPv6Address(flows[2][0].src).packed
    columns["dst_ip"][2] = ipaddress.IPv6Address(flows[2][0].dst).packed
    detector = FastRecoveryDetector(topology=TOPOLOGY)
    detector.update(columns)
    assert detector._rows is not None
    failure = detector._failure(detector._rows, np.arange(len(flows)), 0, FAIL, "silence", None)
    assert failure is not None
    got = {describe(key).split(" qp ")[1]: leaf for key, leaf in zip(failure.keys, detector._far_leaves(failure),
                                                                      strict=True)}
    assert got == {str(flow.qp): TOPOLOGY.leaf_of(flow.dst if direction == "up" else flow.src) or ""
                   for flow, direction in flows}
    assert got == {"1": "leaf3", "2": "leaf2", "3": "leaf4", "4": ""}
