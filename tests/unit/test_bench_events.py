"""bench/events.py's bookkeeping: one row per incident, and one detected event per truth incident."""

from __future__ import annotations

from bench.events import evaluate, incidents


def _row(kind: str, ts: str, ts_end: str | None = None, **fields: object) -> dict:
    return {"kind": kind, "ts": ts, "ts_end": ts_end or ts, "link": "", "job": "", "direction": "unknown",
            **fields}


def test_latest_row_of_each_event_id_is_the_incident() -> None:
    rows = [_row("congestion", "2026-01-16T08:00:01Z", event_id="a", state="open", updated="2026-01-16T08:00:02Z"),
            _row("congestion", "2026-01-16T08:00:01Z", "2026-01-16T08:00:05Z", event_id="a", state="closed",
                 updated="2026-01-16T08:00:06Z"),
            _row("link_down", "2026-01-16T08:00:03Z", event_id="b", state="closed", updated="2026-01-16T08:00:03Z")]
    kept, _ = incidents(rows)
    assert [(r["event_id"], r["state"]) for r in kept] == [("a", "closed"), ("b", "closed")]
    assert kept[0]["ts_end_us"] - kept[0]["ts_us"] == 4_000_000
    assert len(incidents([{k: v for k, v in r.items() if k not in ("event_id", "state", "updated")}
                          for r in rows])[0]) == 3  # without event_id, every row is one incident


def test_each_truth_incident_matches_one_event_at_most() -> None:
    start = 1_768_550_400_000_000
    truth = {"start_us": start, "jobs": {"llama": {"hosts": ["10.0.2.10", "10.0.1.10"]}}, "events": [
        {"kind": "link_down", "link": "leaf1-spine1", "ts_us": start + 1_000_000},
        {"kind": "collective_slowdown", "job": "llama", "ts_us": start + 5_000_000, "ts_end_us": start + 7_000_000},
    ]}
    events, _ = incidents([
        _row("link_down", "2026-01-16T08:00:01.095Z", link="leaf1-spine1"),
        _row("link_down", "2026-01-16T08:00:01.100Z", link="leaf1-spine1"),  # a second report of the same one
        _row("link_down", "2026-01-16T08:00:01.000Z", link="leaf2-spine1"),  # elsewhere
        _row("collective_slowdown", "2026-01-16T08:00:05Z", "2026-01-16T08:00:07Z", job="job-10.0.1.10"),
    ])
    results = {r.kind: r for r in evaluate(truth, events)}
    down = results["link_down"]
    assert len(down.pairs) == 1 and down.pairs[0][1]["ts_us"] == start + 1_095_000
    assert len(down.false_positives) == 2 and not down.missed
    slowdown = results["collective_slowdown"]
    assert len(slowdown.pairs) == 1 and not slowdown.false_positives  # the collector's name of the group
