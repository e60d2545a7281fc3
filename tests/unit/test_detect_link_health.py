"""Link health on hand-built counter rows: oper status, flaps, error rates, wraps and resets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.detect.link_health import (
    LinkHealthConfig,
    LinkHealthDetector,
    counter_deltas,
    counter_rates,
    traffic_rates,
    wrap_limits,
)
from pipeline.records import empty_columns
from pipeline.topology import load_topology

T0 = 1_700_000_000_000_000
S = 1_000_000
SPEED = 400_000_000_000
TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml")


def samples(rows: list[dict[str, int]], device: str = "leaf1", ifname: str = "Ethernet49",
            link: str = "leaf1-spine1") -> dict[str, np.ndarray]:
    """Counter rows of one port; each dict gives `t` (seconds after T0), `up` and any counters."""
    columns = empty_columns("counters", len(rows))
    for i, r in enumerate(rows):
        columns["ts"][i] = np.datetime64(T0 + r["t"] * S, "us")
        columns["device"][i], columns["ifname"][i], columns["link"][i] = device, ifname, link
        columns["oper_up"][i] = r.get("up", 1)
        columns["speed_bps"][i] = SPEED
        for name, value in r.items():
            if name not in ("t", "up"):
                columns[name][i] = value
    return columns


def kinds(events: list[dict[str, object]]) -> list[str]:
    return [str(e["kind"]) for e in events]


def test_wraps_and_resets_never_spike() -> None:
    prev = np.array([2**32 - 1000, 2**64 - 100, 5_000_000_000_000, 3_000_000_000, 10], dtype=np.uint64)
    cur = np.array([500, 50, 1000, 20, 25], dtype=np.uint64)
    limit = np.full(5, 1e12)
    assert counter_deltas(prev, cur, limit).tolist() == [1500, 150, 1000, 2**32 - 3_000_000_000 + 20, 15]
    tight = np.full(5, 1e6)  # a slow port cannot have moved 1.29e9 in the interval: that drop was a reset
    assert counter_deltas(prev, cur, tight).tolist() == [1500, 150, 1000, 20, 15]


def test_wrap_limits_follow_line_rate() -> None:
    limits = wrap_limits(8e9, 2 * S, 1.0)
    assert limits[0] == pytest.approx(2e9)
    assert limits[2] == pytest.approx(2e9 / 64)
    assert np.isinf(wrap_limits(0, S, 1.1)).all()


def test_utilisation_per_direction_across_a_32_bit_wrap() -> None:
    rows = samples([
        {"t": 0, "out_octets": 2**32 - 1_000_000, "in_octets": 2**64 - 5_000_000, "out_pkts": 10},
        {"t": 10, "out_octets": 4_000_000, "in_octets": 5_000_000, "out_pkts": 1010},
    ])
    rates = counter_rates(rows, TOPOLOGY)
    assert rates["direction"].tolist() == ["up", "down"]
    assert rates["bps"].tolist() == pytest.approx([5_000_000 * 8 / 10, 10_000_000 * 8 / 10])
    assert rates["pps"][0] == pytest.approx(100.0)
    assert rates["utilisation"][0] == pytest.approx(4_000_000 / SPEED)
    spine_side = counter_rates(samples([{"t": 0}, {"t": 1, "out_octets": 1000}], device="spine1",
                                       ifname="Ethernet1"), TOPOLOGY)
    assert spine_side["direction"][0] == "down" and spine_side["bps"][0] == pytest.approx(8000.0)


def test_down_and_up_named_by_device_and_link() -> None:
    detector = LinkHealthDetector()
    assert detector.update(samples([{"t": 0}, {"t": 10}])) == []
    events = detector.update(samples([{"t": 20, "up": 0}, {"t": 30, "up": 1}]))
    assert kinds(events) == ["link_down", "link_up"]
    assert [(e["device"], e["link"]) for e in events] == [("leaf1", "leaf1-spine1")] * 2
    assert events[0]["ts"] == np.datetime64(T0 + 20 * S, "us") and events[0]["severity"] == "critical"
    assert detector.flush() == []


def test_flapping_link_is_one_flap_event() -> None:
    detector = LinkHealthDetector(LinkHealthConfig(flap_transitions=3, flap_window_ms=60_000))
    rows = [{"t": 0}] + [{"t": 10 * k, "up": k % 2 == 0} for k in range(1, 7)] + [{"t": 200}]
    events = detector.update(samples(rows))
    flaps = [e for e in events if e["kind"] == "link_flap"]
    assert kinds(events).count("link_down") == 3 and kinds(events).count("link_up") == 3
    assert len(flaps) == 1
    assert flaps[0]["ts"] == np.datetime64(T0 + 10 * S, "us")
    assert flaps[0]["ts_end"] == np.datetime64(T0 + 60 * S, "us")
    assert flaps[0]["value"] == 6
    assert detector.flush() == []


def test_flap_still_open_at_the_end_is_flushed() -> None:
    detector = LinkHealthDetector()
    detector.update(samples([{"t": 0}, {"t": 1, "up": 0}, {"t": 2, "up": 1}, {"t": 3, "up": 0}]))
    assert kinds(detector.flush()) == ["link_flap"]


def test_rising_fcs_errors_are_one_episode_with_totals() -> None:
    detector = LinkHealthDetector()
    rows = [{"t": 0, "fcs_errors": 7}, {"t": 10, "fcs_errors": 107, "in_errors": 100},
            {"t": 20, "fcs_errors": 407, "in_errors": 400}, {"t": 30, "fcs_errors": 408, "in_errors": 401}]
    event = next(e for e in detector.update(samples(rows)))
    assert event["kind"] == "errors" and event["link"] == "leaf1-spine1"
    assert event["ts"] == np.datetime64(T0, "us") and event["ts_end"] == np.datetime64(T0 + 20 * S, "us")
    assert event["value"] == pytest.approx(30.0)
    details = json.loads(str(event["details"]))
    assert (details["fcs_errors"], details["in_errors"], details["samples"]) == (400, 400, 2)


def test_reboot_reset_and_clean_counters_raise_nothing() -> None:
    detector = LinkHealthDetector()
    rows = [
        {"t": 0, "in_octets": 9 * 10**12, "in_discards": 5_000_000, "fcs_errors": 10**6, "in_pkts": 10**10},
        {"t": 10, "in_octets": 9 * 10**12 + 10**9, "in_discards": 5_000_000, "fcs_errors": 10**6, "in_pkts": 10**10},
        {"t": 20, "in_octets": 2000, "in_discards": 3, "fcs_errors": 0, "in_pkts": 20},
        {"t": 30, "in_octets": 10**9, "in_discards": 3, "fcs_errors": 0, "in_pkts": 10**6},
    ]
    assert detector.update(samples(rows)) == []
    assert detector.flush() == []
    rates = counter_rates(samples(rows), TOPOLOGY)
    assert rates["bps"][rates["direction"] == "down"].tolist() == pytest.approx([8e8, 1600.0, (10**9 - 2000) * 0.8])


def test_utilisation_from_link_bins_when_counters_are_absent() -> None:
    columns = empty_columns("link_bins", 4)
    for i, (offset, link, direction, size) in enumerate([
        (0, "leaf1-spine1", "up", 10**9), (10_000, "leaf1-spine1", "up", 10**9),
        (20_000, "leaf1-spine1", "down", 5 * 10**8), (S + 10_000, "leaf1-spine1", "up", 2 * 10**9),
    ]):
        columns["ts"][i] = np.datetime64(T0 + offset, "us")
        columns["link"][i], columns["direction"][i], columns["bytes"][i] = link, direction, size
    rates = traffic_rates(columns, TOPOLOGY)
    assert rates["ts"].tolist() == [np.datetime64(T0, "us").item()] * 2 + [np.datetime64(T0 + S, "us").item()]
    assert rates["direction"].tolist() == ["down", "up", "up"]
    assert rates["bps"].tolist() == pytest.approx([4e9, 16e9, 16e9])
    assert rates["utilisation"].tolist() == pytest.approx([0.01, 0.04, 0.04])


def both(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([first[name], second[name]]) for name in first}


def test_both_ends_of_a_link_make_one_down_and_one_up() -> None:
    detector = LinkHealthDetector()
    leaf = samples([{"t": 0}, {"t": 10, "up": 0}, {"t": 20, "up": 0}, {"t": 30}])
    spine = samples([{"t": 0}, {"t": 10, "up": 0}, {"t": 20}, {"t": 30}], device="spine1", ifname="Ethernet1")
    events = detector.update(both(spine, leaf))
    assert [(e["kind"], e["link"], e["device"]) for e in events] == [
        ("link_down", "leaf1-spine1", "spine1"), ("link_up", "leaf1-spine1", "leaf1")]
    assert events[1]["ts"] == np.datetime64(T0 + 30 * S, "us")


def test_a_port_that_is_not_a_fabric_link_has_its_own_status() -> None:
    detector = LinkHealthDetector()
    host_port = samples([{"t": 0}, {"t": 10, "up": 0}], device="leaf1", ifname="Ethernet1", link="")
    fabric = samples([{"t": 0}, {"t": 10, "up": 0}])
    events = detector.update(both(host_port, fabric))
    assert sorted((e["link"], e["details"]) for e in events) == [
        ("", '{"ifname": "Ethernet1", "previous_sample": "2023-11-14T22:13:20.000000Z"}'),
        ("leaf1-spine1", '{"ifname": "Ethernet49", "previous_sample": "2023-11-14T22:13:20.000000Z"}')]
