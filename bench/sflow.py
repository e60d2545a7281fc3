"""sFlow collector throughput, decoder alone and over a real UDP socket, beside tcpdump on the same traffic.

Debian pmacctd (sfprobe plugin, 1-in-1) first turns a sample pcap into real sFlow v5 datagrams, received
here and kept. Then, all in this run:
- the decoder alone (collectors.sflow, one compiled walk per receive batch) on those datagrams repeated,
  then decoder + collectors (decode, DPI, flow table, link bins, DFI), and, for scale, a bare per-sample
  Python `struct` walk that only finds the headers (what the compiled walk replaces);
- the datagrams as UDP frames replayed by tcpreplay (--topspeed, --loop) from a namespace into a veth whose
  other end holds the collector's address: first SflowSource on its UDP socket, then `tcpdump -w /dev/null`
  on that interface (bench.capture's lab and tcpdump run). Each prints datagrams kept, dropped (the
  socket's: UDP RcvbufErrors; tcpdump's: its summary), the sustained rate and per CPU-second, and the ratio.
Needs root and pmacctd. Run from the repository root: .venv/bin/python -m bench.sflow [--datagrams N].
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from bench.capture import Capture, Lab, capture_tcpdump, finish_replay, show
from collectors.collector import Collector, CollectorConfig
from collectors.sflow import (
    COUNTER_COLUMNS,
    MIN_COUNTER_ROW,
    MIN_DROP,
    MIN_RAW_RECORD,
    TALLIES,
    SflowDecoder,
    walk,
    with_sflow_interfaces,
)
from collectors.sflow_source import DEFAULT_RECEIVE_BUFFER, SflowConfig, SflowSource
from pipeline.topology import load_topology
from tests.netns import NetLab, netns_unavailable

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
TOPOLOGY = SAMPLES / "topology.yaml"
COLLECTOR_IP, AGENT_IP = "198.51.100.1", "198.51.100.2"
BATCH_DATAGRAMS = 3_000  # about what one 4 MiB receive batch holds
QUIET_S = 1.5
LADDER_PPS = (25_000, 50_000, 100_000, 150_000, 175_000, 200_000, 250_000)  # datagrams/s asked of tcpreplay
LADDER_SECONDS = 1.5
SETTLE_S = 3.0


def pmacctd_datagrams(pcap: Path, tmp: Path) -> list[bytes]:
    """The sFlow datagrams pmacctd's sfprobe exports for `pcap`, received on loopback."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, DEFAULT_RECEIVE_BUFFER)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.2)
    config, log = tmp / "pmacctd.conf", tmp / "pmacctd.log"
    config.write_text(
        f"daemonize: false\npcap_savefile: {pcap}\npcap_savefile_wait: true\nsampling_rate: 1\nplugins: sfprobe[s]\n"
        f"sfprobe_receiver[s]: 127.0.0.1:{receiver.getsockname()[1]}\nsfprobe_agentip[s]: 192.0.2.1\n"
        "sfprobe_ifindex[s]: 49\nsfprobe_direction[s]: in\n"
    )
    with log.open("w") as handle:
        process = subprocess.Popen(["pmacctd", "-f", str(config)], stdout=handle, stderr=subprocess.STDOUT)
    datagrams: list[bytes] = []
    quiet_since = time.monotonic()
    try:
        while "finished reading" not in log.read_text() or time.monotonic() - quiet_since < QUIET_S:
            try:
                datagrams.append(receiver.recv(65_535))
                quiet_since = time.monotonic()
            except TimeoutError:
                pass
    finally:
        process.terminate()
        process.wait(timeout=10)
        receiver.close()
    return datagrams


