"""The detectors' checkpoint: written whole, read back, formats 2 to 5 migrated, anything else refused by name."""

from __future__ import annotations

import ipaddress
import pickle
from pathlib import Path

import numpy as np
import pytest

from pipeline.detect.checkpoint import FORMAT_VERSION, Checkpoint, load_checkpoint, save_checkpoint
from pipeline.detect.collective import CollectiveConfig
from pipeline.detect.config import DetectorConfig
from pipeline.detect.congestion import CongestionConfig
from pipeline.detect.ecmp import EcmpConfig
from pipeline.detect.engine import DetectorSet
from pipeline.detect.events import Event, make_event
from pipeline.detect.link_status import LinkStatus, LinkStatusConfig
from pipeline.errors import InputError
from pipeline.records import empty_columns
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T0 = 1_767_225_600_000_000
MS = 1000
LINK = "leaf1-spine1"


TOPOLOGY = load_topology(SAMPLES / "topology.yaml")


def detectors() -> DetectorSet:
    return DetectorSet(TOPOLOGY)


def failure(ts: int, back: int) -> Event:
    return make_event("fast_recovery", ts=ts, ts_end=ts, severity="warning", link=LINK, device="leaf1",
                      summary="failed", flows_affected=2, details={"link_back_us": back})


def counters_down(link: str, ts: int) -> dict[str, np.ndarray]:
    columns = empty_columns("counters", 1)
    columns["ts"][0] = np.datetime64(ts, "us")
    columns["device"][0], columns["ifname"][0], columns["link"][0] = link.split("-")[0], "Ethernet50", link
    return columns


def toward_leaf4(rows: list[tuple[str, int, int, tuple[int, int]]]) -> dict[str, np.ndarray]:
    """Rows (link, first packet, last packet, PSNs) of one RoCE flow from leaf3 to leaf4: up on leaf3's links,
    down on leaf4's."""
    columns = empty_columns("flows", len(rows))
    for i, (link, start, end, psn) in enumerate(rows):
        columns["link"][i], columns["direction"][i] = link, "down" if link.startswith("leaf4-") else "up"
        columns["leaf"][i], columns["spine"][i] = link.split("-")
        columns["src_ip"][i] = ipaddress.IPv6Address("::ffff:10.0.3.1").packed
        columns["dst_ip"][i] = ipaddress.IPv6Address("::ffff:10.0.4.1").packed
        columns["src_port"][i], columns["dst_port"][i], columns["proto"][i], columns["roce_qp"][i] = 49152, 4791, 17, 7
        columns["ts_start"][i], columns["ts_end"][i] = np.datetime64(start, "us"), np.datetime64(end, "us")
        columns["ts_tail"][i] = np.datetime64(end - 300, "us")
        columns["psn_first"][i], columns["psn_last"][i] = psn
        columns["packets"][i] = columns["roce_write"][i] = 1000
    return columns


def format_2_link_status(down: int) -> LinkStatus:
    """LinkStatus as format 2 pickled it after a counters' link_down at `down`: report times only."""
    old = LinkStatus.__new__(LinkStatus)
    old.__dict__.update(config=LinkStatusConfig(), _reported={("link_down", LINK): [down]}, _flaps={},
                        _down={LINK: down})
    return old


def test_a_checkpoint_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "detect.state"
    saved = detectors()
    saved.link_status.merge([failure(T0, T0 + 500 * MS)])
    save_checkpoint(path, Checkpoint(saved, {("fabricscope.flows.v1", 0): 7}))
    restored = load_checkpoint(path, TOPOLOGY)
    assert restored is not None and restored.offsets == {("fabricscope.flows.v1", 0): 7}
    assert restored.detectors.link_status.merge([make_event(
        "link_down", ts=T0 + 77 * MS, ts_end=T0 + 77 * MS, severity="critical", link=LINK, summary="down")]) == []


