"""PacketRing against the real kernel: frames replayed into one end of a veth pair come out of the ring on
the other end byte for byte (802.1Q tag restored), truncated to the snaplen with their full wire length, none
dropped, none of the capture interface's own outgoing frames; bad interfaces are one-line input errors."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from netns import NetLab, mirror_link, needs_netns, needs_tcpreplay
from requirements import requires
from scapy.all import IP, UDP, Dot1Q, Ether, IPv6, Raw, rdpcap, sendp, wrpcap

from collectors.afpacket import NEW_FANOUT_GROUP, PacketRing, RingStats
from collectors.capture_source import CaptureConfig, CaptureSource
from collectors.collector import CollectorConfig
from collectors.packets import PacketBatch
from collectors.second_opinion import OpinionStats
from pipeline.errors import InputError
from pipeline.topology import load_topology

pytestmark = [pytest.mark.netns, needs_netns, needs_tcpreplay]

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SNAPLEN = 256
SMALL_RING = {"block_bytes": 1 << 20, "blocks": 4, "timeout_ms": 50}
SMALL_CAPTURE = {"block_bytes": 1 << 20, "ring_mb": 4, "timeout_ms": 50}  # the same ring as CaptureConfig
WAIT_S = 60  # a guard against a hang: each wait ends once every packet is in (an uncached walk compiles ~8 s)
IFF_PROMISC = 0x100
HEAD_RECORDS = 200


def frames() -> list[bytes]:
    """Frames shorter and longer than the snaplen, one beyond 1500 bytes, one 802.1Q-tagged, one IPv6."""
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    return [
        bytes(ether / IP(src="10.0.1.11", dst="10.0.2.11") / UDP(sport=49152, dport=4791) / Raw(b"a" * 18)),
        bytes(ether / IP(src="10.0.1.11", dst="10.0.2.11") / UDP(sport=49152, dport=4791) / Raw(b"b" * 1400)),
        bytes(ether / IP(src="10.0.1.12", dst="10.0.2.12") / UDP(sport=5000, dport=5001) / Raw(b"c" * 4000)),
        bytes(ether / Dot1Q(vlan=3011, prio=3) / IP(src="10.0.1.13", dst="10.0.2.13") / UDP() / Raw(b"d" * 300)),
        bytes(ether / IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=7, dport=7) / Raw(b"e" * 64)),
    ]


@contextmanager
def replaying(lab: NetLab, namespace: str, send: str, pcap: Path) -> Iterator[None]:
    """tcpreplay sends `pcap` while the body reads the ring. A ring nobody reads holds only `blocks` blocks, and the
    kernel retires a block every `timeout_ms` even with a few frames in it: SMALL_RING keeps 4 x 50 ms of a trickle,
    and a loaded machine stretches a replay past that (the kernel then drops, and counts it)."""
    replay = lab.popen(namespace, ["tcpreplay", f"--intf1={send}", str(pcap)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, errors = replay.communicate(timeout=WAIT_S)
    assert replay.returncode == 0, errors


def receive(ring: PacketRing, expected: int) -> list[PacketBatch]:
    """Batches until the kernel has handed over `expected` frames and all of them came out of the ring."""
    stop = threading.Event()
    batches: list[PacketBatch] = []
    deadline = time.monotonic() + WAIT_S
    for batch in ring.batches(stop):
        batches.append(batch)
        if sum(map(len, batches)) >= expected or time.monotonic() > deadline:
            stop.set()
    return batches


def test_ring_returns_exactly_the_frames_received(tmp_path: Path) -> None:
    sent = frames()
    pcap = tmp_path / "frames.pcap"
    wrpcap(str(pcap), [Ether(frame) for frame in sent])
    with NetLab() as lab:
        namespace, send, capture = mirror_link(lab)
        with PacketRing(capture, snaplen=SNAPLEN, **SMALL_RING) as ring:
            before = time.time_ns()
            sendp(Ether(sent[0]), iface=capture, verbose=False)  # outgoing on the capture interface: ignored
            with replaying(lab, namespace, send, pcap):
                batches = receive(ring, len(sent))
            stats = ring.kernel_stats()
    got = [bytes(b.data[b.offset[i] : b.offset[i] + b.caplen[i]]) for b in batches for i in range(len(b))]
    assert got == [frame[:SNAPLEN] for frame in sent]
    assert [int(w) for b in batches for w in b.wirelen] == [len(frame) for frame in sent]
    stamps = [int(t) for b in batches for t in b.ts_ns]
    assert stamps == sorted(stamps) and before <= stamps[0] and stamps[-1] <= time.time_ns()
    assert all(b.interfaces == (capture,) and b.linktype == 1 and not b.interface.any() for b in batches)
    assert stats == RingStats(packets=len(sent), drops=0, freezes=0)


def test_quiet_interface_gives_empty_batches_until_stopped() -> None:
    with NetLab() as lab:
        _, _, capture = mirror_link(lab)
        with PacketRing(capture, **SMALL_RING) as ring:
            stop = threading.Event()
            seen = []
            for batch in ring.batches(stop):
                seen.append(len(batch))
                if len(seen) == 3:
                    stop.set()
    assert seen == [0, 0, 0]


def test_a_new_fanout_group_is_never_another_captures() -> None:
    """Two captures on one interface each make their own group (the kernel picks the id), and a worker that
    joins by the id shares its capture's group. The id was `pid & 0xFFFF` before: two captures whose PIDs
    agree in their low 16 bits would have split each other's frames without a word."""
    with NetLab() as lab:
        _, _, capture = mirror_link(lab)
        with (PacketRing(capture, **SMALL_RING, fanout_group=NEW_FANOUT_GROUP) as first,
              PacketRing(capture, **SMALL_RING, fanout_group=NEW_FANOUT_GROUP) as second):
            assert first.fanout_group is not None and second.fanout_group is not None
            assert first.fanout_group != second.fanout_group
            with PacketRing(capture, **SMALL_RING, fanout_group=first.fanout_group) as joined:
                assert joined.fanout_group == first.fanout_group


