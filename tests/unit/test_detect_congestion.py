"""Congestion and PFC storms on hand-built 10 ms link bins (and flow rows naming jobs and top flows)."""

from __future__ import annotations

import ipaddress
import json
import tracemalloc

import numpy as np
import pytest

from pipeline.detect.congestion import CongestionConfig, CongestionDetector
from pipeline.detect.events import latest_rows
from pipeline.records import LINK_BIN_US, empty_columns

T0 = 1_700_000_000_000_000  # a multiple of 10 ms: bins are epoch-aligned
LINK = "leaf3-spine2"


def bins(rows: list[dict[str, int]], link: str = LINK, direction: str = "up") -> dict[str, np.ndarray]:
    """One bin per dict: `k` is the bin number after T0, the rest are counts; CE packets at +1.2 .. +8.8 ms."""
    columns = empty_columns("link_bins", len(rows))
    for i, r in enumerate(rows):
        start = T0 + r["k"] * LINK_BIN_US
        columns["ts"][i] = np.datetime64(start, "us")
        columns["link"][i], columns["direction"][i] = link, direction
        columns["leaf"][i], columns["spine"][i] = link.split("-")
        columns["ts_first"][i] = np.datetime64(start + 100, "us")
        columns["ts_last"][i] = np.datetime64(start + 9_900, "us")
        columns["packets"][i] = columns["roce_packets"][i] = r.get("ect", 0) + 5
        columns["bytes"][i] = 4096 * int(columns["packets"][i])
        for name in ("ect", "ce", "cnp", "pause"):
            column = {"ect": "roce_ect", "ce": "roce_ce", "cnp": "cnp", "pause": "pfc_pause"}[name]
            columns[column][i] = r.get(name, 0)
        columns["pfc_quanta"][i] = 0xFFFF * r.get("pause", 0)
        if r.get("ce", 0):
            columns["ts_first_ce"][i] = np.datetime64(start + 1_200, "us")
            columns["ts_last_ce"][i] = np.datetime64(start + 8_800, "us")
    return columns


def clean(first: int, last: int, link: str = LINK) -> list[dict[str, int]]:
    return [{"k": k, "ect": 100} for k in range(first, last + 1)]


def flows(rows: list[tuple[str, str, int, int]]) -> dict[str, np.ndarray]:
    """Flow rows on LINK up over bins 0..40: (source host, job, bytes, CE marks)."""
    columns = empty_columns("flows", len(rows))
    for i, (src, job, size, marks) in enumerate(rows):
        columns["link"][i], columns["direction"][i], columns["job"][i] = LINK, "up", job
        columns["src_ip"][i] = ipaddress.IPv6Address(f"::ffff:{src}").packed
        columns["dst_ip"][i] = ipaddress.IPv6Address("::ffff:10.0.1.9").packed
        columns["dst_port"][i], columns["proto"][i], columns["roce_qp"][i] = 4791, 17, 7 + i
        columns["ts_start"][i] = np.datetime64(T0, "us")
        columns["ts_end"][i] = np.datetime64(T0 + 400_000, "us")
        columns["bytes"][i], columns["ecn_ce"][i] = size, marks
    return columns


EPISODE = [{"k": k, "ect": 100, "ce": 10} for k in range(10, 15)] + [{"k": 18, "ect": 50, "ce": 10},
                                                                       {"k": 19, "ect": 100, "ce": 5}]
NOTIFIED = [{"k": 12, "cnp": 7}, {"k": 18, "cnp": 3}, {"k": 40, "cnp": 50}]  # CNPs back to the senders


NO_FLOWS = CongestionConfig(flows_wait_ms=0)


def test_adjacent_bins_merge_into_one_episode_timed_by_marked_packets() -> None:
    detector = CongestionDetector(NO_FLOWS)
    rows = clean(0, 9) + EPISODE + clean(15, 17) + clean(20, 40)
    rows.sort(key=lambda r: r["k"])
    assert detector.update(bins(NOTIFIED, direction="down")) == []
    assert detector.update(bins([{"k": k, "pause": 2} for k in (11, 12)], direction="unknown")) == []
    events = detector.update(bins(rows))
    assert len(events) == 1
    event = events[0]
    assert (event["kind"], event["link"], event["direction"]) == ("congestion", LINK, "up")
    assert event["ts"] == np.datetime64(T0 + 10 * LINK_BIN_US + 1_200, "us")
    assert event["ts_end"] == np.datetime64(T0 + 19 * LINK_BIN_US + 8_800, "us")
    assert event["value"] == pytest.approx(0.2)
    details = json.loads(str(event["details"]))
    assert (details["ce"], details["ect"], details["cnp"], details["pfc_pause"], details["bins"]) == (65, 650, 10, 4, 7)
    assert detector.flush() == []


