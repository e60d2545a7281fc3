"""Damaged captures and garbage frames: the collector never crashes, counts what it skipped, and keeps every
good record before and after the damage."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pcap_builders import frames_of, pcap_header, pcap_record, pcapng_epb, pcapng_idb, pcapng_shb
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III
from scapy.contrib.mac_control import MACControlClassBasedFlowControl
from scapy.contrib.roce import AETH, BTH
from scapy.layers.inet import GRE, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Packet, Raw

from collectors.decode import Decoder
from collectors.flows import FlowTable
from collectors.packets import PacketBatch
from collectors.pcapfile import CaptureStats, open_capture
from pipeline.topology import Topology, load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T0 = 1_700_000_000_000_000_000
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}  # explicit: scapy would ARP for them
Mutation = Callable[[np.random.Generator, bytearray, list[tuple[int, int]]], tuple[int, int]]


def _templates() -> list[Packet]:
    roce = IP(src="10.0.1.5", dst="10.0.2.7") / UDP(sport=49152, dport=4791) / BTH(opcode=0x0A, dqpn=9, psn=3)
    return [
        Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.9") / GRE(seqnum_present=1) / ERSPAN_II(session_id=11)
        / Ether(**MAC) / roce,
        Ether(**MAC) / IP(src="192.0.2.1", dst="192.0.2.9") / GRE() / ERSPAN_III(session_id=22) / Ether(**MAC)
        / IP(src="10.0.2.5", dst="10.0.1.7") / UDP(dport=4791) / BTH(opcode=0x11) / AETH(syndrome=0x61),
        Ether(**MAC) / IP(src="10.0.1.1", dst="10.0.4.4") / UDP(dport=4789) / VXLAN(vni=5) / Ether(**MAC)
        / IP(src="172.16.0.1", dst="172.16.0.2") / TCP(dport=443),
        Ether(**MAC) / Dot1Q(vlan=3) / IPv6(src="fd00:0:0:1::1", dst="fd00:0:0:2::1") / IPv6ExtHdrHopByHop()
        / UDP(sport=5, dport=6),
        Ether(**MAC) / ARP(psrc="10.0.1.1", pdst="10.0.1.2"),
        Ether(src=MAC["src"], dst="01:80:c2:00:00:01") / MACControlClassBasedFlowControl(c3_enabled=1, c3_pause_time=9),
        Ether(**MAC) / IP(src="10.0.3.1", dst="10.0.4.1") / TCP(sport=40000, dport=22, flags="PA"),
    ]


FRAMES = [bytes(t / Raw(b"MARK%04d" % i)) for i, t in enumerate(_templates() * 9)]


def valid_pcap() -> tuple[bytearray, list[tuple[int, int]]]:
    """A pcap of FRAMES and each record's (start, end) byte span, header included."""
    data = bytearray(pcap_header())
    spans = []
    for i, frame in enumerate(FRAMES):
        start = len(data)
        data += pcap_record(T0 + i * 1_000_000, frame)
        spans.append((start, len(data)))
    return data, spans


def _set_caplen(data: bytearray, start: int, caplen: int, wirelen: int | None = None) -> None:
    struct.pack_into("<I", data, start + 8, caplen)
    if wirelen is not None:
        struct.pack_into("<I", data, start + 12, wirelen)