def test_a_restored_state_takes_this_start_s_settings_but_keeps_those_its_state_is_shaped_by(tmp_path: Path) -> None:
    path = tmp_path / "detect.state"
    save_checkpoint(path, Checkpoint(detectors(), {}))
    restored = load_checkpoint(path, TOPOLOGY)
    assert restored is not None
    configured = DetectorSet(TOPOLOGY, DetectorConfig(
        ecmp=EcmpConfig(threshold=0.2, window_ms=2000.0), congestion=CongestionConfig(ce_ratio=0.1),
        collective=CollectiveConfig(baseline_window=30)))
    changes = restored.detectors.take_settings(configured)
    assert (restored.detectors.ecmp.config.threshold, restored.detectors.congestion.config.ce_ratio) == (0.2, 0.1)
    assert restored.detectors.ecmp.config.window_ms == 1000.0  # its pending windows are numbered by it
    assert restored.detectors.collective.config.baseline_window == 20
    assert [change.split(" (")[0] for change in changes] == [
        "ecmp.window_ms stays 1000.0", "ecmp.threshold 0.15 -> 0.2", "congestion.ce_ratio 0.05 -> 0.1",
        "collective.baseline_window stays 20"]
    assert detectors().take_settings(detectors()) == []


def test_a_format_2_checkpoint_is_migrated_and_its_outage_goes_on(tmp_path: Path) -> None:
    """The counters' down at 77 ms was written by the old code; after the upgrade the traffic's earlier failure
    time is not a second link_down (the old row cannot be rewritten: format 2 did not keep it), and the
    outage it ends is timed from the earlier down: a flap."""
    path = tmp_path / "detect.state"
    old = detectors()
    old.link_status = format_2_link_status(T0 + 77 * MS)
    with path.open("wb") as out:
        pickle.dump((2, Checkpoint(old, {})), out)
    restored = load_checkpoint(path, TOPOLOGY)
    assert restored is not None and restored.watermark.held_rows == 0  # format 2 fed every row as read
    merged = restored.detectors.link_status.merge([failure(T0, T0 + 60 * MS)])
    assert [(str(e["kind"]), int(e["ts"].astype("int64"))) for e in merged] == [
        ("fast_recovery", T0), ("link_up", T0 + 60 * MS), ("link_flap", T0)]


def test_a_format_3_checkpoint_gets_the_members_topology_for_the_far_side_rule(tmp_path: Path) -> None:
    """Format 3 pickled fast recovery without the topology; the restored detector takes the member's."""
    path = tmp_path / "detect.state"
    old = detectors()
    for name in ("topology", "_reported_downs", "_left_far"):
        del old.fast_recovery.__dict__[name]
    with path.open("wb") as out:
        pickle.dump((3, Checkpoint(old, {("fabricscope.flows.v1", 0): 3})), out)
    restored = load_checkpoint(path, TOPOLOGY)
    assert restored is not None and restored.offsets == {("fabricscope.flows.v1", 0): 3}
    assert restored.detectors.fast_recovery.topology is TOPOLOGY
    # Its state is whole again: a silence of leaf3-spine2 whose flow toward leaf4 was cut while the counters
    # reported leaf4-spine2 (not mirrored) down is that failure's far side, not a failure of leaf3-spine2
    # (which a detector without the topology reports).
    blind = detectors()
    blind.fast_recovery.topology = None
    for state, reported in ((restored.detectors, []), (blind, ["leaf3-spine2"])):
        state.update("counters", counters_down("leaf4-spine2", T0 + 30 * MS))
        events = state.update("flows", toward_leaf4([("leaf3-spine2", T0 - 500 * MS, T0, (0, 1000)),
                                                     ("leaf3-spine1", T0 + 5 * MS, T0 + 2600 * MS, (1020, 9000))]))
        assert [e["link"] for e in events + state.flush() if e["kind"] == "fast_recovery"] == reported