def test_episode_split_across_batches_waits_for_a_stretch_of_clean_traffic() -> None:
    detector = CongestionDetector(NO_FLOWS)
    assert detector.update(bins(clean(0, 9) + EPISODE[:3])) == []
    assert detector.update(bins(EPISODE[3:5] + clean(15, 17))) == []
    assert detector.update(bins(EPISODE[5:] + clean(20, 24))) == []  # clean for less than clear_ms
    events = detector.update(bins(clean(25, 30)))
    assert len(events) == 1 and json.loads(str(events[0]["details"]))["ce"] == 65
    assert events[0]["state"] == "closed"


def test_a_stretch_of_clean_traffic_longer_than_clear_ms_makes_two_episodes() -> None:
    rows = [{"k": 1, "ect": 100, "ce": 20}, *clean(2, 7), {"k": 8, "ect": 100, "ce": 20}, *clean(9, 20)]
    detector = CongestionDetector(CongestionConfig(clear_ms=50, flows_wait_ms=0))
    events = detector.update(bins(rows)) + detector.flush()
    assert [e["ts"] for e in events] == [np.datetime64(T0 + k * LINK_BIN_US + 1_200, "us") for k in (1, 8)]
    assert len({e["event_id"] for e in events}) == 2


def iterations(count: int, period: int, marked: bool, first: int = 0) -> list[dict[str, int]]:
    """All-reduce bursts of 4 bins every `period` bins, idle in between (no bins at all)."""
    return [{"k": first + i * period + b, "ect": 100, "ce": 20 if marked else 0}
            for i in range(count) for b in range(4)]


def test_congestion_over_many_iterations_with_idle_gaps_is_one_incident() -> None:
    detector = CongestionDetector(NO_FLOWS)
    rows = iterations(30, 20, marked=True) + iterations(10, 20, marked=False, first=600)
    events = latest_rows(detector.update(bins(rows)) + detector.flush())
    assert len(events) == 1
    details = json.loads(str(events[0]["details"]))
    assert (details["bursts"], details["marks_per_burst"]) == (30, [80] * 30)
    assert events[0]["ts"] == np.datetime64(T0 + 1_200, "us")
    assert events[0]["ts_end"] == np.datetime64(T0 + (29 * 20 + 3) * LINK_BIN_US + 8_800, "us")


def test_silence_longer_than_idle_ms_ends_an_episode() -> None:
    detector = CongestionDetector(CongestionConfig(idle_ms=500, flows_wait_ms=0, lateness_ms=0))
    events = detector.update(bins(iterations(3, 20, marked=True)))
    events += detector.update(bins(iterations(3, 20, marked=True, first=200)))  # 1.4 s later: a new job run
    events += detector.flush()
    closed = [e for e in events if e["state"] == "closed"]
    assert [e["ts"] for e in closed] == [np.datetime64(T0 + k * LINK_BIN_US + 1_200, "us") for k in (0, 200)]


def test_an_incident_is_written_open_as_soon_as_known_and_closed_with_the_same_id() -> None:
    detector = CongestionDetector(CongestionConfig(lateness_ms=1000, flows_wait_ms=0))
    first = detector.update(bins(iterations(2, 20, marked=True)))
    assert first == []  # not yet past the lateness bound
    opened = detector.update(bins(iterations(10, 20, marked=True, first=40)))
    assert [e["state"] for e in opened] == ["open"]
    rest = detector.update(bins(iterations(10, 20, marked=False, first=240))) + detector.flush()
    assert [e["state"] for e in rest] == ["closed"]
    assert rest[0]["event_id"] == opened[0]["event_id"]
    assert rest[0]["updated"] > opened[0]["updated"]
    assert json.loads(str(rest[0]["details"]))["bursts"] == 12


