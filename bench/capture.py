"""Live capture throughput against tcpdump, both measured in this run on the same veth and the same replay.

A namespace replays a sample with Debian tcpreplay (--preload-pcap, --loop) into a veth whose other end is
captured here, first by our CaptureSource (AF_PACKET TPACKET_V3 ring + the whole collector: decode, DPI, flow
table, link bins, DFI) and then by `tcpdump -w /dev/null` with the same ring size and snaplen. For each it
prints what it captured and what the kernel dropped, the sustained rate (packets kept per second of
replay) and packets per CPU-second of the capturing process; then the highest of a ladder of --pps rates
each sustains without a kernel drop. tcpreplay alone is timed first: on 2 cores the sender (which also pays
for the veth's receive path in its own softirq) is often the limit, and the output says so.
Needs root. Run from the repository root: .venv/bin/python -m bench.capture [--sample NAME] [--packets N].
"""

from __future__ import annotations

import argparse
import math
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from collectors.afpacket import DEFAULT_BLOCK_BYTES, DEFAULT_BLOCKS, DEFAULT_SNAPLEN, PacketRing
from collectors.capture_source import CaptureConfig, CaptureSource
from collectors.packets import PacketBatch
from collectors.pcapfile import open_capture
from pipeline.topology import load_topology
from tests.netns import NetLab, netns_unavailable

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
LADDER_PPS = (50_000, 100_000, 200_000, 300_000, 400_000, 600_000)
LADDER_SECONDS = 1.5  # traffic per ladder step
SETTLE_S = 3.0  # after the replay, how long a capture may take to hand over its last blocks
TCPDUMP_TIMEOUT_S = 1.5  # tcpdump's ring hands over a block at least every second (libpcap's default timeout)


@dataclass(frozen=True)
class Replay:
    """What tcpreplay reports: packets sent, seconds it took, its CPU seconds."""

    sent: int
    seconds: float
    cpu_s: float

    @property
    def pps(self) -> float:
        return self.sent / self.seconds


@dataclass(frozen=True)
class Capture:
    """One capture run: packets kept, kernel drops, the capturing process's CPU seconds, and the replay."""

    tool: str
    captured: int
    drops: int
    cpu_s: float
    replay: Replay

    @property
    def sustained_pps(self) -> float:
        """Packets kept per second of replay: the offered rate when nothing is dropped."""
        return self.captured / self.replay.seconds

    @property
    def per_cpu_second(self) -> float:
        return self.captured / self.cpu_s if self.cpu_s else math.inf


