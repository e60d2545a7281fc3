"""A paced replay that falls behind real time says how far, in the replay's summary and the demo's cycle line."""

from __future__ import annotations

import struct
import time
from pathlib import Path

from collectors.replay import PACED_BATCH_SIZE, Pace, replay_batches
from tests.unit.test_cli import SAMPLES, fabricscope

FRAME = bytes(60)


def write_two_batches(path: Path, gap_us: int) -> None:
    """One paced batch of packets at t = 0, then one more packet `gap_us` later: it starts the second batch."""
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for n in range(PACED_BATCH_SIZE + 1):
            sec, usec = divmod(gap_us if n == PACED_BATCH_SIZE else 0, 1_000_000)
            out.write(struct.pack("<IIII", 1_700_000_000 + sec, usec, len(FRAME), len(FRAME)) + FRAME)


def test_a_consumer_slower_than_the_capture_is_measured_behind(tmp_path: Path) -> None:
    capture = tmp_path / "two.pcap"
    write_two_batches(capture, gap_us=10_000)
    pace = Pace()
    sizes = []
    for batch in replay_batches([capture], speed=1.0, progress=False, pace=pace):
        sizes.append(len(batch))
        time.sleep(0.3)  # the second batch was due 10 ms after the first
    assert sizes == [PACED_BATCH_SIZE, 1]
    assert pace.behind_s >= 0.29
    assert str(pace) == f"at most {pace.behind_s:.1f} s behind real time"


def test_a_consumer_that_keeps_up_is_never_measured_behind(tmp_path: Path) -> None:
    capture = tmp_path / "two.pcap"
    write_two_batches(capture, gap_us=2_000_000)  # due 0.2 s after the first at 10x: the consumer idles meanwhile
    pace = Pace()
    assert sum(len(batch) for batch in replay_batches([capture], speed=10.0, progress=False, pace=pace)) == 4097
    assert pace.behind_s == 0.0


def test_replay_summary_says_how_far_a_paced_replay_fell_behind(tmp_path: Path) -> None:
    args = ("replay", str(SAMPLES / "mixed.pcap"), "--topology", str(SAMPLES / "topology.yaml"), "--no-progress",
            "--workers", "1", "--out")
    paced = fabricscope(*args, str(tmp_path / "paced.jsonl"), "--speed", "1000")
    assert paced.returncode == 0, paced.stderr
    assert "s behind real time;" in paced.stderr
    full = fabricscope(*args, str(tmp_path / "full.jsonl"))
    assert full.returncode == 0, full.stderr
    assert "behind real time" not in full.stderr