def test_a_format_4_checkpoint_learns_the_far_sides_of_the_failures_after_it(tmp_path: Path) -> None:
    """Format 4 pickled fast recovery without the flows each failure moved off its far leaves' links. Restored,
    it remembers them for the failures that follow: leaf4-spine2 fails between two messages of a flow from
    leaf3, which comes back through spine1; when leaf4-spine2 is repaired 3 s later the flow goes back through
    spine2, away from leaf3-spine1 for 5.5 ms (longer than its spacing allows). That is the move back of the
    failure, not a failure of leaf3-spine1."""
    path = tmp_path / "detect.state"
    old = detectors()
    del old.fast_recovery.__dict__["_left_far"]
    with path.open("wb") as out:
        pickle.dump((4, Checkpoint(old, {("fabricscope.flows.v1", 0): 3})), out)
    restored = load_checkpoint(path, TOPOLOGY)
    assert restored is not None and restored.detectors.fast_recovery.topology == TOPOLOGY  # its own, pickled
    state, repair = restored.detectors, T0 + 3000 * MS  # after more than timeout_ms
    state.update("counters", counters_down("leaf4-spine2", T0 + 1 * MS))
    events = state.update("flows", toward_leaf4([
        ("leaf3-spine2", T0 - 500 * MS, T0 - 2 * MS, (0, 1000)),
        ("leaf4-spine2", T0 - 500 * MS, T0 - 2 * MS, (0, 1000)),
        ("leaf3-spine1", T0 + 15 * MS, repair - 3500, (1001, 5000)),
        ("leaf4-spine1", T0 + 15 * MS, repair - 3400, (1001, 5000)),
        ("leaf3-spine2", repair + 2000, repair + 2000 * MS, (5001, 9000)),
        ("leaf4-spine2", repair + 2100, repair + 2000 * MS, (5001, 9000))]))
    assert {e["link"] for e in events + state.flush() if e["kind"] == "fast_recovery"} == {"leaf4-spine2"}


def test_a_format_5_checkpoint_takes_the_rows_and_failures_it_kept_for_no_pairs(tmp_path: Path) -> None:
    """Format 5 kept fast recovery's rows and failures without the pause before a flow's last pair of packets.
    Restored, they are taken for no pairs, and the failure open across the restart goes on: leaf3-spine1 went
    down after the flow's last packet there, and the flow is back through spine2 4.2 ms later with PSNs
    skipped."""
    path = tmp_path / "detect.state"
    old = detectors()
    old.update("counters", counters_down("leaf3-spine1", T0 + 1 * MS))
    events = old.update("flows", toward_leaf4([("leaf3-spine1", T0 - 500 * MS, T0, (0, 1000)),
                                               ("leaf4-spine1", T0 - 500 * MS, T0 + 10, (0, 1000)),
                                               ("leaf2-spine2", T0 - 500 * MS, T0 + 100 * MS, (0, 1000))]))
    assert [(e["kind"], e["state"]) for e in events if e["kind"] == "fast_recovery"] == [("fast_recovery", "open")]
    recovery = old.fast_recovery
    del recovery._rows["pause"]
    for failure in recovery._pending:
        del failure.__dict__["pause"]
    with path.open("wb") as out:
        pickle.dump((5, Checkpoint(old, {("fabricscope.flows.v1", 0): 2})), out)
    restored = load_checkpoint(path, TOPOLOGY)
    assert restored is not None
    state = restored.detectors
    assert [f.pause.tolist() for f in state.fast_recovery._pending] == [[0]]  # a failure not yet written reads it
    events = state.update("flows", toward_leaf4([("leaf3-spine2", T0 + 4200, T0 + 2600 * MS, (1010, 9000)),
                                                 ("leaf4-spine2", T0 + 4210, T0 + 2600 * MS, (1010, 9000))]))
    assert [(e["link"], e["local_convergence_ms"], e["packets_lost"]) for e in events + state.flush()
            if e["kind"] == "fast_recovery"] == [("leaf3-spine1", pytest.approx(4.2), 9)]


@pytest.mark.parametrize("version", [1, FORMAT_VERSION + 1])
def test_a_checkpoint_of_another_format_is_refused_naming_the_file(tmp_path: Path, version: int) -> None:
    path = tmp_path / "detect.state"
    with path.open("wb") as out:
        pickle.dump((version, Checkpoint(detectors(), {})), out)
    with pytest.raises(InputError, match=r"detect\.state"):
        load_checkpoint(path, TOPOLOGY)
