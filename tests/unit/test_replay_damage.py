"""Damaged captures in `replay` (issue 13, item 3): every skipped record is reported by reason, and a file whose
damage leaves nothing to read is bad input (exit 2, one line naming it) without losing the other files' records."""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from pathlib import Path

from pcap_builders import pcap_header, pcap_record, pcapng_epb, pcapng_idb, pcapng_shb
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from test_cli import SAMPLES, fabricscope, one_line_error

from pipeline.streaming import StreamSummary

T0 = 1_700_000_000_000_000_000
FRAMES = [
    bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.0.1.5", dst="10.0.2.7")
          / UDP(sport=40_000 + i, dport=9000) / (b"x" * 40))
    for i in range(12)
]


def replay(tmp_path: Path, *pcaps: Path) -> tuple[int, str, int]:
    """Exit code, stderr and packets in the flow rows written by `replay --out`."""
    out = tmp_path / "flows.jsonl"
    done = fabricscope("replay", *map(str, pcaps), "--topology", str(SAMPLES / "topology.yaml"), "--out", str(out),
                       "--no-progress")
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return done.returncode, done.stderr, sum(row["packets"] for row in rows)


def good_pcap(path: Path) -> Path:
    path.write_bytes(pcap_header() + b"".join(pcap_record(T0 + i * 1000, f) for i, f in enumerate(FRAMES)))
    return path


def test_skipped_records_are_counted_by_reason_in_the_summary(tmp_path: Path) -> None:
    records = [pcap_record(T0 + i * 1000, f) for i, f in enumerate(FRAMES)]
    records[3] = pcap_record(T0 + 3000, FRAMES[3], caplen=10_000_000)  # bad_caplen, then resync
    records[7] = pcap_record(T0 + 7000, b"", caplen=0, wirelen=0)  # empty
    path = tmp_path / "damaged.pcap"
    path.write_bytes(pcap_header() + b"".join(records)[:-5])  # the last record cut short: past_eof
    code, stderr, packets = replay(tmp_path, path)
    assert code == 0, stderr
    kept = len(FRAMES) - 3
    assert packets == kept
    assert f"{kept} packets, 3 records skipped (1 bad_caplen, 1 past_eof, 1 empty), 0 malformed packets" in stderr


def test_pcapng_with_a_broken_interface_block_is_bad_input(tmp_path: Path) -> None:
    idb = bytearray(pcapng_idb("tap-a"))
    struct.pack_into("<I", idb, len(idb) - 4, 999)  # trailer length differs from the header's
    path = tmp_path / "broken_idb.pcapng"
    path.write_bytes(pcapng_shb() + bytes(idb) + b"".join(pcapng_epb(0, i, f) for i, f in enumerate(FRAMES)))
    line = one_line_error(fabricscope("replay", str(path), "--topology", str(SAMPLES / "topology.yaml"), "--out",
                                      str(tmp_path / "x.jsonl"), "--no-progress"))
    assert f"{path}: " in line and "interface description block" in line
    assert f"{len(FRAMES)} bad_interface" in line


def test_garbage_after_a_valid_header_is_bad_input_and_earlier_files_are_kept(tmp_path: Path) -> None:
    good = good_pcap(tmp_path / "good.pcap")
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(pcap_header() + bytes(range(256)) * 8)
    code, stderr, packets = replay(tmp_path, good, garbage)
    assert code == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and f"{garbage}: no readable record: " in lines[0], stderr
    assert "the records of the other files were kept" in lines[0]
    assert packets == len(FRAMES)


def test_a_capture_with_no_records_is_not_damage(tmp_path: Path) -> None:
    path = tmp_path / "header_only.pcap"
    path.write_bytes(pcap_header())
    code, stderr, packets = replay(tmp_path, path)
    assert code == 0 and "0 packets, 0 records skipped" in stderr and packets == 0


def test_the_summary_of_nothing_sent_says_zero_rows() -> None:
    """Issue 13, item 8: it read ' rows in ClickHouse' with the count missing."""
    assert str(StreamSummary(Counter(), 0)) == "0 rows in ClickHouse; 0 events"
    assert str(StreamSummary(Counter(flows=3), 1)) == "3 flows rows in ClickHouse; 1 events"


def test_a_fifo_is_refused_at_once_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    """Issue 13, item 8: opening a FIFO with no writer blocked replay silently (the helper's timeout fails a
    hang). Captures are mapped files; a live stream goes through `capture`."""
    fifo = tmp_path / "live.pcap"
    os.mkfifo(fifo)
    line = one_line_error(fabricscope("replay", str(good_pcap(tmp_path / "good.pcap")), str(fifo), "--topology",
                                      str(SAMPLES / "topology.yaml"), "--out", str(tmp_path / "x.jsonl")))
    assert f"{fifo}: is a FIFO, not a capture file" in line
