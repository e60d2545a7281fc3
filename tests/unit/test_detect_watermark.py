"""The detectors' clock over partitions and collectors: rows wait until every live source has passed them;
a source that stopped is left out once idle, never by guessing from lag. Wall time is given, not read."""

from __future__ import annotations

import numpy as np

from pipeline import records
from pipeline.detect.events import Batch, times_us
from pipeline.detect.watermark import Watermark, WatermarkConfig

FLOWS = records.topic("flows")
P0, P1 = (FLOWS, 0), (FLOWS, 1)
T0 = 1_767_225_600_000_000
MS = 1000


def rows(exporter: str, *ends_ms: int) -> Batch:
    return {"ts_end": (T0 + np.array(ends_ms, dtype=np.int64) * MS).astype("datetime64[us]"),
            "exporter": np.array([exporter] * len(ends_ms), dtype=object)}


def released_ms(watermark: Watermark, now: float) -> list[int]:
    out = watermark.release(now)
    return sorted(((times_us(out["flows"]["ts_end"]) - T0) // MS).tolist()) if "flows" in out else []


def test_a_partition_read_ahead_waits_for_the_other() -> None:
    watermark = Watermark()
    watermark.assigned({P0, P1}, now=0.0)
    watermark.add(P0, rows("c1", 100, 2000, 5000), produced_ms=10, now=0.1)
    assert released_ms(watermark, 0.1) == []  # P1 newly assigned, nothing read from it yet
    watermark.add(P1, rows("c2", 50, 1000), produced_ms=10, now=0.2)
    assert released_ms(watermark, 0.2) == [50, 100, 1000]
    watermark.add(P1, rows("c2", 4000), produced_ms=20, now=0.3)
    assert released_ms(watermark, 0.3) == [2000, 4000]
    assert watermark.flush()["flows"]["ts_end"].size == 1


def test_two_collectors_in_one_partition_keep_their_own_time() -> None:
    watermark = Watermark()
    watermark.add(P0, rows("fast", 10, 3000), produced_ms=10, now=0.0)
    watermark.add(P0, rows("slow", 20), produced_ms=11, now=0.0)
    assert released_ms(watermark, 0.0) == [10, 20]


def test_a_collector_that_stopped_writing_into_a_busy_partition_is_idle() -> None:
    """The other collector's messages produced `idle_s` after its last one say it stopped."""
    watermark = Watermark(WatermarkConfig(idle_s=2.0))
    watermark.add(P0, rows("stopped", 100), produced_ms=1_000, now=0.0)
    watermark.add(P0, rows("going", 100, 900), produced_ms=2_500, now=0.1)
    assert released_ms(watermark, 0.1) == [100, 100]
    watermark.add(P0, rows("going", 1500), produced_ms=3_000, now=0.2)
    assert released_ms(watermark, 0.2) == [900, 1500]


def test_a_silent_partition_is_idle_only_once_a_poll_found_nothing_to_read() -> None:
    """Wall time alone is not enough: a busy consumer may not have reached the partition's rows."""
    watermark = Watermark(WatermarkConfig(idle_s=2.0))
    watermark.add(P1, rows("c2", 100), produced_ms=10, now=0.0)
    watermark.add(P0, rows("c1", 100, 900), produced_ms=10, now=0.0)
    watermark.add(P0, rows("c1", 1500), produced_ms=20, now=5.0)
    assert released_ms(watermark, 5.0) == [100, 100]
    watermark.caught_up(5.1)
    assert released_ms(watermark, 5.1) == [900, 1500]


def test_a_named_collector_not_heard_from_yet_holds_the_clock() -> None:
    """A collector starting later than the other by more than `idle_s` (a replay per collector, a slow start):
    unnamed, the first one's rows are fed alone and an incident both saw half of is measured from half its
    evidence; named, they wait for the second's."""
    named, unnamed = Watermark(WatermarkConfig(idle_s=2.0, collectors=("c1", "c2"))), Watermark()
    for watermark in (named, unnamed):
        watermark.assigned({P0, P1}, now=0.0)
        watermark.add(P0, rows("c1", 100, 900), produced_ms=10, now=0.0)
        watermark.caught_up(5.0)
    assert released_ms(unnamed, 5.0) == [100, 900]
    assert released_ms(named, 5.0) == []
    named.add(P1, rows("c2", 50, 800), produced_ms=5_010, now=5.0)
    assert released_ms(named, 5.1) == [50, 100, 800]


def test_a_collector_heard_on_one_partition_is_waited_for_on_the_others() -> None:
    """The late collector's first rows reach one partition before its others (the consumer reads each at its
    own pace): partitions that had gone quiet hold the clock again until they bring its rows or stay quiet
    for `idle_s`; else its rows on them come after the clock and an incident is measured from half its
    evidence (test_scale_out once: convergence 84.882 ms against the truth's 1.761)."""
    p2 = (FLOWS, 2)
    watermark = Watermark(WatermarkConfig(idle_s=2.0, collectors=("c1", "c2")))
    watermark.assigned({P0, P1, p2}, now=0.0)
    watermark.add(P0, rows("c1", 100, 900), produced_ms=10, now=0.0)
    watermark.caught_up(5.0)
    assert released_ms(watermark, 5.0) == []  # c2 awaited
    watermark.add(P1, rows("c2", 50, 3000), produced_ms=5_010, now=5.0)
    assert released_ms(watermark, 5.0) == []  # p2 went quiet before c2 started: it may hold c2's rows
    watermark.add(p2, rows("c2", 60, 800), produced_ms=5_010, now=5.1)
    assert released_ms(watermark, 5.1) == [50, 60, 100, 800]
    watermark.caught_up(7.5)
    assert released_ms(watermark, 7.5) == [900, 3000]


def test_a_named_collector_that_never_comes_holds_the_clock_for_the_wait_only() -> None:
    watermark = Watermark(WatermarkConfig(collectors=("c1", "gone"), collector_wait_s=10.0))
    watermark.add(P0, rows("c1", 100, 900), produced_ms=10, now=0.0)
    assert released_ms(watermark, 0.0) == []
    watermark.caught_up(9.9)
    assert released_ms(watermark, 9.9) == []
    assert released_ms(watermark, 10.0) == [100, 900]


def test_a_restored_clock_takes_this_starts_settings_and_waits_afresh() -> None:
    watermark = Watermark(WatermarkConfig(collectors=("c1", "c2"), collector_wait_s=1.0))
    watermark.add(P0, rows("c1", 100), produced_ms=10, now=0.0)
    assert released_ms(watermark, 5.0) == [100]  # the wait is over, c1 alone moves the clock
    watermark.add(P0, rows("c1", 900), produced_ms=20, now=5.0)
    watermark.restarted(100.0, WatermarkConfig(collectors=("c1", "c2"), collector_wait_s=30.0))
    assert released_ms(watermark, 110.0) == []  # a new start: c2 is awaited again, for this start's 30 s
    assert released_ms(watermark, 130.0) == [900]


def test_a_newly_assigned_partition_holds_the_clock_until_it_is_idle() -> None:
    watermark = Watermark(WatermarkConfig(idle_s=2.0))
    watermark.assigned({P0, P1}, now=0.0)
    watermark.add(P0, rows("c1", 100), produced_ms=10, now=0.5)
    watermark.caught_up(1.0)
    assert released_ms(watermark, 1.0) == []
    watermark.caught_up(2.5)
    assert released_ms(watermark, 2.5) == [100]


def test_a_partition_far_ahead_is_paused_and_the_one_holding_the_clock_never() -> None:
    watermark = Watermark(WatermarkConfig(pause_ahead_ms=1000))
    watermark.add(P0, rows("c1", 100, 5000), produced_ms=10, now=0.0)
    watermark.add(P1, rows("c2", 200), produced_ms=10, now=0.0)
    watermark.release(0.0)
    assert watermark.ahead(0.0) == {P0}
    watermark.add(P1, rows("c2", 4500), produced_ms=20, now=0.1)
    assert released_ms(watermark, 0.1) == [4500]
    assert watermark.ahead(0.1) == set()


def test_a_partition_that_moved_away_releases_what_it_held() -> None:
    watermark = Watermark()
    watermark.add(P0, rows("c1", 100, 5000), produced_ms=10, now=0.0)
    watermark.add(P1, rows("c2", 200), produced_ms=10, now=0.0)
    assert released_ms(watermark, 0.0) == [100, 200]
    moved = watermark.assigned({P1}, now=0.1)
    assert ((times_us(moved["flows"]["ts_end"]) - T0) // MS).tolist() == [5000]
    assert watermark.held_rows == 0
