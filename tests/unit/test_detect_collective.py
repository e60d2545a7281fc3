"""Collective slowdown on hand-built iterations: baseline, merging, and the congested links to blame."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipeline.detect.collective import CollectiveDetector
from pipeline.detect.events import latest_rows, make_event
from pipeline.records import empty_columns

T0 = 1_700_000_000_000_000
MS = 1000
PERIOD = 100 * MS
CROSSED = ["leaf1-spine1", "leaf3-spine2", "leaf3-spine1"]


def iterations(durations_ms: dict[int, float], job: str = "llama") -> dict[str, np.ndarray]:
    """Iteration n starts at T0 + n * 100 ms and crosses CROSSED."""
    columns = empty_columns("iterations", len(durations_ms))
    for i, (n, duration) in enumerate(sorted(durations_ms.items())):
        columns["ts"][i] = np.datetime64(T0 + n * PERIOD, "us")
        columns["ts_end"][i] = np.datetime64(T0 + n * PERIOD + round(duration * MS), "us")
        columns["job"][i], columns["iteration"][i], columns["allreduce_ms"][i] = job, n, duration
        columns["period_ms"][i] = 100.0 if n else 0.0
        columns["links"][i] = list(CROSSED)
    return columns


def congestion(link: str, start: int, end: int, ratio: float) -> dict[str, object]:
    return make_event("congestion", ts=start, ts_end=end, severity="warning", summary="", link=link,
                      direction="down", value=ratio)


NORMAL = {n: 10.0 + (n % 3) * 0.5 for n in range(40)}
SLOW = {**NORMAL, 8: 20.0, 9: 25.0, 10: 18.0}


def test_consecutive_slow_iterations_are_one_event_blaming_the_congested_links_crossed() -> None:
    detector = CollectiveDetector()
    detector.observe([
        congestion("leaf3-spine2", T0 + 9 * PERIOD + 2 * MS, T0 + 9 * PERIOD + 22 * MS, 0.3),
        congestion("leaf4-spine1", T0 + 9 * PERIOD, T0 + 9 * PERIOD + 20 * MS, 0.5),  # not crossed
        congestion("leaf3-spine1", T0 + 30 * PERIOD, T0 + 31 * PERIOD, 0.5),  # not during the slowdown
    ])
    opened = detector.update(iterations({n: d for n, d in SLOW.items() if n < 20}))  # closing waits for blame
    assert [(e["state"], e["ts"]) for e in opened] == [("open", np.datetime64(T0 + 8 * PERIOD, "us"))]
    events = detector.update(iterations({n: d for n, d in SLOW.items() if n >= 20}))
    assert len(events) == 1
    event = events[0]
    assert (event["state"], event["event_id"]) == ("closed", opened[0]["event_id"])
    assert (event["kind"], event["job"], event["link"], event["direction"]) == (
        "collective_slowdown", "llama", "leaf3-spine2", "down")
    assert event["ts"] == np.datetime64(T0 + 8 * PERIOD, "us")
    assert event["ts_end"] == np.datetime64(T0 + 10 * PERIOD + 18 * MS, "us")
    details = json.loads(str(event["details"]))
    assert details["baseline_ms"] == pytest.approx(10.5)
    assert event["value"] == pytest.approx(25 / 10.5)
    assert [(it["iteration"], it["allreduce_ms"]) for it in details["iterations"]] == [(8, 20.0), (9, 25.0), (10, 18.0)]
    assert [(b["link"], b["overlap_ms"], b["peak_ce_ratio"]) for b in details["links"]] == [
        ("leaf3-spine2", pytest.approx(20.0), 0.3)]
    assert detector.flush() == []


def test_congestion_reported_after_the_slowdown_ended_is_still_blamed() -> None:
    detector = CollectiveDetector()
    assert [e["state"] for e in detector.update(iterations({n: d for n, d in SLOW.items() if n < 15}))] == ["open"]
    detector.observe([congestion("leaf1-spine1", T0 + 8 * PERIOD, T0 + 8 * PERIOD + 5 * MS, 0.2)])
    events = detector.update(iterations({n: d for n, d in SLOW.items() if n >= 15}))
    assert [b["link"] for b in json.loads(str(events[0]["details"]))["links"]] == ["leaf1-spine1"]


def test_jitter_raises_nothing_and_a_slowdown_open_at_the_end_is_flushed() -> None:
    detector = CollectiveDetector()
    assert detector.update(iterations(NORMAL)) == []
    assert [e["state"] for e in detector.update(iterations({n: 30.0 for n in range(40, 43)}))] == ["open"]
    events = detector.flush()
    assert len(events) == 1 and json.loads(str(events[0]["details"]))["links"] == []
    assert events[0]["link"] == ""


def test_no_slowdown_before_a_baseline_exists_and_jobs_are_separate() -> None:
    detector = CollectiveDetector()
    slow_start = {n: (40.0 if n < 5 else 30.0) for n in range(12)}
    assert detector.update(iterations(slow_start, job="bert")) == []
    assert detector.update(iterations(NORMAL)) == []
    assert detector.flush() == []


def test_slow_iterations_with_a_few_normal_ones_between_are_one_incident() -> None:
    """A stretch where congestion spares an iteration now and then is one slowdown, not one per slow run."""
    stretched = {**NORMAL, **{n: 16.0 for n in range(10, 30) if n % 4}}
    detector = CollectiveDetector()
    events = detector.update(iterations(stretched)) + detector.flush()
    assert [e["state"] for e in events] == ["open", "closed"]
    assert json.loads(str(events[-1]["details"]))["iterations"][-1]["iteration"] == 29


def test_a_job_run_again_with_iteration_numbers_from_zero_is_judged_again() -> None:
    """The demo regenerates its jobs every cycle: iteration numbers restart, and the slowdown of the second
    run must still be found."""
    detector = CollectiveDetector()
    first = detector.update(iterations(SLOW)) + detector.flush()
    later = {n + 50: d for n, d in SLOW.items()}  # starts after the first run ended...
    second = iterations(later)
    second["iteration"] -= 50  # ...numbered from 0 again
    events = detector.update(second) + detector.flush()
    assert [e["state"] for e in latest_rows(first)] == [e["state"] for e in latest_rows(events)] == ["closed"]
    assert events[-1]["ts"] == np.datetime64(T0 + 58 * PERIOD, "us")


def test_the_default_factor_finds_the_demo_stretch_from_40_to_60_ms() -> None:
    demo = {n: (59.4 if 20 <= n < 40 else 39.9) for n in range(60)}
    detector = CollectiveDetector()
    events = latest_rows(detector.update(iterations(demo)) + detector.flush())
    assert len(events) == 1 and events[0]["value"] == pytest.approx(59.4 / 39.9)


def test_an_iteration_stretched_while_a_link_it_crossed_failed_or_came_back_belongs_to_that_failure() -> None:
    """A link the job crosses fails during iteration 20 and is back during iteration 25: those iterations are
    the failure's consequence, not a collective slowdown; the same stretch elsewhere in time is one."""
    stretched = {**NORMAL, 20: 33.0, 25: 33.0, 33: 33.0}
    detector = CollectiveDetector()
    detector.observe([make_event("fast_recovery", ts=T0 + 20 * PERIOD + 5 * MS, ts_end=T0 + 20 * PERIOD + 7 * MS,
                                 severity="warning", link="leaf3-spine1", summary="",
                                 details={"link_back_us": T0 + 25 * PERIOD + 9 * MS})])
    events = latest_rows(detector.update(iterations(stretched)) + detector.flush())
    assert [json.loads(str(e["details"]))["iterations"][0]["iteration"] for e in events] == [33]