def best_of(runs: int, action: Callable[[], object]) -> float:
    """Fastest wall time of `runs` calls (the machine is shared; the minimum is the least disturbed)."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        times.append(time.perf_counter() - began)
    return min(times)


Received = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # buffer, offsets, lengths, arrival times


def received(batch: list[bytes], arrival_ns: int) -> Received:
    """Datagrams laid out in one buffer, as SflowSource receives them."""
    lengths = np.array([len(data) for data in batch], dtype=np.int64)
    offsets = np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)
    return (np.frombuffer(b"".join(batch), dtype=np.uint8), offsets, lengths,
            np.full(len(batch), arrival_ns, dtype=np.int64))


def decode_all(batches: list[Received]) -> int:
    decoder = SflowDecoder(with_sflow_interfaces(load_topology(TOPOLOGY)))
    return sum(decoder.decode(*batch).sampled for batch in batches)


def walk_only(batches: list[Received]) -> int:
    """The compiled walk without the numpy bookkeeping around it (ports, batches per rate, counter rows)."""
    found = 0
    for data, offsets, lengths, _ in batches:
        n, total = len(offsets), int(lengths.sum())
        packets = [np.empty(total // MIN_RAW_RECORD + 1, dtype=dtype)
                   for dtype in (np.int64, np.uint32, np.uint32, np.int64, np.int64, np.int64, np.int64)]
        rows = np.empty(total // MIN_COUNTER_ROW + 1, dtype=np.int64)
        drops = np.empty(total // MIN_DROP + 1, dtype=np.int64)
        found += walk(data, offsets, lengths, np.empty(n, dtype=np.int64), np.empty((n, 17), dtype=np.uint8),
                      np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64), *packets, rows,
                      np.empty((len(rows), len(COUNTER_COLUMNS) + 1), dtype=np.uint64), drops, drops.copy(),
                      np.zeros(len(TALLIES), dtype=np.int64))[0]
    return found


def decode_and_collect(batches: list[Received]) -> int:
    topology = with_sflow_interfaces(load_topology(TOPOLOGY))
    decoder = SflowDecoder(topology)
    collectors: dict[int, Collector] = {}
    for batch in batches:
        for rate, packets in decoder.decode(*batch).packets.items():
            collector = collectors.setdefault(rate, Collector(topology, CollectorConfig(sampling_rate=rate)))
            collector.process(packets)
    for collector in collectors.values():
        collector.finish()
    return sum(collector.stats.packets for collector in collectors.values())


def python_walk(batches: list[Received]) -> int:
    """Per-sample Python: find each raw_packet_header of each flow sample; no checks, no columns."""
    found = 0
    for buffer, offsets, _, _ in batches:
        data = memoryview(buffer)
        for start in offsets.tolist():
            p = start + 8 + (4 if struct.unpack_from(">I", data, start + 4)[0] == 1 else 16)
            count = struct.unpack_from(">I", data, p + 12)[0]
            p += 16
            for _ in range(count):
                kind, length = struct.unpack_from(">II", data, p)
                if kind == 1:
                    q = p + 8 + 32
                    for _ in range(struct.unpack_from(">I", data, q - 4)[0]):
                        record, size = struct.unpack_from(">II", data, q)
                        if record == 1:
                            struct.unpack_from(">IIII", data, q + 8)
                            found += 1
                        q += 8 + size
                p += 8 + length
    return found


def offline(datagrams: list[bytes], total: int) -> None:
    repeats = max(1, round(total / len(datagrams)))
    stream = datagrams * repeats
    clock = time.time_ns()
    batches = [received(stream[i : i + BATCH_DATAGRAMS], clock + i * 1_000_000)
               for i in range(0, len(stream), BATCH_DATAGRAMS)]
    samples = decode_all(batches)  # compiles (or loads) the walk
    print(f"\noffline, {len(stream):,} datagrams ({samples:,} flow samples) in batches of {BATCH_DATAGRAMS:,}, "
          "each already in one buffer as received:")
    rates = {}
    for name, action, runs in (("compiled walk only", walk_only, 3), ("decoder", decode_all, 3),
                               ("decoder + collector", decode_and_collect, 1), ("python struct walk", python_walk, 1)):
        seconds = best_of(runs, lambda action=action: action(batches))  # type: ignore[misc]
        rates[name] = len(stream) / seconds
        print(f"  {name:<20} {len(stream) / seconds:>12,.0f} datagrams/s {samples / seconds:>12,.0f} samples/s")
    print(f"  the compiled walk = {rates['compiled walk only'] / rates['python struct walk']:.1f}x a bare per-sample "
          "Python walk that only finds the headers (no checks, no columns)")


def sflow_pcap(datagrams: list[bytes], mac: str, port: int, out: Path) -> None:
    """The datagrams as UDP frames from the agent's address to the collector's, for tcpreplay."""
    head = Ether(src="02:00:00:00:00:aa", dst=mac) / IP(src=AGENT_IP, dst=COLLECTOR_IP) / UDP(sport=6343, dport=port)
    wrpcap(str(out), [head / Raw(data) for data in datagrams])


def receive_buffer_errors() -> int:
    """This namespace's UDP RcvbufErrors: datagrams the kernel dropped because a socket's queue was full."""
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def capture_sflow(lab: Lab, source: SflowSource, loops: int, pps: int | None = None) -> Capture:
    """SflowSource in this process while tcpreplay sends; stops once every datagram is kept or dropped."""
    stop = threading.Event()
    steps = source.steps(stop)
    next(steps)
    errors = receive_buffer_errors()
    before = resource.getrusage(resource.RUSAGE_SELF)
    process = lab.start_replay(loops, pps)
    sent, deadline = None, math.inf
    for _ in steps:
        if sent is None:
            sent = finish_replay(process, wait=False)
            deadline = time.monotonic() + SETTLE_S if sent else math.inf
        dropped = receive_buffer_errors() - errors
        if sent and (source.counts()["datagrams"] + dropped >= sent.sent or time.monotonic() > deadline):
            stop.set()
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert sent is not None
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Capture("fabricscope", source.counts()["datagrams"], receive_buffer_errors() - errors, cpu, sent)


def live(datagrams: list[bytes], total: int, tmp: Path) -> None:
    loops = max(1, round(total / len(datagrams)))
    with NetLab() as netlab:
        lab = Lab(netlab, tmp / "sflow.pcap")
        netlab.address(lab.capture, f"{COLLECTOR_IP}/24")
        mac = Path(f"/sys/class/net/{lab.capture}/address").read_text().strip()
        source = SflowSource(load_topology(TOPOLOGY), SflowConfig(listen=f"{COLLECTOR_IP}:0")).start()
        sflow_pcap(datagrams, mac, source.port, lab.pcap)
        ours = capture_sflow(lab, source, loops)
        samples = source.counts()["samples_flow"]
        holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the same socket work for the kernel
        holder.bind((COLLECTOR_IP, source.port))
        theirs = capture_tcpdump(lab, loops, None, 65_535, DEFAULT_RECEIVE_BUFFER)
        holder.close()
        ladder = []
        for pps in LADDER_PPS:
            step = SflowSource(load_topology(TOPOLOGY), SflowConfig(listen=f"{COLLECTOR_IP}:{source.port}")).start()
            ladder.append(capture_sflow(lab, step, max(1, round(pps * LADDER_SECONDS / len(datagrams))), pps))
    print(f"\nlive: {len(datagrams):,} datagrams x {loops} loops by tcpreplay --topspeed into a veth; "
          f"the socket's queue and tcpdump's ring both {DEFAULT_RECEIVE_BUFFER // 2**20} MiB (counts are datagrams)")
    for run in (ours, theirs):
        show(run)
    print(f"  fabricscope decoded {samples:,} flow samples: {samples / ours.replay.seconds:,.0f} samples/s of replay")
    print(f"  sustained: fabricscope = {ours.sustained_pps / theirs.sustained_pps:.2f}x tcpdump;  per CPU-second: "
          f"fabricscope = {ours.per_cpu_second / theirs.per_cpu_second:.2f}x tcpdump "
          "(tcpdump only writes to /dev/null; fabricscope decodes sFlow, then every sampled header into flows)")
    print(f"\n--pps ladder for fabricscope, about {LADDER_SECONDS} s of datagrams per step:")
    for run in ladder:
        print("  ", end="")
        show(run)
    kept = [run.replay.pps for run in ladder if run.drops == 0 and run.captured == run.replay.sent]
    print(f"  highest replay rate fabricscope kept whole: {max(kept, default=0):,.0f} datagrams/s "
          f"({max(kept, default=0) * samples / max(ours.captured, 1):,.0f} samples/s at this sample's mix)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default="link_failure", help="samples/NAME.pcap for pmacctd (default: %(default)s)")
    parser.add_argument("--datagrams", type=int, default=200_000, help="datagrams per run")
    args = parser.parse_args()
    if shutil.which("pmacctd") is None:
        sys.exit("bench.sflow needs Debian pmacct (pmacctd with the sfprobe plugin)")
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        datagrams = pmacctd_datagrams(SAMPLES / f"{args.sample}.pcap", tmp)
        size = sum(len(d) for d in datagrams) / len(datagrams)
        print(f"pmacctd sfprobe on {args.sample}.pcap: {len(datagrams):,} datagrams, {size:,.0f} bytes each on average")
        offline(datagrams, args.datagrams)
        reason = netns_unavailable()
        if reason:
            print(f"\nlive part skipped: network namespaces unavailable: {reason}")
            return
        live(datagrams, args.datagrams, tmp)


if __name__ == "__main__":
    main()
