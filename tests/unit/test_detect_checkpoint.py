"""The detectors' checkpoint: written whole, read back, a format-2 one migrated, anything else refused by name."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from pipeline.detect.checkpoint import FORMAT_VERSION, Checkpoint, load_checkpoint, save_checkpoint
from pipeline.detect.engine import DetectorSet
from pipeline.detect.events import Event, make_event
from pipeline.detect.link_status import LinkStatus, LinkStatusConfig
from pipeline.errors import InputError
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T0 = 1_767_225_600_000_000
MS = 1000
LINK = "leaf1-spine1"


def detectors() -> DetectorSet:
    return DetectorSet(load_topology(SAMPLES / "topology.yaml"))


def failure(ts: int, back: int) -> Event:
    return make_event("fast_recovery", ts=ts, ts_end=ts, severity="warning", link=LINK, device="leaf1",
                      summary="failed", flows_affected=2, details={"link_back_us": back})


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
    restored = load_checkpoint(path)
    assert restored is not None and restored.offsets == {("fabricscope.flows.v1", 0): 7}
    assert restored.detectors.link_status.merge([make_event(
        "link_down", ts=T0 + 77 * MS, ts_end=T0 + 77 * MS, severity="critical", link=LINK, summary="down")]) == []


def test_a_format_2_checkpoint_is_migrated_and_its_outage_goes_on(tmp_path: Path) -> None:
    """The counters' down at 77 ms was written by the old code; after the upgrade the traffic's earlier failure
    time is not a second link_down (the old row cannot be rewritten: format 2 did not keep it), and the
    outage it ends is timed from the earlier down: a flap."""
    path = tmp_path / "detect.state"
    old = detectors()
    old.link_status = format_2_link_status(T0 + 77 * MS)
    with path.open("wb") as out:
        pickle.dump((2, Checkpoint(old, {})), out)
    restored = load_checkpoint(path)
    assert restored is not None and restored.watermark.held_rows == 0  # format 2 fed every row as read
    merged = restored.detectors.link_status.merge([failure(T0, T0 + 60 * MS)])
    assert [(str(e["kind"]), int(e["ts"].astype("int64"))) for e in merged] == [
        ("fast_recovery", T0), ("link_up", T0 + 60 * MS), ("link_flap", T0)]


@pytest.mark.parametrize("version", [1, FORMAT_VERSION + 1])
def test_a_checkpoint_of_another_format_is_refused_naming_the_file(tmp_path: Path, version: int) -> None:
    path = tmp_path / "detect.state"
    with path.open("wb") as out:
        pickle.dump((version, Checkpoint(detectors(), {})), out)
    with pytest.raises(InputError, match=r"detect\.state"):
        load_checkpoint(path)
