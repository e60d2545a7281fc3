"""Counters JSONL → counters batches: every column typed as records.py says, bad lines named."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pipeline import codec, records
from pipeline.counterfile import read_counters
from pipeline.errors import InputError

SAMPLES = Path(__file__).parents[2] / "samples"


def _line(**overrides: object) -> str:
    item: dict[str, object] = {c.name: 0 for c in records.COUNTERS}
    item.update(ts="2026-01-15T11:00:00.250000Z", device="leaf1", ifname="Ethernet49", link="leaf1-spine1",
                source="file", in_octets=2**63 + 5)
    item.update(overrides)
    return json.dumps(item)


def test_lines_become_typed_batches(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join([_line(), "", _line(ts="2026-01-15T12:00:00+01:00", device="spine1")]) + "\n")
    batches = list(read_counters(path, batch_rows=1))
    assert [len(b["device"]) for b in batches] == [1, 1]
    first, second = batches
    assert first["ts"][0] == np.datetime64("2026-01-15T11:00:00.250000")
    assert second["ts"][0] == np.datetime64("2026-01-15T11:00:00")
    assert first["in_octets"].dtype == np.uint64 and int(first["in_octets"][0]) == 2**63 + 5
    assert codec.decode("counters", codec.encode("counters", first)[0].value).num_rows == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        (_line(in_pkts=-1), "in_pkts: expected a non-negative integer"),
        (_line(device=3), "device: expected a string"),
        (_line(ts="yesterday"), "ts: Invalid isoformat"),
        (json.dumps({"ts": "2026-01-15T11:00:00Z"}), "missing field device"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text(_line() + "\n" + line + "\n")
    with pytest.raises(InputError, match=f"c.jsonl:2: {reason}"):
        list(read_counters(path))


def test_the_generators_sample_reads_whole() -> None:
    sample = sorted(SAMPLES.glob("*.counters.jsonl"))[0]
    lines = sum(1 for line in sample.open() if line.strip())
    assert sum(len(b["device"]) for b in read_counters(sample)) == lines