def test_an_open_incident_is_written_again_when_its_peak_grows() -> None:
    detector = CongestionDetector(CongestionConfig(lateness_ms=0, flows_wait_ms=0))
    mild = [{"k": k, "ect": 100, "ce": 10} for k in range(0, 4)]
    worse = [{"k": k, "ect": 100, "ce": 40} for k in range(20, 24)]
    events = detector.update(bins(mild)) + detector.update(bins(worse)) + detector.flush()
    assert [(e["state"], e["value"]) for e in events] == [("open", 0.1), ("open", 0.4), ("closed", 0.4)]
    assert len({e["event_id"] for e in events}) == 1


def test_bins_with_few_ect_packets_do_not_count_and_clean_links_raise_nothing() -> None:
    detector = CongestionDetector()
    rows = [*clean(0, 5), {"k": 6, "ect": 5, "ce": 5}, *clean(7, 40)]
    assert detector.update(bins(rows)) == []
    assert detector.update(bins(clean(0, 40), direction="down")) == []
    assert detector.flush() == []


def test_cnps_and_pauses_alone_open_episodes_only_when_asked() -> None:
    cnp_only, paused = [{"k": 3, "cnp": 12}], [{"k": 3, "pause": 5}]
    detector = CongestionDetector()
    assert detector.update(bins(cnp_only)) + detector.update(bins(paused, direction="unknown")) == []
    assert detector.flush() == []
    detector = CongestionDetector(CongestionConfig(cnp_per_bin=10, pfc_per_bin=5))
    events = detector.update(bins(cnp_only)) + detector.update(bins(paused, direction="unknown")) + detector.flush()
    assert sorted((e["direction"], e["value"]) for e in events) == [("unknown", None), ("up", None)]
    event = next(e for e in events if e["direction"] == "up")
    assert event["ts"] == np.datetime64(T0 + 3 * LINK_BIN_US + 100, "us")
    assert event["ts_end"] == np.datetime64(T0 + 3 * LINK_BIN_US + 9_900, "us")


def test_lightly_marked_bins_around_a_congested_one_stretch_it_but_alone_are_nothing() -> None:
    light = [{"k": 4, "ect": 100, "ce": 1}, {"k": 6, "ect": 100, "ce": 2}]
    detector = CongestionDetector()
    events = detector.update(bins([*light, {"k": 7, "ect": 100, "ce": 9}, {"k": 9, "ect": 100, "ce": 1}]))
    events += detector.update(bins(light, link="leaf1-spine1")) + detector.flush()
    assert len(events) == 1
    assert events[0]["ts"] == np.datetime64(T0 + 4 * LINK_BIN_US + 1_200, "us")
    assert events[0]["ts_end"] == np.datetime64(T0 + 9 * LINK_BIN_US + 8_800, "us")
    assert events[0]["value"] == pytest.approx(0.09)


def test_persistent_pauses_are_a_pfc_storm_short_ones_are_not() -> None:
    detector = CongestionDetector(CongestionConfig(storm_ms=100))
    storm = [{"k": k, "pause": 4} for k in range(0, 15)]
    short = [{"k": k, "pause": 4} for k in range(0, 3)]
    events = detector.update(bins(storm, direction="unknown"))
    events += detector.update(bins(short, link="leaf1-spine1", direction="unknown")) + detector.flush()
    assert [(e["kind"], e["link"], e["direction"], e["value"]) for e in events] == [
        ("pfc_storm", LINK, "unknown", 60)]
    assert events[0]["ts_end"] == np.datetime64(T0 + 14 * LINK_BIN_US + 9_900, "us")


def test_details_name_the_jobs_and_top_flows_through_the_link() -> None:
    detector = CongestionDetector(CongestionConfig(top_flows=2))
    detector.observe_flows(flows([("10.0.3.1", "llama", 10**9, 40), ("10.0.3.2", "llama", 10**8, 90),
                                  ("10.0.3.3", "bert", 10**7, 0), ("10.0.3.4", "", 5 * 10**9, 0)]))
    events = detector.update(bins(EPISODE + clean(20, 30))) + detector.flush()
    details = json.loads(str(events[0]["details"]))
    assert details["jobs"] == ["llama", "bert"]
    assert [f["flow"].split(":")[0] for f in details["top_flows"]] == ["10.0.3.2", "10.0.3.1"]
    assert details["top_flows"][0]["ecn_ce"] == 90 and details["top_flows"][0]["job"] == "llama"
    assert events[0]["job"] == "llama,bert"  # the jobs the summary names, not an empty column


