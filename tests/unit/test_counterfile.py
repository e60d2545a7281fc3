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
        (_line(in_pkts=-1), "in_pkts: expected an integer in 0..18446744073709551615"),
        (_line(in_octets=10**26), "in_octets: expected an integer in 0..18446744073709551615"),
        (_line(in_octets=2**64), "in_octets: expected an integer in 0..18446744073709551615"),
        (_line(oper_up=256), "oper_up: expected an integer in 0..1"),
        (_line(ts="0001-01-01T00:00:00Z"), "ts: year 1 is outside 1900..2299"),
        (_line(ts=1700000000), "ts: expected an ISO 8601 time"),
        (_line().replace('"device": "leaf1"', '"device": "leaf1", "device": "leaf2"'), "duplicate key 'device'"),
        (_line().replace('"in_pkts": 0', '"in_pkts": NaN'), "not JSON: NaN"),
        ("[" * 100_000, "not JSON: nested too deeply"),
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


def test_a_line_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    """Issue 13: a counters file that was not UTF-8 was a UnicodeDecodeError traceback."""
    path = tmp_path / "c.jsonl"
    path.write_bytes((_line() + "\n" + _line(device="leafX").replace("leafX", "leaf\u00e9") + "\n").encode("latin-1"))
    with pytest.raises(InputError, match=r"c.jsonl:2: not UTF-8 text \(byte 0xe9 at column \d+\)$"):
        list(read_counters(path))


def test_the_generators_sample_reads_whole() -> None:
    sample = sorted(SAMPLES.glob("*.counters.jsonl"))[0]
    lines = sum(1 for line in sample.open() if line.strip())
    assert sum(len(b["device"]) for b in read_counters(sample)) == lines