class Lab:
    """A mirror-source namespace and a veth from it into this namespace (IPv6 off, so only replayed frames
    arrive), plus the replay command."""

    def __init__(self, lab: NetLab, pcap: Path) -> None:
        self.lab = lab
        self.pcap = pcap
        self.namespace = lab.namespace("mirror")
        lab.run(self.namespace, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
                                 "net.ipv6.conf.default.disable_ipv6=1"])
        self.send, self.capture = f"fs{lab.tag}m", f"fs{lab.tag}c"
        lab.veth(self.send, self.capture, ns_a=self.namespace, mtu=9000)
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{self.capture}.disable_ipv6=1"], check=True)

    def start_replay(self, loops: int, pps: int | None) -> subprocess.Popen[str]:
        rate = f"--pps={pps}" if pps else "--topspeed"
        command = ["tcpreplay", "--preload-pcap", f"--loop={loops}", rate, f"--intf1={self.send}", str(self.pcap)]
        return self.lab.popen(self.namespace, command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def finish_replay(process: subprocess.Popen[str], *, wait: bool = True) -> Replay | None:
    """Reap tcpreplay (`ip netns exec` execs it, so the pid is tcpreplay's, and wait4 gives its CPU time) and
    parse its summary; None when not waiting and it is still running."""
    pid, status, usage = os.wait4(process.pid, 0 if wait else os.WNOHANG)
    if pid == 0:
        return None
    process.returncode = os.waitstatus_to_exitcode(status)
    output = process.stdout.read() if process.stdout else ""
    done = re.search(r"Actual: (\d+) packets \(\d+ bytes\) sent in ([\d.]+) seconds", output)
    sent = re.search(r"Successful packets:\s+(\d+)", output)
    if process.returncode != 0 or done is None or sent is None:
        raise RuntimeError(f"tcpreplay failed ({process.returncode}): {output.strip()}")
    return Replay(int(sent.group(1)), float(done.group(2)), usage.ru_utime + usage.ru_stime)


def replay(lab: Lab, loops: int, pps: int | None) -> Replay:
    done = finish_replay(lab.start_replay(loops, pps))
    assert done is not None
    return done


@dataclass(frozen=True)
class RingOptions:
    snaplen: int
    block_bytes: int
    blocks: int


class RingOnly:
    """The packet ring without the collector, to show what the capture itself costs beside tcpdump."""

    def __init__(self, iface: str, options: RingOptions) -> None:
        self.ring = PacketRing(iface, snaplen=options.snaplen, block_bytes=options.block_bytes, blocks=options.blocks)
        self.packets = 0

    def steps(self, stop: threading.Event) -> Iterator[PacketBatch]:
        with self.ring:
            for batch in self.ring.batches(stop):
                self.packets += len(batch)
                yield batch

    def counts(self) -> Mapping[str, int]:
        return {"packets": self.packets, "kernel_drops": self.ring.kernel_stats().drops}


def capture_ours(lab: Lab, loops: int, pps: int | None, options: RingOptions, *, decode: bool = True) -> Capture:
    """CaptureSource (or the bare ring) in this process while tcpreplay sends; stops once every sent packet
    is kept or dropped."""
    source: CaptureSource | RingOnly
    if decode:
        source = CaptureSource(
            load_topology(SAMPLES / "topology.yaml"),
            CaptureConfig(iface=lab.capture, snaplen=options.snaplen, block_bytes=options.block_bytes,
                          ring_mb=(options.block_bytes * options.blocks) >> 20),
        )
    else:
        source = RingOnly(lab.capture, options)
    stop = threading.Event()
    steps = source.steps(stop)
    next(steps)  # the ring is open
    before = resource.getrusage(resource.RUSAGE_SELF)
    process = lab.start_replay(loops, pps)
    sent: Replay | None = None
    deadline = math.inf
    for _ in steps:
        if sent is None:
            sent = finish_replay(process, wait=False)
            deadline = time.monotonic() + SETTLE_S if sent else math.inf
        counts = source.counts()
        if sent and (counts["packets"] + counts["kernel_drops"] >= sent.sent or time.monotonic() > deadline):
            stop.set()
    after = resource.getrusage(resource.RUSAGE_SELF)
    assert sent is not None
    counts = source.counts()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Capture("fabricscope" if decode else "ring only", counts["packets"], counts["kernel_drops"], cpu, sent)


def capture_tcpdump(lab: Lab, loops: int, pps: int | None, snaplen: int, ring_bytes: int) -> Capture:
    """`tcpdump -w /dev/null` with the same ring size and snaplen; its summary gives what it kept and dropped."""
    command = ["tcpdump", "-n", "-Q", "in", "-i", lab.capture, "-s", str(snaplen), "-B", str(ring_bytes // 1024),
               "-w", "/dev/null"]
    tcpdump = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert tcpdump.stderr is not None
    if "listening on" not in tcpdump.stderr.readline():
        tcpdump.kill()
        raise RuntimeError("tcpdump did not start")
    sent = replay(lab, loops, pps)
    time.sleep(TCPDUMP_TIMEOUT_S)
    tcpdump.send_signal(signal.SIGINT)
    _, status, usage = os.wait4(tcpdump.pid, 0)
    tcpdump.returncode = os.waitstatus_to_exitcode(status)
    summary = tcpdump.stderr.read()
    captured = re.search(r"(\d+) packets? captured", summary)
    dropped = re.search(r"(\d+) packets? dropped by kernel", summary)
    if captured is None or dropped is None:
        raise RuntimeError(f"no summary from tcpdump: {summary.strip()}")
    return Capture("tcpdump", int(captured.group(1)), int(dropped.group(1)), usage.ru_utime + usage.ru_stime, sent)


def show(run: Capture) -> None:
    lost = run.replay.sent - run.captured - run.drops
    unexplained = f", {lost:,} neither kept nor counted as dropped" if lost else ""
    print(f"  {run.tool:<12} kept {run.captured:>9,} of {run.replay.sent:,}, kernel drops {run.drops:>8,}{unexplained}"
          f"   sustained {run.sustained_pps:>10,.0f} pkts/s (replay sent {run.replay.pps:,.0f})"
          f"   {run.per_cpu_second:>10,.0f} pkts per CPU-second")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", default="link_failure", help="samples/NAME.pcap to replay (default: %(default)s)")
    parser.add_argument("--packets", type=int, default=1_000_000, help="packets per topspeed run")
    parser.add_argument("--snaplen", type=int, default=DEFAULT_SNAPLEN)
    parser.add_argument("--block-bytes", type=int, default=DEFAULT_BLOCK_BYTES)
    parser.add_argument("--blocks", type=int, default=DEFAULT_BLOCKS)
    args = parser.parse_args()
    reason = netns_unavailable()
    if reason:
        sys.exit(f"bench.capture needs network namespaces: {reason}")
    pcap = SAMPLES / f"{args.sample}.pcap"
    with open_capture(pcap) as capture:
        batches = list(capture)
        per_loop = sum(len(batch) for batch in batches)
        frame_bytes = sum(int(batch.caplen.sum()) for batch in batches) / per_loop
    ring_bytes = args.block_bytes * args.blocks
    options = RingOptions(args.snaplen, args.block_bytes, args.blocks)
    loops = max(1, round(args.packets / per_loop))
    with NetLab() as netlab:
        lab = Lab(netlab, pcap)
        capture_ours(lab, 1, 20_000, options)  # warm up: compile, page in
        alone = replay(lab, loops, None)
        print(f"\n{pcap.name}: {per_loop:,} packets per loop, {frame_bytes:,.0f} bytes per frame on the wire; "
              f"ring {ring_bytes / 2**20:,.0f} MiB and snaplen {args.snaplen} for both")
        print(f"tcpreplay alone, --topspeed, nobody capturing: {alone.pps:,.0f} pkts/s "
              f"({alone.sent:,} packets, {alone.cpu_s:.2f} CPU-s)")
        print(f"\n--topspeed, {loops} loops:")
        ours = capture_ours(lab, loops, None, options)
        bare = capture_ours(lab, loops, None, options, decode=False)
        theirs = capture_tcpdump(lab, loops, None, args.snaplen, ring_bytes)
        for run in (ours, bare, theirs):
            show(run)
        print(f"  sustained: fabricscope = {ours.sustained_pps / theirs.sustained_pps:.2f}x tcpdump;  "
              f"per CPU-second: fabricscope = {ours.per_cpu_second / theirs.per_cpu_second:.2f}x tcpdump, "
              f"ring only = {bare.per_cpu_second / theirs.per_cpu_second:.2f}x tcpdump "
              "(tcpdump only writes to /dev/null; fabricscope decodes, classifies and builds flows)")
        runs = [ours, theirs]
        print(f"\n--pps ladder, about {LADDER_SECONDS} s of traffic per step:")
        for pps in LADDER_PPS:
            step_loops = max(1, round(pps * LADDER_SECONDS / per_loop))
            for run in (capture_ours(lab, step_loops, pps, options),
                        capture_tcpdump(lab, step_loops, pps, args.snaplen, ring_bytes)):
                print(f"  --pps={pps:<8,}", end="")
                show(run)
                runs.append(run)
        best: dict[str, float] = {}
        dropped: set[str] = set()
        for run in runs:
            if run.drops == 0 and run.captured == run.replay.sent:
                best[run.tool] = max(best.get(run.tool, 0.0), run.replay.pps)
            else:
                dropped.add(run.tool)
        print("\nhighest replay rate sustained without kernel drops (the rate tcpreplay achieved, not the one asked; "
              "--topspeed runs included):")
        for tool in ("fabricscope", "tcpdump"):
            limit = "" if tool in dropped else " - never dropped: tcpreplay sent no faster, the limit is higher"
            print(f"  {tool:<12} {best.get(tool, 0.0):>10,.0f} pkts/s{limit}")
        if "fabricscope" not in dropped and ours.drops == 0:
            print(f"\ntcpreplay is the limit on this {os.cpu_count()}-core machine ({alone.pps:,.0f} pkts/s alone, "
                  "less while it shares the cores with a capture); fabricscope's own ceiling is nearer its pkts "
                  "per CPU-second")


if __name__ == "__main__":
    main()