def test_an_episode_ended_by_the_next_one_still_waits_for_its_flow_rows() -> None:
    detector = CongestionDetector(CongestionConfig(flows_wait_ms=200))
    detector.observe_flows(flows([("10.0.3.1", "llama", 10**6, 1)]))
    first, second = [{"k": 1, "ect": 100, "ce": 30}], [{"k": 12, "ect": 100, "ce": 30}]
    assert detector.update(bins(first + clean(2, 11) + second + clean(13, 20))) == []
    detector.observe_flows(flows([("10.0.3.2", "bert", 10**6, 5)]))  # exported late
    events = detector.update(bins(clean(21, 28)))
    assert [e["ts"] for e in events] == [np.datetime64(T0 + LINK_BIN_US + 1_200, "us")]
    assert json.loads(str(events[0]["details"]))["jobs"] == ["llama", "bert"]
    assert len(detector.flush()) == 1


def test_marks_carried_down_from_an_upstream_link_are_not_congestion_there() -> None:
    """CE marks set at leaf1's uplink stay on the packets down spine2 to leaf2; leaf4's own marks add up."""
    marked = [{"k": k, "ect": 100, "ce": 20} for k in range(3, 6)]
    more = [{"k": k, "ect": 100, "ce": 45} for k in range(3, 6)]
    detector = CongestionDetector(NO_FLOWS)
    events = detector.update(bins(marked, link="leaf1-spine2", direction="up"))
    events += detector.update(bins(marked, link="leaf2-spine2", direction="down"))
    events += detector.update(bins(more, link="leaf4-spine2", direction="down"))
    events += detector.flush()
    assert sorted((e["link"], e["direction"]) for e in events) == [("leaf1-spine2", "up"), ("leaf4-spine2", "down")]


def test_pauses_of_a_congestion_episode_are_part_of_its_incident_not_a_storm_of_their_own() -> None:
    """The congested queue pauses its upstream for as long as the episode lasts: one incident. Pauses that go on
    well after the congestion ended are a PFC storm of their own."""
    detector = CongestionDetector(CongestionConfig(storm_ms=100, flows_wait_ms=0))
    marked = [{"k": k, "ect": 100, "ce": 30} for k in range(0, 20)] + clean(20, 40)
    pauses = [{"k": k, "pause": 4} for k in range(2, 20)]
    events = detector.update(bins(marked)) + detector.update(bins(pauses, direction="unknown")) + detector.flush()
    assert [e["kind"] for e in latest_rows(events)] == ["congestion"]
    detector = CongestionDetector(CongestionConfig(storm_ms=100, flows_wait_ms=0))
    stuck = [{"k": k, "pause": 4} for k in range(2, 60)]
    events = detector.update(bins(marked)) + detector.update(bins(stuck, direction="unknown")) + detector.flush()
    assert sorted(e["kind"] for e in latest_rows(events)) == ["congestion", "pfc_storm"]


def test_flow_rows_behind_the_bins_of_a_link_direction_without_an_episode_are_not_kept() -> None:
    detector = CongestionDetector()
    assert detector.update(bins(clean(0, 50))) == []  # bins up to T0 + 500 ms, nothing marked
    flood = empty_columns("flows", 100_000)
    flood["link"][:], flood["direction"][:], flood["job"][:] = LINK, "up", "llama"
    flood["src_port"][:], flood["roce_qp"][:] = np.arange(100_000) % 65536, np.arange(100_000)
    flood["ts_start"][:] = flood["ts_end"][:] = np.datetime64(T0 + 400_000, "us")
    tracemalloc.start()
    detector.observe_flows(flood)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert held < 1_000_000  # kept, 100,000 rows would hold ~10 MB; no episode can start before the next bin
    later = flows([("10.0.3.1", "bert", 10**6, 30)])
    later["ts_start"][:], later["ts_end"][:] = np.datetime64(T0 + 600_000, "us"), np.datetime64(T0 + 700_000, "us")
    detector.observe_flows(later)
    marked = [{"k": k, "ect": 100, "ce": 30} for k in range(60, 63)]
    events = detector.update(bins(marked + clean(63, 80))) + detector.flush()
    assert json.loads(str(latest_rows(events)[0]["details"]))["jobs"] == ["bert"]
