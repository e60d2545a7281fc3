"""`fabricscope packets` against tshark, the independent reference: a flow's (or a link's) slice holds exactly
the mirrored copies tshark's own display filter finds in the same capture, and the PSN, opcode, QP, ECN and
AETH Wireshark dissects from the slice equal what our decoder reads from the same frames."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from requirements import require

from collectors.decode import Decoder
from collectors.dissect import packet_rows
from collectors.packet_select import PacketStore, Selection, replay_index_for
from collectors.pcapfile import open_capture
from collectors.recorder import Recorder, RecorderConfig, segments_of
from fabricscope.cli import main
from pipeline.topology import load_topology

pytestmark = pytest.mark.tshark

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CAPTURE = SAMPLES / "combo.pcap"
TOPOLOGY = SAMPLES / "combo.topology.yaml"
COPY_FIELDS = ("frame.time_epoch", "frame.len", "frame.cap_len", "infiniband.bth.psn")


@pytest.fixture(autouse=True)
def tshark() -> None:
    require(shutil.which("tshark") is not None, "tshark is not installed", everywhere=True)


def tshark_fields(pcap: Path, fields: tuple[str, ...], display_filter: str = "") -> list[tuple[str, ...]]:
    """Per packet, the last occurrence of each field (of a mirrored copy: the monitored frame's)."""
    command = ["tshark", "-r", str(pcap), "-T", "fields", "-E", "occurrence=l"]
    command += [part for field in fields for part in ("-e", field)]
    command += ["-Y", display_filter] if display_filter else []
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return [tuple(line.split("\t")) for line in done.stdout.splitlines()]


def packets(tmp_path: Path, *options: str) -> int:
    return main(["packets", "--data-dir", str(tmp_path / "store"), "--pcap", str(CAPTURE), "--topology",
                 str(TOPOLOGY), "--limit", "100000", *options])


def test_a_flows_slice_holds_exactly_its_mirrored_copies(tmp_path: Path) -> None:
    keys = tshark_fields(CAPTURE, ("ip.src", "ip.dst", "udp.srcport", "udp.dstport"), "infiniband")
    (src, dst, sport, dport), _ = Counter(keys).most_common(1)[0]
    out = tmp_path / "flow.pcap"
    assert packets(tmp_path, "--flow", f"{src}:{sport}>{dst}:{dport}/udp", "--out", str(out)) == 0
    expected = tshark_fields(CAPTURE, COPY_FIELDS,
                             f"ip.src=={src} && ip.dst=={dst} && udp.srcport=={sport} && udp.dstport=={dport}")
    assert len(expected) > 100
    assert tshark_fields(out, COPY_FIELDS) == expected


def test_a_links_slice_holds_exactly_its_erspan_sessions_copies(tmp_path: Path) -> None:
    out = tmp_path / "link.pcap"
    assert packets(tmp_path, "--link", "leaf2-spine1", "--out", str(out)) == 0  # ERSPAN session 21
    expected = tshark_fields(CAPTURE, COPY_FIELDS, "erspan.spanid == 21")
    assert len(expected) > 100
    assert tshark_fields(out, COPY_FIELDS) == expected


def test_the_recorders_segments_hold_every_copy_as_tshark_reads_the_capture(tmp_path: Path) -> None:
    """Segments are written O_DIRECT in whole 4 KiB blocks, each segment's last partial block at its close;
    small batches and segments make many of both. tshark reads every frame back, in order, as captured."""
    topology = load_topology(TOPOLOGY)
    recorder = Recorder(tmp_path / "store", topology, RecorderConfig(segment_s=0.05))
    decoder = Decoder(topology)
    with open_capture(CAPTURE, batch_size=777) as capture:
        for batch in capture:
            recorder.write(batch, decoder.decode(batch))
    recorder.close()
    segments = segments_of(tmp_path / "store")
    assert len(segments) > 3 and recorder.stats.dropped == 0
    recorded = [row for segment in segments for row in tshark_fields(segment, COPY_FIELDS)]
    assert recorded == tshark_fields(CAPTURE, COPY_FIELDS)


def test_wiresharks_dissection_of_a_slice_equals_our_decoder(tmp_path: Path) -> None:
    topology = load_topology(TOPOLOGY)
    store = PacketStore([CAPTURE], topology, replay_index_for(tmp_path / "index", topology))
    cut = store.select(Selection(links=(topology.link("leaf4-spine2").index,), limit=600))
    decoded = Decoder(topology).decode(cut.frames)
    rows = packet_rows(cut.frames, topology)
    assert len(rows) == len(cut) == 600
    roce = decoded.is_roce.tolist()
    assert sum(roce) > 300
    opcodes = {row["opcode"] for row in rows}
    assert {0x11, 0x81} <= opcodes  # acknowledgements (with an AETH) and CNPs are in the slice
    for at, row in enumerate(rows):
        assert row["link"] == "leaf4-spine2"
        ip = decoded.ethertype[at] in (0x0800, 0x86DD)
        assert row["ecn"] == (decoded.ecn[at] if ip else None), at
        if roce[at]:
            assert (row["opcode"], row["dest_qp"], row["psn"]) == \
                (decoded.bth_opcode[at], decoded.dqpn[at], decoded.psn[at]), at
            assert row["cnp"] == (decoded.bth_opcode[at] == 0x81)
            syndrome = decoded.aeth_syndrome[at]
            assert row["aeth_syndrome"] == (None if syndrome == 0xFF else syndrome)


def test_a_selection_matching_nothing_says_so_and_writes_nothing(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "none.pcap"
    assert packets(tmp_path, "--from", "2100-01-01T00:00:00Z", "--out", str(out)) == 0
    assert "no packets match --from 2100-01-01T00:00:00Z" in capsys.readouterr().err
    assert not out.exists()


def test_without_tshark_the_listing_exits_2_with_the_apt_get_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert packets(tmp_path, "--link", "leaf1-spine1") == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("fabricscope packets: tshark: not found") and "apt-get install -y tshark" in error
    assert len(error.splitlines()) == 1


def test_limit_keeps_the_first_packets_and_says_more_match(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "first.pcap"
    assert main(["packets", "--data-dir", str(tmp_path / "store"), "--pcap", str(CAPTURE), "--topology",
                 str(TOPOLOGY), "--link", "leaf2-spine1", "--limit", "7", "--out", str(out)]) == 0
    assert "more packets match; the first 7 kept (--limit)" in capsys.readouterr().err
    assert tshark_fields(out, COPY_FIELDS) == tshark_fields(CAPTURE, COPY_FIELDS, "erspan.spanid == 21")[:7]
