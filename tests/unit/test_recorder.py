"""The packet recorder and its pcapng writer: frames read back as written, the rolling budget deletes the
oldest segments, an incident's pinned window outlives it, and a full disk stops the recorder, never the
collector. Frames are built by scapy; which frames should be found comes from the times this test gave them."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from requirements import require
from scapy.contrib.erspan import ERSPAN_II
from scapy.contrib.roce import BTH
from scapy.layers.inet import GRE, IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from collectors.collector import Collector
from collectors.decode import Decoder
from collectors.packet_index import TUPLE_FIELDS, ChunkIndexBuilder, tuple_hash
from collectors.packet_select import Selection
from collectors.packets import PacketBatch
from collectors.pcapfile import open_capture
from collectors.pcapng_writer import PcapngWriter
from collectors.recorder import (
    PINNED_DIR,
    Recorder,
    RecorderConfig,
    recorded_store,
    remember_replayed,
    replayed_captures,
)
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SECOND = 1_000_000_000
START = 1_760_000_000 * SECOND
PER_SECOND = 300
PAYLOAD = 1000


def roce_copy(session: int, psn: int) -> bytes:
    """A RoCE WRITE mirrored by ERSPAN session `session` (the sample topology maps 11 to leaf1-spine1)."""
    inner = Ether() / IP(src="10.0.1.5", dst="10.0.2.7", tos=2) / UDP(sport=49152, dport=4791) \
        / BTH(opcode=0x0A, dqpn=0x1234, psn=psn) / Raw(b"\0" * PAYLOAD)
    return bytes(Ether() / IP(src="10.254.0.1", dst="198.51.100.10") / GRE(seqnum_present=1)
                 / ERSPAN_II(session_id=session) / inner)


def batch_of(frames: list[bytes], ts_ns: np.ndarray, names: tuple[str, ...] = ("",),
             interface: np.ndarray | None = None) -> PacketBatch:
    lengths = np.array([len(frame) for frame in frames], dtype=np.uint32)
    offset = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    return PacketBatch(data=np.frombuffer(b"".join(frames), dtype=np.uint8), offset=offset, caplen=lengths,
                       wirelen=lengths + 4, ts_ns=ts_ns.astype(np.int64),
                       interface=np.zeros(len(frames), np.uint16) if interface is None else interface,
                       interfaces=names)


def second_times(second: int) -> np.ndarray:
    return START + second * SECOND + np.arange(PER_SECOND, dtype=np.int64) * (SECOND // PER_SECOND)


def seconds_of_traffic(seconds: int) -> Iterator[PacketBatch]:
    """PER_SECOND frames a second (second_times), one batch a second."""
    frame = roce_copy(11, 0)
    for second in range(seconds):
        yield batch_of([frame] * PER_SECOND, second_times(second))


@pytest.mark.parametrize("direct, refused", [(False, False), (True, False), (True, True)],
                         ids=["page-cache", "direct", "direct-refused"])
def test_written_frames_read_back_byte_for_byte_with_times_and_interface_names(
        tmp_path: Path, direct: bool, refused: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Direct writes go out in whole 4 KiB blocks: the frames are sized so no write ends on one. A device
    refusing them (blocks larger than 4 KiB: EINVAL on every direct write) gets the same file."""
    if refused:
        write = os.write

        def refuse_direct(fd: int, data: memoryview) -> int:
            if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return write(fd, data)

        monkeypatch.setattr("collectors.pcapng_writer.os.write", refuse_direct)
    frames = [roce_copy(11, psn)[: 60 + psn * 7] + b"\1" * 500 * (psn % 3) for psn in range(12)]
    ts = START + np.arange(12, dtype=np.int64) * 1_234_567 + 89  # nanoseconds that µs would lose
    batch = batch_of(frames, ts, ("tap-a", "tap-b"), np.array([0, 1] * 6, dtype=np.uint16))
    writer = PcapngWriter(tmp_path / "out.pcapng", 1, direct=direct)
    writer.write(batch, np.arange(0, 12, 2))
    writer.write(batch, np.arange(1, 12, 2))
    assert writer.direct == (direct and not refused)
    writer.close()
    assert writer.bytes_written == (tmp_path / "out.pcapng").stat().st_size
    with open_capture(tmp_path / "out.pcapng") as capture:
        read = list(capture)
        order = [*range(0, 12, 2), *range(1, 12, 2)]
        got = [bytes(b.data[o : o + c]) for b in read for o, c in zip(b.offset, b.caplen, strict=True)]
        assert got == [frames[i] for i in order]
        assert np.concatenate([b.ts_ns for b in read]).tolist() == ts[order].tolist()
        assert np.concatenate([b.wirelen for b in read]).tolist() == [len(frames[i]) + 4 for i in order]
        names = [b.interfaces[i] for b in read for i in b.interface]
        assert names == ["tap-a"] * 6 + ["tap-b"] * 6
        assert capture.stats.skipped_total == 0