def truncate(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    cut = int(rng.integers(25, len(data)))
    del data[cut:]
    return cut, 1 << 62


def caplen_past_eof(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start, _ = spans[int(rng.integers(len(spans)))]
    _set_caplen(data, start, len(data) - start, wirelen=1 << 20)
    return start, len(data)


def caplen_absurd(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start, end = spans[int(rng.integers(len(spans)))]
    _set_caplen(data, start, 0x7FFF0000 + int(rng.integers(0xFFFF)))
    return start, end


def caplen_wrong(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start, end = spans[int(rng.integers(len(spans) - 1))]
    caplen = end - start - 16
    new = max(1, caplen + int(rng.choice([-1, 1]) * rng.integers(1, 40)))
    _set_caplen(data, start, new, wirelen=max(new, caplen))
    return start, max(end, start + 16 + new)  # a longer caplen swallows the start of the next record


def caplen_zero(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start, end = spans[int(rng.integers(len(spans)))]
    _set_caplen(data, start, 0)
    return start, end


def wirelen_below_caplen(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start, end = spans[int(rng.integers(len(spans)))]
    struct.pack_into("<I", data, start + 12, 3)
    return start, end


def garbage_header(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start, end = spans[int(rng.integers(len(spans)))]
    data[start : start + 16] = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
    return start, end


def garbage_run(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start = int(rng.integers(24, len(data) - 400))
    size = int(rng.integers(1, 400))
    data[start : start + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    return start, start + size


def zero_length_record(rng: np.random.Generator, data: bytearray, spans: list[tuple[int, int]]) -> tuple[int, int]:
    start, _ = spans[int(rng.integers(len(spans)))]
    data[start:start] = pcap_record(T0, b"", caplen=0, wirelen=0)
    return start, start  # inserted, nothing destroyed; the spans after it shift (see _good_frames)


MUTATIONS: dict[str, Mutation] = {
    "truncate": truncate, "caplen_past_eof": caplen_past_eof, "caplen_absurd": caplen_absurd,
    "caplen_wrong": caplen_wrong, "caplen_zero": caplen_zero, "wirelen_below_caplen": wirelen_below_caplen,
    "garbage_header": garbage_header, "garbage_run": garbage_run, "zero_length_record": zero_length_record,
}
ALWAYS_DETECTED = {"caplen_past_eof", "caplen_absurd", "caplen_zero", "wirelen_below_caplen", "garbage_header",
                   "zero_length_record"}


def _good_frames(spans: list[tuple[int, int]], damage: tuple[int, int]) -> list[bytes]:
    lo, hi = damage
    return [frame for frame, (start, end) in zip(FRAMES, spans, strict=True) if end <= lo or start >= hi]


def _is_subsequence(needles: list[bytes], haystack: list[bytes]) -> bool:
    remaining = iter(haystack)
    return all(any(item == needle for item in remaining) for needle in needles)


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(SAMPLES / "topology.yaml")


def collect(path: Path, topology: Topology) -> tuple[list[PacketBatch], CaptureStats, int]:
    """Run sources, decoder and flow table over a file; return batches, reader stats and packets in flows."""
    reader = open_capture(path, batch_size=16)
    decoder = Decoder(topology)
    table = FlowTable(topology)
    batches, counted = [], 0
    for batch in reader:
        batches.append(batch)
        decoded = decoder.decode(batch)
        assert int(decoded.ok.sum()) + sum(decoder.stats.malformed.values()) >= len(batch)
        counted += int(table.update(decoded)["packets"].sum())
    counted += int(table.flush()["packets"].sum())
    return batches, reader.stats, counted


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_pcap_mutation(tmp_path: Path, topology: Topology, name: str, seed: int) -> None:
    rng = np.random.default_rng(seed * 101 + len(name))
    data, spans = valid_pcap()
    damage = MUTATIONS[name](rng, data, spans)
    if name == "zero_length_record":
        spans = [(s, e) if e <= damage[0] else (s + 16, e + 16) for s, e in spans]
    path = tmp_path / "damaged.pcap"
    path.write_bytes(bytes(data))
    batches, stats, counted = collect(path, topology)
    kept = frames_of(batches)
    good = _good_frames(spans, damage)
    assert _is_subsequence(good, kept)
    assert stats.records == len(kept)
    assert counted <= len(kept)
    if name in ALWAYS_DETECTED:
        assert stats.skipped_total >= 1
    if name == "zero_length_record":
        assert kept == FRAMES and stats.skipped == {**dict.fromkeys(stats.skipped, 0), "empty": 1}


@pytest.mark.parametrize("seed", range(12))
def test_pcapng_damage(tmp_path: Path, topology: Topology, seed: int) -> None:
    rng = np.random.default_rng(seed)
    data = bytearray(pcapng_shb() + pcapng_idb("tap-a") + pcapng_idb("tap-b"))
    spans = []
    for i, frame in enumerate(FRAMES):
        start = len(data)
        data += pcapng_epb(i % 2, (T0 + i) // 1000, frame)
        spans.append((start, len(data)))
    kind = seed % 3
    if kind == 0:
        lo = int(rng.integers(spans[0][0], len(data)))
        del data[lo:]
        damage = (lo, 1 << 62)
    elif kind == 1:
        start, end = spans[int(rng.integers(len(spans)))]
        struct.pack_into("<I", data, start + 4, int(rng.integers(0, 1 << 32)))
        damage = (start, end)
    else:
        lo = int(rng.integers(spans[0][0], len(data) - 300))
        size = int(rng.integers(1, 300))
        data[lo : lo + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        damage = (lo, lo + size)
    path = tmp_path / "damaged.pcapng"
    path.write_bytes(bytes(data))
    batches, stats, _ = collect(path, topology)
    assert _is_subsequence(_good_frames(spans, damage), frames_of(batches))
    if kind == 1:
        assert stats.skipped_total >= 1


@pytest.mark.parametrize("seed", range(6))
def test_garbage_frames_never_break_the_decoder(tmp_path: Path, topology: Topology, seed: int) -> None:
    """Random bytes and valid frames with random bytes flipped, the last one ending the file so any read past
    a frame would leave the mapped buffer."""
    rng = np.random.default_rng(1000 + seed)
    frames = []
    for i in range(400):
        if i % 3 == 0:
            frames.append(rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes())
            continue
        frame = bytearray(FRAMES[int(rng.integers(len(FRAMES)))])
        for _ in range(int(rng.integers(1, 6))):
            frame[int(rng.integers(min(len(frame), 90)))] = int(rng.integers(256))
        frames.append(bytes(frame[: int(rng.integers(1, len(frame) + 1))]))
    path = tmp_path / "garbage.pcap"
    path.write_bytes(pcap_header() + b"".join(pcap_record(T0 + i, f) for i, f in enumerate(frames)))
    batches, stats, _ = collect(path, topology)
    assert frames_of(batches) == frames and stats.skipped_total == 0
    decoder = Decoder(topology)
    for batch in batches:
        decoded = decoder.decode(batch)
        ok = decoded.ok
        end = batch.offset + batch.caplen
        has_payload = ok & (decoded.payload_offset >= 0)
        assert (decoded.payload_offset[has_payload] >= batch.offset[has_payload]).all()
        assert (decoded.payload_offset[has_payload] + decoded.payload_caplen[has_payload] == end[has_payload]).all()
    assert decoder.stats.packets == len(frames)
