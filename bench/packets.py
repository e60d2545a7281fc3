"""The packet recorder's cost and the time to cut one flow out of its store, measured in this run.

1. Recorder cost: generates a ~1M-packet fabric pcap at 128-byte snaplen (the scenario of bench.collector)
   and runs the collector over it at full speed without and with the recorder (segments written to
   --store-dir), alternating, best of --runs each; prints both rates and the recorder's cost.
2. Cut: fills a recorder store of --store-gb (the same capture recorded again and again, each pass shifted in
   time so the store spans --span-min minutes), then times `fabricscope packets`' selection of one RoCE flow
   out of a 1-minute window (indexes open only the segments and chunks that can hold it). The peer is tshark's
   display filter on the window's first segment, its rate extrapolated to the whole window (tshark over the
   whole window would take minutes).

Run from the repository root: .venv/bin/python -m bench.packets [--packets N] [--store-gb G] [--store-dir D].
Targets (issue 14): the recorder costs ≤10% of the collector's throughput; the cut takes ≤2 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench.collector import RECORDS_PER_MS, SCENARIO, TOPOLOGY
from collectors.collector import Collector
from collectors.decode import Decoder
from collectors.packet_select import FlowFilter, Selection, flow_text
from collectors.packets import PacketBatch
from collectors.pcapfile import open_capture
from collectors.recorder import Recorder, RecorderConfig, recorded_store, segments_of
from pipeline.detect.ecmp import EcmpConfig
from pipeline.topology import load_topology
from simulator.generator import generate
from simulator.scenario import load_scenario

SECOND = 1_000_000_000
WINDOW_S = 60


def collect(path: Path, store: Path | None) -> tuple[float, float]:
    """Wall and CPU time (all threads, user + kernel) of one collector pass over `path`, with a fresh recorder
    into `store` when given (the times include the recorder's draining its queue at the end); a batch the
    recorder dropped fails the bench. The recorder works on a second thread, so its wall cost depends on a
    free core; its CPU cost does not."""
    topology = load_topology(TOPOLOGY)
    if store is not None:
        shutil.rmtree(store, ignore_errors=True)
    recorder = Recorder(store, topology) if store is not None else None
    collector = Collector(topology, recorder=recorder)
    began, cpu = time.perf_counter(), time.process_time()
    with open_capture(path) as capture:
        for _ in collector.run(capture):
            pass
    if recorder is not None:
        recorder.close()
        if recorder.stats.dropped:
            raise SystemExit(f"the recorder dropped {recorder.stats.dropped} packets: its queue was full")
    return time.perf_counter() - began, time.process_time() - cpu


def shifted(batch: PacketBatch, shift_ns: int) -> PacketBatch:
    return PacketBatch(batch.data, batch.offset, batch.caplen, batch.wirelen, batch.ts_ns + shift_ns,
                       batch.interface, batch.interfaces, batch.linktype)


def fill_store(path: Path, store: Path, gigabytes: float, span_min: float) -> tuple[int, int]:
    """Record `path` again and again, each pass shifted, until the store holds `gigabytes`; the passes spread
    evenly over `span_min` minutes. Returns (passes, first packet time)."""
    topology = load_topology(TOPOLOGY)
    budget_mb = int(gigabytes * 1024) + 256
    recorder = Recorder(store, topology, RecorderConfig(budget_mb=budget_mb, pinned_budget_mb=1))
    decoder = Decoder(topology)
    with open_capture(path) as capture:
        batches = list(capture)
        first = int(batches[0].ts_ns[0])
        packets = sum(len(batch) for batch in batches)
        pass_bytes = path.stat().st_size + 16 * packets  # a pcapng block is 16 bytes longer than a pcap record
        passes = max(1, round(gigabytes * (1 << 30) / pass_bytes))
        step_ns = int(span_min * 60 * SECOND / passes)
        for repeat in range(passes):
            for batch in batches:
                moved = shifted(batch, repeat * step_ns)
                recorder.write(moved, decoder.decode(moved))
            recorder.close()  # drains the queue, so the next pass finds room (a full queue drops)
    return passes, first


def busiest_roce_flow(path: Path) -> FlowFilter:
    topology = load_topology(TOPOLOGY)
    with open_capture(path) as capture:
        decoded = Decoder(topology).decode(next(iter(capture)))
    rows = np.flatnonzero(decoded.is_roce)
    keys = Counter(zip(decoded.src_hi[rows].tolist(), decoded.src_lo[rows].tolist(), decoded.dst_hi[rows].tolist(),
                       decoded.dst_lo[rows].tolist(), decoded.src_port[rows].tolist(),
                       decoded.dst_port[rows].tolist(), strict=True))
    (src_hi, src_lo, dst_hi, dst_lo, src_port, dst_port), _ = keys.most_common(1)[0]
    return FlowFilter((src_hi, src_lo), (dst_hi, dst_lo), src_port, dst_port, 17)


def tshark_rate(segment: Path, flow: FlowFilter) -> float:
    """Packets/s of tshark's display filter for `flow` over one segment, writing the matches."""
    def address(words: tuple[int, int]) -> str:
        return f"10.{(words[1] >> 16) & 0xFF}.{(words[1] >> 8) & 0xFF}.{words[1] & 0xFF}"

    packets = sum(len(batch) for batch in open_capture(segment))
    display = (f"ip.src=={address(flow.src)} && ip.dst=={address(flow.dst)} && udp.srcport=={flow.src_port} "
               f"&& udp.dstport=={flow.dst_port}")
    with tempfile.TemporaryDirectory() as scratch:
        began = time.perf_counter()
        subprocess.run(["tshark", "-n", "-r", str(segment), "-Y", display, "-w", str(Path(scratch) / "cut.pcapng")],
                       check=True, capture_output=True)
        return packets / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--store-gb", type=float, default=2.0, help="size of the store the cut is timed on "
                        "(0: measure the recorder's cost only)")
    parser.add_argument("--span-min", type=float, default=10.0, help="minutes of packet time the store spans")
    parser.add_argument("--store-dir", type=Path, help="where segments are written (default: a temporary "
                        "directory); say which disk it is on when quoting figures")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.store_dir) as tmp_name:
        tmp = Path(tmp_name)
        duration_ms = max(10, args.packets // RECORDS_PER_MS)
        scenario_path = tmp / "bench-128.scenario.yaml"
        scenario_path.write_text(SCENARIO.format(snaplen=128, duration_ms=duration_ms,
                                                 congestion_start=duration_ms // 5,
                                                 congestion_end=duration_ms * 3 // 5), encoding="utf-8")
        outputs = generate(load_scenario(scenario_path), tmp / "bench-128.pcap", imbalance=EcmpConfig())
        pcap = outputs.pcap
        collect(pcap, tmp / "warm")  # page cache, compiled scans and copy loop
        without, with_recorder = [], []
        for _ in range(args.runs):
            without.append(collect(pcap, None))
            with_recorder.append(collect(pcap, tmp / "recorded"))
        bare, recorded = outputs.packets / min(without)[0], outputs.packets / min(with_recorder)[0]
        bare_cpu, recorded_cpu = min(cpu for _, cpu in without), min(cpu for _, cpu in with_recorder)
        segments_mb = sum(path.stat().st_size for path in (tmp / "recorded").rglob("*.pcapng")) / 1e6
        print(f"recorder cost, {outputs.packets:,} packets at 128-byte snaplen (best of {args.runs}; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores):")
        print(f"  collector alone        {bare:>12,.0f} pkts/s   {bare_cpu:.2f} CPU s")
        print(f"  collector + recorder   {recorded:>12,.0f} pkts/s   {recorded_cpu:.2f} CPU s   "
              f"({segments_mb:,.0f} MB of segments written)")
        print(f"  recorder cost          {100 * (1 - recorded / bare):>11.1f} % of the throughput (target <= 10 %); "
              f"{1e9 * (recorded_cpu - bare_cpu) / outputs.packets:.0f} ns of CPU a packet, "
              f"{100 * (recorded_cpu - bare_cpu) / bare_cpu:.0f} % of the collector's")
        if args.store_gb <= 0:
            return

        store = tmp / "store"
        began = time.perf_counter()
        passes, first = fill_store(pcap, store, args.store_gb, args.span_min)
        filled = time.perf_counter() - began
        segments = segments_of(store)
        size_gb = sum(path.stat().st_size for path in segments) / (1 << 30)
        flow = busiest_roce_flow(pcap)
        start = first + int(args.span_min * 60 * SECOND) // 2
        selection = Selection(start_ns=start, end_ns=start + WINDOW_S * SECOND, flow=flow, limit=10_000_000)
        lookup = recorded_store(store, load_topology(TOPOLOGY))
        began = time.perf_counter()
        cut = lookup.select(selection)
        cut_s = time.perf_counter() - began
        in_window = [path for path in segments
                     if start - 10 * SECOND <= int(path.name.split("-")[0]) <= start + WINDOW_S * SECOND]
        window_packets = sum(sum(len(batch) for batch in open_capture(path)) for path in in_window)
        print(f"\ncut, store of {size_gb:.2f} GiB in {len(segments)} segments ({passes} passes over "
              f"{args.span_min:g} min, filled in {filled:.0f} s):")
        print(f"  one flow ({flow_text(flow)}) out of a {WINDOW_S} s window of {len(in_window)} segments, "
              f"{window_packets:,} packets: {len(cut):,} packets in {cut_s:.2f} s (target <= 2 s); "
              f"{lookup.decoded_packets:,} packets decoded")
        if shutil.which("tshark") and in_window:
            rate = tshark_rate(in_window[0], flow)
            print(f"  tshark -Y on one segment: {rate:,.0f} pkts/s, so ~{window_packets / rate:,.0f} s for the window "
                  f"(fabricscope = {window_packets / rate / cut_s:,.0f}x tshark)")


if __name__ == "__main__":
    main()
