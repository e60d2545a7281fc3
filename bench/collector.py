"""Collector throughput and memory against its peers, all measured in this run.

Generates a ~1M-packet fabric pcap twice (full frames and 128-byte snaplen) with the scenario generator,
then times on each: our collector end to end (read + decode + DPI + flow table + link bins, one process),
`tshark -T fields` for the same fields, `ndpiReader` (Debian libndpi-bin) and `cat FILE > /dev/null`, and
prints packets/s and the ratios. A second part feeds 1M distinct active flows through the collector and
reports peak RSS. Run from the repository root: .venv/bin/python -m bench.collector [--packets N].

Targets (issue 3): ≥2M pkts/s at 128-byte snaplen; ≥10x ndpiReader and ≥50x tshark on full frames; within
2x of cat on full frames; peak RSS < 1 GB with 1M active flows.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.flows_pcap import write_distinct_flows
from collectors.collector import Collector
from collectors.pcapfile import open_capture
from pipeline.detect.ecmp import EcmpConfig
from pipeline.topology import load_topology
from simulator.generator import generate
from simulator.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "samples" / "topology.yaml"
SCENARIO = """
name: bench-{snaplen}
duration_ms: {duration_ms}
seed: 5
capture: {{erspan_type: 2, snaplen: {snaplen}, ts_resolution: ns}}
fabric: {{name: pod1, leaves: 4, spines: 2, hosts_per_leaf: 8}}
traffic:
  - {{kind: allreduce, job: bench, hosts: 16, qps_per_pair: 4, period_ms: 10, burst_ms: 6, packet_gap_us: 12,
     payload: 4096, message_packets: 8}}
  - {{kind: nvme_tcp, flows: 8, exchanges_per_s: 2000, payload: 4096}}
  - {{kind: tls, flows: 4, exchanges_per_s: 500, payload: 1024}}
  - {{kind: bfd, interval_ms: 1}}
faults:
  - {{kind: congestion, link: leaf2-spine1, direction: down, start_ms: {congestion_start}, end_ms: {congestion_end}}}
"""
RECORDS_PER_MS = 7_600
TSHARK_FIELDS = (
    "ip.src", "ip.dst", "udp.srcport", "udp.dstport", "tcp.srcport", "tcp.dstport", "ip.dsfield.dscp",
    "ip.dsfield.ecn", "infiniband.bth.opcode", "infiniband.bth.destqp", "infiniband.bth.psn", "erspan.spanid",
    "vlan.id",
)
ERSPAN_II_BYTES = 14 + 20 + 8 + 8  # outer Ethernet, IPv4, GRE with sequence number, ERSPAN II
TSHARK_PACKETS = 100_000  # tshark is ~100x slower: time it on the first 100k packets only


def best_of(runs: int, action: object) -> float:
    """Fastest wall time of `runs` calls (the machine is shared; the minimum is the least disturbed)."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        action()  # type: ignore[operator]
        times.append(time.perf_counter() - began)
    return min(times)


def run_collector(path: Path) -> int:
    collector = Collector(load_topology(TOPOLOGY))
    with open_capture(path) as capture:
        for _ in collector.run(capture):
            pass
    return collector.stats.packets


def slice_pcap(path: Path, out: Path, packets: int) -> None:
    """The first `packets` records of a pcap (classic, little-endian as the generator writes it)."""
    data = path.read_bytes()
    pos, count = 24, 0
    while pos < len(data) and count < packets:
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + caplen
        count += 1
    out.write_bytes(data[:pos])


def timed_collector(path: Path) -> tuple[float, float, int]:
    """Wall time, kernel CPU time and minor page faults of one collector pass. Full frames put one header
    per 4 KB page, so mapping the file costs kernel time that depends on how much of it the page cache holds
    in 2 MB pages; printed beside the rate so a slow run shows whether the kernel or the collector was slow."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    began = time.perf_counter()
    run_collector(path)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_SELF)
    return wall, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt


def measure(path: Path, packets: int, tmp: Path) -> tuple[dict[str, float], str]:
    """Packets/s of every tool on `path`, and a note on the kernel's share of our fastest run."""
    rates: dict[str, float] = {}
    run_collector(path)  # warm the page cache and compile the scans
    wall, kernel, faults = min(timed_collector(path) for _ in range(3))
    rates["fabricscope"] = packets / wall
    note = f"fabricscope's fastest run: {wall:.2f} s, of which {kernel:.2f} s in the kernel, {faults:,} page faults"
    rates["cat"] = packets / best_of(3, lambda: subprocess.run(f"cat {path} > /dev/null", shell=True, check=True))
    if shutil.which("ndpiReader"):
        inner = tmp / f"inner-{path.name}"
        decapsulate(path, inner)
        rates["ndpiReader"] = packets / best_of(
            1, lambda: subprocess.run(["ndpiReader", "-q", "-i", str(inner)], check=True, capture_output=True)
        )
        inner.unlink()
    if shutil.which("tshark"):
        head = tmp / f"head-{path.name}"
        slice_pcap(path, head, TSHARK_PACKETS)
        fields = [arg for name in TSHARK_FIELDS for arg in ("-e", name)]
        command = ["tshark", "-n", "-r", str(head), "-T", "fields", *fields]
        rates["tshark"] = min(packets, TSHARK_PACKETS) / best_of(
            1, lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        )
    return rates, note


