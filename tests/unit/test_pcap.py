"""Capture sources: pcap in both resolutions and byte orders, pcapng interfaces and units, damage and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pcap_builders import (
    frames_of,
    pcap_file,
    pcap_header,
    pcap_record,
    pcapng_block,
    pcapng_epb,
    pcapng_idb,
    pcapng_pb,
    pcapng_shb,
    pcapng_spb,
    read_all,
)
from requirements import requires

from collectors.pcapfile import PcapFile, PcapngFile, open_capture
from pipeline.errors import InputError

T0 = 1_700_000_000_123_456_789
FRAMES = [bytes([i]) * (60 + i) for i in range(10)]


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_every_magic(tmp_path: Path, big: bool, nano: bool) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_file([(T0 + i * 1_000_001, f) for i, f in enumerate(FRAMES)], big=big, nano=nano))
    batches, stats = read_all(path)
    assert frames_of(batches) == FRAMES
    ts = np.concatenate([b.ts_ns for b in batches])
    expected = np.array([T0 + i * 1_000_001 for i in range(len(FRAMES))])
    assert (ts == (expected if nano else expected // 1000 * 1000)).all()
    assert stats.records == len(FRAMES) and stats.skipped_total == 0
    assert all(b.interfaces == ("",) and b.linktype == 1 for b in batches)


def test_batches_split_at_batch_size(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_file([(T0, f) for f in FRAMES]))
    reader = open_capture(path, batch_size=4)
    assert isinstance(reader, PcapFile)
    batches = list(reader)
    assert [len(b) for b in batches] == [4, 4, 2]
    assert frames_of(batches) == FRAMES


def test_wirelen_kept_apart_from_caplen(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_header(snaplen=64) + pcap_record(T0, FRAMES[0], wirelen=1500))
    batches, _ = read_all(path)
    assert batches[0].caplen.tolist() == [60] and batches[0].wirelen.tolist() == [1500]


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_interfaces_units_and_blocks(tmp_path: Path, big: bool) -> None:
    path = tmp_path / "a.pcapng"
    path.write_bytes(
        pcapng_shb(big=big)
        + pcapng_idb("tap-l1s1", big=big)  # default microseconds
        + pcapng_idb("tap-l2s2", tsresol=9, big=big)
        + pcapng_epb(0, T0 // 1000, FRAMES[0], big=big)
        + pcapng_epb(1, T0, FRAMES[1], wirelen=1000, big=big)
        + pcapng_idb("tap-l3s1", tsresol=0x80 | 20, tsoffset=10, big=big)  # 2^-20 s units, +10 s
        + pcapng_epb(2, 3 << 20 | 1 << 19, FRAMES[2], big=big)
        + pcapng_spb(FRAMES[3], big=big)
    )
    reader = open_capture(path)
    assert isinstance(reader, PcapngFile)
    batches = list(reader)
    assert frames_of(batches) == FRAMES[:4]
    assert batches[-1].interfaces == ("tap-l1s1", "tap-l2s2", "tap-l3s1")
    interface = np.concatenate([b.interface for b in batches])
    assert interface.tolist() == [0, 1, 2, 0]
    ts = np.concatenate([b.ts_ns for b in batches])
    assert ts[:3].tolist() == [T0 // 1000 * 1000, T0, 13_500_000_000]
    assert np.concatenate([b.wirelen for b in batches])[1] == 1000
    assert reader.stats.records == 4 and reader.stats.skipped_total == 0


def test_pcapng_new_section_restarts_interface_ids(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    path.write_bytes(
        pcapng_shb() + pcapng_idb("a") + pcapng_epb(0, 1, FRAMES[0])
        + pcapng_shb(big=True) + pcapng_idb("b", big=True) + pcapng_epb(0, 2, FRAMES[1], big=True)
    )
    batches, stats = read_all(path)
    assert frames_of(batches) == FRAMES[:2]
    assert [b.interfaces[i] for b in batches for i in b.interface] == ["a", "b"]
    assert stats.skipped_total == 0


def test_pcapng_undeclared_interface_and_oversized_caplen_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    path.write_bytes(
        pcapng_shb() + pcapng_idb("a", snaplen=100) + pcapng_epb(0, 1, FRAMES[0])
        + pcapng_epb(5, 2, FRAMES[1]) + pcapng_epb(0, 3, FRAMES[2], caplen=500) + pcapng_epb(0, 4, FRAMES[3])
    )
    batches, stats = read_all(path)
    assert frames_of(batches) == [FRAMES[0], FRAMES[3]]
    assert stats.skipped["bad_interface"] == 1 and stats.skipped["bad_caplen"] == 1


def test_pcapng_truncated_block_keeps_the_good_ones(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    body = pcapng_shb() + pcapng_idb("a") + b"".join(pcapng_epb(0, i, f) for i, f in enumerate(FRAMES))
    path.write_bytes(body[:-30])
    batches, stats = read_all(path)
    assert frames_of(batches) == FRAMES[:-1]
    assert stats.skipped_total == 1


def test_pcap_truncated_last_record(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_file([(T0, f) for f in FRAMES])[:-5])
    batches, stats = read_all(path)
    assert frames_of(batches) == FRAMES[:-1]
    assert stats.skipped["past_eof"] == 1 and stats.records == len(FRAMES) - 1


def test_pcap_absurd_caplen_in_the_middle_resynchronises(tmp_path: Path) -> None:
    records = [pcap_record(T0 + i, f) for i, f in enumerate(FRAMES)]
    records[4] = pcap_record(T0 + 4, FRAMES[4], caplen=10_000_000)
    records[6] = pcap_record(T0 + 6, b"", caplen=0, wirelen=0)
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_header() + b"".join(records))
    batches, stats = read_all(path)
    assert frames_of(batches) == FRAMES[:4] + FRAMES[5:6] + FRAMES[7:]
    assert stats.skipped["bad_caplen"] == 1 and stats.skipped["empty"] == 1


def test_pcap_caplen_above_snaplen_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_header(snaplen=64) + b"".join(pcap_record(T0, f) for f in (FRAMES[0], FRAMES[9])))
    batches, stats = read_all(path)
    assert frames_of(batches) == [FRAMES[0]]
    assert stats.skipped_total == 1


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "no such file"), (b"", "empty file"), (b"GIF89a" + b"\0" * 40, "unknown magic"),
     (b"\xd4\xc3\xb2\xa1\x02\x00", "not a pcap file")],
)
def test_bad_files_raise_input_error(tmp_path: Path, content: bytes | None, reason: str) -> None:
    path = tmp_path / "bad.pcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=reason) as caught:
        open_capture(path)
    assert caught.value.source == str(path)


def test_directory_raises_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="directory"):
        open_capture(tmp_path)


def test_a_second_pass_reads_the_same(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb("a") + pcapng_epb(0, 1, FRAMES[0]) + pcapng_epb(3, 2, FRAMES[1]))
    with open_capture(path) as reader:
        first = frames_of(list(reader)), dict(reader.stats.skipped)
        second = frames_of(list(reader)), dict(reader.stats.skipped)
    assert first == second == ([FRAMES[0]], {**dict.fromkeys(first[1], 0), "bad_interface": 1})


@pytest.mark.parametrize("big", [False, True])
def test_pcapng_obsolete_packet_block(tmp_path: Path, big: bool) -> None:
    path = tmp_path / "a.pcapng"
    path.write_bytes(pcapng_shb(big=big) + pcapng_idb("a", big=big) + pcapng_idb("b", big=big)
                     + pcapng_pb(1, 7, FRAMES[0], big=big))
    batches, stats = read_all(path)
    assert frames_of(batches) == [FRAMES[0]]
    assert batches[0].interface.tolist() == [1] and batches[0].ts_ns.tolist() == [7000]
    assert stats.skipped_total == 0


@pytest.mark.parametrize("kind", [6, 2, 3])
def test_pcapng_packet_blocks_too_short_for_their_header(tmp_path: Path, kind: int) -> None:
    path = tmp_path / "a.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb("a") + pcapng_epb(0, 1, FRAMES[0]) + pcapng_block(kind, b"")
                     + pcapng_epb(0, 2, FRAMES[1]) + pcapng_block(kind, b""))
    batches, stats = read_all(path)
    assert frames_of(batches) == FRAMES[:2]
    assert stats.skipped["bad_header"] == 2


def test_pcapng_interface_of_another_link_type_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.pcapng"
    path.write_bytes(pcapng_shb() + pcapng_idb("eth") + pcapng_idb("raw", linktype=101)
                     + pcapng_epb(0, 1, FRAMES[0]) + pcapng_epb(1, 2, FRAMES[1]) + pcapng_epb(0, 3, FRAMES[2]))
    batches, stats = read_all(path)
    assert frames_of(batches) == [FRAMES[0], FRAMES[2]]
    assert stats.skipped["other_linktype"] == 1 and stats.records == 2


@requires(Path("/proc/self/smaps").exists(), "needs Linux /proc")
def test_mapping_asks_for_huge_pages(tmp_path: Path) -> None:
    """The capture's mapping carries MADV_HUGEPAGE ('hg' in its VmFlags): cold full-frame captures are read
    in 2 MB pages instead of one fault per few 4 KB pages."""
    path = tmp_path / "a.pcap"
    path.write_bytes(pcap_file([(T0, f) for f in FRAMES]))
    with open_capture(path) as capture:
        smaps = Path("/proc/self/smaps").read_text().split("\n")
        at = next(i for i, line in enumerate(smaps) if line.endswith(str(path)))
        flags = next(line for line in smaps[at:] if line.startswith("VmFlags:"))
        assert "hg" in flags.split()
        assert frames_of(list(capture)) == FRAMES


BASE_S = 1_700_000_000
DAY_S = 86_400
N_JUMPS = 30
JUMPS = {  # record index -> its second; every other record at BASE_S
    "gap_2_days": {i: BASE_S + 2 * DAY_S for i in range(N_JUMPS // 2, N_JUMPS)},
    "step_back": {i: BASE_S + 3 * DAY_S for i in range(N_JUMPS // 2)},
    "corrupt_first": {0: 7},
    "corrupt_middle": {4: 0xFFFF_FFFF, 9: 0},
}


@pytest.mark.parametrize("nano", [False, True])
@pytest.mark.parametrize("jumps", JUMPS.values(), ids=JUMPS.keys())
def test_time_jumps_are_records_not_damage(tmp_path: Path, nano: bool, jumps: dict[int, int]) -> None:
    """A gap of days, a clock step back and an absurd timestamp are all readable records (issue 13, item 2)."""
    frames = [FRAMES[i % len(FRAMES)] for i in range(N_JUMPS)]
    stamps = [jumps.get(i, BASE_S) * 1_000_000_000 + i * 1000 for i in range(N_JUMPS)]
    path = tmp_path / "jumps.pcap"
    path.write_bytes(pcap_header(nano=nano) + b"".join(
        pcap_record(ts, frame, nano=nano) for ts, frame in zip(stamps, frames, strict=True)
    ))
    batches, stats = read_all(path)
    assert frames_of(batches) == frames and stats.skipped_total == 0
    assert np.concatenate([batch.ts_ns for batch in batches]).tolist() == stamps