def test_stopping_capture_workers_nobody_reads_ends_them() -> None:
    """An error downstream stops the workers without reading their steps: they ignore SIGTERM, and `stop`
    waited for them forever (it only sent SIGTERM)."""
    with NetLab() as lab:
        _, _, capture = mirror_link(lab)
        source = CaptureSource(load_topology(SAMPLES / "topology.yaml"),
                               CaptureConfig(iface=capture, **SMALL_CAPTURE), workers=2).start()
        stopping = threading.Thread(target=source.stop, daemon=True)
        stopping.start()
        stopping.join(WAIT_S)
        assert not stopping.is_alive(), "stop() did not return"


def test_missing_interface_is_input_error_naming_it() -> None:
    with pytest.raises(InputError, match="fsnosuch0: no such network interface"):
        PacketRing("fsnosuch0")
    with pytest.raises(InputError, match="fsnosuch0"):
        CaptureSource(load_topology(SAMPLES / "topology.yaml"), CaptureConfig(iface="fsnosuch0")).start()


def test_bad_ring_options_are_input_errors() -> None:
    with pytest.raises(InputError, match="lo: snaplen 0"):
        PacketRing("lo", snaplen=0)
    with pytest.raises(InputError, match="lo: ring block size 1000"):
        PacketRing("lo", block_bytes=1000)


def test_drops_from_a_full_ring_are_counted_and_add_up(tmp_path: Path) -> None:
    """Two 64 KiB blocks and nobody reading while 2,000 frames of 1 KB arrive: most are dropped. What the
    ring returns plus the kernel's drop count (summed over reads, as the kernel zeroes it) is what was sent."""
    pcap = tmp_path / "burst.pcap"
    ether = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    wrpcap(str(pcap), [ether / IP(src="10.0.1.11", dst="10.0.2.11") / UDP(sport=i, dport=4791) / Raw(b"f" * 1000)
                       for i in range(2000)])
    with NetLab() as lab:
        namespace, send, capture = mirror_link(lab)
        with PacketRing(capture, block_bytes=1 << 16, blocks=2, timeout_ms=50) as ring:
            done = lab.run(namespace, ["tcpreplay", "--topspeed", f"--intf1={send}", str(pcap)])
            assert done.returncode == 0, done.stderr
            first = ring.kernel_stats()
            kept = sum(map(len, receive(ring, 2000 - first.drops)))
            total = ring.kernel_stats()
    assert first.drops > 0 and total.freezes > 0
    assert kept + total.drops == total.packets == 2000


def test_interface_is_promiscuous_only_while_the_ring_is_open() -> None:
    with NetLab() as lab:
        _, _, capture = mirror_link(lab)
        flags = Path(f"/sys/class/net/{capture}/flags")
        with PacketRing(capture, **SMALL_RING):
            opened = int(flags.read_text(), 16)
        closed = int(flags.read_text(), 16)
        with PacketRing(capture, promiscuous=False, **SMALL_RING):
            asked_not = int(flags.read_text(), 16)
    assert opened & IFF_PROMISC and not closed & IFF_PROMISC and not asked_not & IFF_PROMISC