def decapsulate(path: Path, out: Path) -> None:
    """The monitored frames without their ERSPAN II encapsulation, for peers that cannot read ERSPAN
    (ndpiReader would otherwise see a handful of GRE tunnels and do no DPI at all)."""
    data = np.fromfile(path, dtype=np.uint8)
    pos, chunks = 24, [data[:24]]
    while pos + 16 <= len(data):
        caplen, wirelen = struct.unpack_from("<II", data, pos + 8)
        header = data[pos : pos + 16].copy()
        header[8:16] = np.frombuffer(struct.pack("<II", caplen - ERSPAN_II_BYTES, wirelen - ERSPAN_II_BYTES), np.uint8)
        chunks += [header, data[pos + 16 + ERSPAN_II_BYTES : pos + 16 + caplen]]
        pos += 16 + caplen
    np.concatenate(chunks).tofile(out)


def active_flows_rss(path: Path) -> tuple[int, float]:
    """Run the collector over a capture of distinct flows; return the most flows it held at once and the
    peak RSS in MB. Called in a process of its own (--memory) so nothing else counts in its RSS."""
    collector = Collector(load_topology(TOPOLOGY))
    held = 0
    with open_capture(path) as capture:
        for batch in capture:
            collector.process(batch)
            held = max(held, collector.active_flows)
    collector.finish()
    return held, peak_rss_mb()


def peak_rss_mb() -> float:
    """This process's own peak RSS. Not getrusage: on Linux its ru_maxrss keeps the parent's peak across
    fork and exec, while VmHWM belongs to this process's memory map only."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--flows", type=int, default=1_000_000, help="active flows for the memory check")
    parser.add_argument("--memory", metavar="PCAP", type=Path, help="only the memory check, on this capture")
    args = parser.parse_args()
    if args.memory:
        held, rss_mb = active_flows_rss(args.memory)
        print(f"memory: {held:,} active flows held, peak RSS {rss_mb:,.0f} MB (target < 1024 MB)")
        return
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        duration_ms = max(10, args.packets // RECORDS_PER_MS)
        for snaplen in (0, 128):
            scenario_path = tmp / f"bench-{snaplen}.scenario.yaml"
            scenario_path.write_text(
                SCENARIO.format(
                    snaplen=snaplen,
                    duration_ms=duration_ms,
                    congestion_start=duration_ms // 5,
                    congestion_end=duration_ms * 3 // 5,
                ),
                encoding="utf-8",
            )
            outputs = generate(load_scenario(scenario_path), tmp / f"bench-{snaplen}.pcap", imbalance=EcmpConfig())
            size_mb = outputs.pcap.stat().st_size / 1e6
            label = "full frames" if snaplen == 0 else f"{snaplen}-byte snaplen"
            rates, note = measure(outputs.pcap, outputs.packets, tmp)
            ours = rates["fabricscope"]
            print(f"\n{label}: {outputs.packets:,} packets, {size_mb:,.0f} MB")
            for name, rate in rates.items():
                ratio = "" if name == "fabricscope" else f"   fabricscope = {ours / rate:,.2f}x {name}"
                print(f"  {name:<12} {rate:>14,.0f} pkts/s{ratio}")
            print(f"  ({note})")
            outputs.pcap.unlink()
        flows_pcap = tmp / "flows.pcap"
        write_distinct_flows(flows_pcap, args.flows)
        print(flush=True)
        subprocess.run([sys.executable, "-m", "bench.collector", "--memory", str(flows_pcap)], check=True)


if __name__ == "__main__":
    main()