def test_a_chunk_index_holds_the_times_links_and_tuple_hashes_of_its_decoded_packets() -> None:
    """The recorder's one-pass summary against numpy over the decoded columns: the lookup hashes its flow with
    `tuple_hash`, so the index must hold exactly those hashes; a malformed frame counts in no field."""
    topology = load_topology(SAMPLES / "topology.yaml")
    frames = [roce_copy(session, psn) for psn in range(40) for session in (11, 12, 99)] + [roce_copy(11, 0)[:20]]
    rng = np.random.default_rng(7)
    ts = START + rng.permutation(len(frames)).astype(np.int64) * 1_000
    decoded = Decoder(topology).decode(batch_of(frames, ts))
    builder = ChunkIndexBuilder(len(topology.links))
    builder.add(decoded)
    index = builder.build()
    ok = decoded.ok
    assert not ok.all()
    hashes = tuple_hash({name: getattr(decoded, name)[ok] for name in TUPLE_FIELDS})
    assert index.hashes.tolist() == np.unique(hashes).tolist()
    assert (index.ts_min[0], index.ts_max[0]) == (decoded.ts_ns[ok].min(), decoded.ts_ns[ok].max())
    assert np.flatnonzero(index.links[0]).tolist() == np.unique(decoded.link[ok & (decoded.link >= 0)]).tolist()
    assert index.first_record.tolist() == [0, len(frames)]


def incident(event_id: str, ts_ns: int, ts_end_ns: int, state: str) -> dict[str, np.ndarray]:
    return {"event_id": np.array([event_id], dtype=object), "state": np.array([state], dtype=object),
            "ts": np.array([ts_ns // 1000], dtype="datetime64[us]"),
            "ts_end": np.array([ts_end_ns // 1000], dtype="datetime64[us]")}


def test_rolling_budget_deletes_the_oldest_and_a_pinned_incident_outlives_it(tmp_path: Path) -> None:
    topology = load_topology(SAMPLES / "topology.yaml")
    config = RecorderConfig(budget_mb=1, pinned_budget_mb=8, segment_s=1.0, segment_mb=1,
                            pin_before_s=0.5, pin_after_s=0.5)
    recorder = Recorder(tmp_path / "packets", topology, config)
    collector = Collector(topology, recorder=recorder)
    opened, closed = START + 5 * SECOND + SECOND // 5, START + 5 * SECOND + 4 * SECOND // 5
    for second, batch in enumerate(seconds_of_traffic(20)):
        collector.process(batch)
        if second == 5:
            recorder.on_events(incident("e1", opened, opened, "open"))
        if second == 7:
            recorder.on_events(incident("e1", opened, closed, "closed"))
    recorder.close()

    store = recorded_store(tmp_path / "packets", topology)
    in_window = store.select(Selection(start_ns=opened, end_ns=closed, limit=10_000))
    expected = [t for t in np.concatenate([second_times(s) for s in range(20)]).tolist() if opened <= t <= closed]
    assert in_window.frames.ts_ns.tolist() == expected
    assert store.decoded_packets == PER_SECOND  # the indexes let the lookup decode that second's batch alone
    early = store.select(Selection(start_ns=START, end_ns=START + 2 * SECOND, limit=10_000))
    assert len(early) == 0  # long gone from the 1 MB rolling budget
    assert recorder.stats.deleted > 0 and recorder.stats.pinned >= 1
    rolling = sum(path.stat().st_size for path in recorder.rolling.glob("*.pcapng"))
    assert rolling <= 1 << 20
    assert all(path.parent.name == PINNED_DIR for path in recorder.pinned.glob("*.pcapng"))


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: the recorder's first segment fills it."""
    mount = tmp_path / "full"
    mount.mkdir()
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True)
    require(done.returncode == 0, f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_stops_the_recorder_and_collection_goes_on(full_disk: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    topology = load_topology(SAMPLES / "topology.yaml")
    recorder = Recorder(full_disk / "packets", topology, RecorderConfig(segment_s=1.0))
    collector = Collector(topology, recorder=recorder)
    rows = 0
    for batch in seconds_of_traffic(6):
        rows += int(collector.process(batch).flows["packets"].sum())
    rows += int(collector.finish().flows["packets"].sum())
    recorder.close()
    assert collector.stats.packets == 6 * PER_SECOND
    assert rows == 6 * PER_SECOND  # every packet still counted in a flow row
    counts = recorder.counts()
    assert recorder.stopped
    assert counts["recorder_errors"] == 1
    assert counts["recorder_dropped_packets"] > 0
    assert counts["recorder_packets"] + counts["recorder_dropped_packets"] <= 6 * PER_SECOND
    assert len([r for r in caplog.records if "packet recorder stopped" in r.getMessage()]) == 1


def test_replay_remembers_each_input_once_by_its_absolute_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "data" / "packets"
    assert replayed_captures(store) == []
    remember_replayed(store, ["a.pcap", "b.pcapng"])
    remember_replayed(store, [str(tmp_path / "a.pcap"), "c.pcap"])
    assert replayed_captures(store) == [tmp_path / "a.pcap", tmp_path / "b.pcapng", tmp_path / "c.pcap"]