def test_capture_survives_a_link_flap_and_stops_when_the_interface_goes(tmp_path: Path) -> None:
    pcap = tmp_path / "frames.pcap"
    sent = frames()
    wrpcap(str(pcap), [Ether(frame) for frame in sent])
    with NetLab() as lab:
        namespace, send, capture = mirror_link(lab)
        with PacketRing(capture, **SMALL_RING) as ring:
            stop = threading.Event()
            batches = ring.batches(stop)
            subprocess.run(["ip", "link", "set", capture, "down"], check=True)
            assert [len(next(batches)) for _ in range(3)] == [0, 0, 0]
            subprocess.run(["ip", "link", "set", capture, "up"], check=True)
            kept, deadline = 0, time.monotonic() + WAIT_S
            with replaying(lab, namespace, send, pcap):
                while kept < len(sent) and time.monotonic() < deadline:
                    kept += len(next(batches))
            assert kept == len(sent)
            subprocess.run(["ip", "link", "del", capture], check=True)
            with pytest.raises(InputError, match=f"{capture}: interface removed while capturing"):
                for _ in range(100):
                    next(batches)
            assert ring.kernel_stats() == RingStats(packets=len(sent), drops=0, freezes=0)


@requires(shutil.which("capsh") is not None, "capsh (Debian libcap2-bin) is not installed (make test installs it)")
def test_without_cap_net_raw_is_input_error_naming_the_interface() -> None:
    script = "\n".join((
        "from collectors.afpacket import PacketRing",
        "from pipeline.errors import InputError",
        "try:",
        "    PacketRing('lo')",
        "except InputError as error:",
        "    print(error)",
    ))
    command = shlex.join([sys.executable, "-c", script])
    done = subprocess.run(["capsh", "--drop=cap_net_raw", "--", "-c", command], capture_output=True, text=True,
                          cwd=SAMPLES.parent, check=True)
    assert done.stdout.strip() == "lo: permission denied: live capture needs root or CAP_NET_RAW"


def test_capture_source_steps_are_empty_while_idle_then_the_final_flush() -> None:
    with NetLab() as lab:
        _, _, capture = mirror_link(lab)
        source = CaptureSource(load_topology(SAMPLES / "topology.yaml"), CaptureConfig(iface=capture, **SMALL_CAPTURE))
        stop = threading.Event()
        steps = []
        for step in source.steps(stop):
            steps.append(step)
            if len(steps) == 2:
                stop.set()
    assert source.name == "capture"
    assert steps[:2] == [[], []]
    assert [table for table, _ in steps[2]] == ["flows", "link_bins", "iterations"] and len(steps) == 3
    assert source.counts() == dict.fromkeys(
        ("packets", "bytes", "kernel_drops", "kernel_freezes", "malformed", "unattributed", "flow_rows",
         "flows_exported_early", *OpinionStats().counts()), 0)


def test_capture_source_exports_rows_while_the_link_is_quiet(tmp_path: Path) -> None:
    """No packet follows the replay, yet every flow row leaves before stop: idle wake-ups move packet time."""
    pcap = tmp_path / "head.pcap"
    wrpcap(str(pcap), rdpcap(str(SAMPLES / "mixed.pcap"), count=HEAD_RECORDS))
    with NetLab() as lab:
        namespace, send, capture = mirror_link(lab)
        source = CaptureSource(load_topology(SAMPLES / "mixed.topology.yaml"),
                               CaptureConfig(iface=capture, **SMALL_CAPTURE),
                               collector_config=CollectorConfig(active_timeout_s=0.2))
        stop = threading.Event()
        steps = source.steps(stop)
        next(steps)  # the ring is open
        exported, deadline = 0, time.monotonic() + WAIT_S
        with replaying(lab, namespace, send, pcap):
            for step in steps:
                if stop.is_set():
                    continue  # the final flush: its rows are not the ones this test is about
                exported += sum(int(columns["packets"].sum()) for table, columns in step if table == "flows")
                if exported >= HEAD_RECORDS or time.monotonic() > deadline:
                    stop.set()
    counts = source.counts()
    assert (counts["kernel_drops"], counts["kernel_freezes"]) == (0, 0)
    assert exported == counts["packets"] == HEAD_RECORDS
