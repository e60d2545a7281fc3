"""`replay --workers N` against one worker and tshark, whole processes, all measured in this run.

Generates mirrored ERSPAN II traffic cut to a 160-byte inner snaplen (issue 17's was 4.19M packets, 970 MB;
the generator's mix gives ~4.08M packets, ~690 MB),
then times `fabricscope replay CAPTURE --out FILE` as a user runs it (start-up included) with 1 and N
workers, interleaved (1, N, 1, N, ...) so a busy neighbour slows both alike, and `tshark -T fields` on the
first 100k packets. Prints packets/s and CPU time of every run, the fastest of each beside tshark, the start-up
(the replay of an empty capture), and whether the flow rows of N workers equal those of one
(sorted lines of the --out files). Run from the repository root:
.venv/bin/python -m bench.workers [--packets N] [--workers N] [--runs R]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.collector import RECORDS_PER_MS, SCENARIO, TOPOLOGY, TSHARK_FIELDS, TSHARK_PACKETS, slice_pcap
from collectors.workers import available_cores
from pipeline.detect.ecmp import EcmpConfig
from simulator.generator import generate
from simulator.scenario import load_scenario

SNAPLEN = 160  # the inner frame's bytes kept by the mirror (issue 17's traffic)
PACKETS = 4_190_000


def generate_capture(tmp: Path, packets: int) -> tuple[Path, int]:
    duration_ms = max(10, packets // RECORDS_PER_MS)
    scenario = tmp / "workers.scenario.yaml"
    scenario.write_text(SCENARIO.format(snaplen=SNAPLEN, duration_ms=duration_ms, congestion_start=duration_ms // 5,
                                        congestion_end=duration_ms * 3 // 5), encoding="utf-8")
    outputs = generate(load_scenario(scenario), tmp / "workers.pcap", imbalance=EcmpConfig())
    return outputs.pcap, outputs.packets


def replay(capture: Path, workers: int, out: Path) -> tuple[float, float]:
    """Wall time and CPU time (user + system, its workers included) of one whole `fabricscope replay --out`
    process: on a shared machine the CPU time shows what the wall time hides, the work itself."""
    command = [sys.executable, "-m", "fabricscope.cli", "replay", str(capture), "--topology", str(TOPOLOGY),
               "--out", str(out), "--workers", str(workers), "--no-progress"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def tshark_rate(capture: Path, tmp: Path) -> float:
    head = tmp / "head.pcap"
    slice_pcap(capture, head, TSHARK_PACKETS)
    fields = [arg for name in TSHARK_FIELDS for arg in ("-e", name)]
    began = time.perf_counter()
    subprocess.run(["tshark", "-n", "-r", str(head), "-T", "fields", *fields], check=True, stdout=subprocess.DEVNULL)
    return TSHARK_PACKETS / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=PACKETS)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--runs", type=int, default=3, help="runs of each, interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        capture, packets = generate_capture(tmp, args.packets)
        empty = tmp / "empty.pcap"
        slice_pcap(capture, empty, 0)
        print(f"{packets:,} packets, {capture.stat().st_size / 1e6:,.0f} MB, ERSPAN II, {SNAPLEN}-byte inner snaplen")
        replay(capture, 1, tmp / "warm.jsonl")  # page cache and compiled scans warm
        times: dict[int, list[tuple[float, float]]] = {1: [], args.workers: []}
        startup: list[tuple[float, float]] = []
        for _ in range(args.runs):
            for workers in times:
                times[workers].append(replay(capture, workers, tmp / f"flows-{workers}.jsonl"))
            startup.append(replay(empty, 1, tmp / "empty.jsonl"))
        tshark = tshark_rate(capture, tmp)
        best = {workers: packets / min(wall for wall, _ in runs) for workers, runs in times.items()}
        for workers, runs in times.items():
            rates = ", ".join(f"{packets / wall:,.0f} ({cpu:.2f} s CPU)" for wall, cpu in runs)
            print(f"  {workers} worker{'s' if workers > 1 else ''}: {rates} pkts/s (whole process, start-up included)")
        print("  start-up (replay of an empty capture): "
              + ", ".join(f"{wall:.2f} s ({cpu:.2f} s CPU)" for wall, cpu in startup))
        print(f"  tshark -T fields: {tshark:,.0f} pkts/s (first {TSHARK_PACKETS:,} packets)")
        one, many = best[1], best[args.workers]
        print(f"  fastest: 1 worker {one:,.0f} pkts/s = {one / tshark:,.1f}x tshark; {args.workers} workers "
              f"{many:,.0f} pkts/s = {many / tshark:,.1f}x tshark, {many / one:.2f}x one worker "
              f"(target >= {0.85 * args.workers:.2f}x)")
        lines = {workers: sorted((tmp / f"flows-{workers}.jsonl").read_text().splitlines()) for workers in times}
        same = lines[1] == lines[args.workers]
        print(f"  flow rows: 1 worker {len(lines[1]):,}, {args.workers} workers {len(lines[args.workers]):,}; "
              f"{'equal' if same else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
