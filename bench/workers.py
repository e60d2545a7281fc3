"""`replay --workers N` against one worker and tshark, whole processes, all measured in this run.

Generates mirrored ERSPAN II traffic cut to a 160-byte inner snaplen (issue 17's was 4.19M packets, 970 MB;
the generator's mix gives ~4.08M packets, ~690 MB),
then times `fabricscope replay CAPTURE --out FILE` as a user runs it (start-up included) with 1 and N
workers, interleaved (1, N, 1, N, ...) so a busy neighbour slows both alike, and `tshark -T fields` on the
first 100k packets. Prints packets/s and CPU time of every run, the fastest of each beside tshark, the start-up
(the replay of the capture's first STARTUP_PACKETS: the imports and the loading of every compiled kernel a
replay runs, which an empty capture would not load), and whether the flow rows of N workers equal those of
one (sorted lines of the --out files). Run from the repository root:
.venv/bin/python -m bench.workers [--packets N] [--workers N] [--runs R]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.collector import RECORDS_PER_MS, SCENARIO, TOPOLOGY, TSHARK_FIELDS, TSHARK_PACKETS, slice_pcap
from collectors.workers import available_cores
from pipeline.detect.ecmp import EcmpConfig
from simulator.generator import generate
from simulator.scenario import load_scenario

SNAPLEN = 160  # the inner frame's bytes kept by the mirror (issue 17's traffic)
PACKETS = 4_190_000
STARTUP_PACKETS = 1_000


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


@dataclass
class WorkersFigures:
    """Every run of `replay --out` with 1 and N workers, interleaved, and tshark on the same capture."""

    packets: int
    size_mb: float
    workers: int
    runs: dict[int, list[tuple[float, float]]]  # workers -> (wall s, CPU s) per run
    startup: list[tuple[float, float]]
    tshark: float  # pkts/s
    rows: dict[int, list[str]]  # workers -> sorted flow rows of its last run

    def best(self, workers: int) -> float:
        return self.packets / min(wall for wall, _ in self.runs[workers])

    @property
    def rows_equal(self) -> bool:
        return self.rows[1] == self.rows[self.workers]


def measure(packets: int, workers: int, runs: int, tmp: Path) -> WorkersFigures:
    capture, packets = generate_capture(tmp, packets)
    start = tmp / "start.pcap"
    slice_pcap(capture, start, STARTUP_PACKETS)
    replay(capture, 1, tmp / "warm.jsonl")  # page cache and compiled scans warm
    times: dict[int, list[tuple[float, float]]] = {1: [], workers: []}
    startup: list[tuple[float, float]] = []
    for _ in range(runs):
        for count in times:
            times[count].append(replay(capture, count, tmp / f"flows-{count}.jsonl"))
        startup.append(replay(start, 1, tmp / "start.jsonl"))
    rows = {count: sorted((tmp / f"flows-{count}.jsonl").read_text().splitlines()) for count in times}
    return WorkersFigures(packets, capture.stat().st_size / 1e6, workers, times, startup, tshark_rate(capture, tmp),
                          rows)


def report(figures: WorkersFigures) -> None:
    print(f"{figures.packets:,} packets, {figures.size_mb:,.0f} MB, ERSPAN II, {SNAPLEN}-byte inner snaplen")
    for workers, runs in figures.runs.items():
        rates = ", ".join(f"{figures.packets / wall:,.0f} ({cpu:.2f} s CPU)" for wall, cpu in runs)
        print(f"  {workers} worker{'s' if workers > 1 else ''}: {rates} pkts/s (whole process, start-up included)")
    print(f"  start-up (replay of the first {STARTUP_PACKETS:,} packets): "
          + ", ".join(f"{wall:.2f} s ({cpu:.2f} s CPU)" for wall, cpu in figures.startup))
    print(f"  tshark -T fields: {figures.tshark:,.0f} pkts/s (first {TSHARK_PACKETS:,} packets)")
    one, many, n = figures.best(1), figures.best(figures.workers), figures.workers
    print(f"  fastest: 1 worker {one:,.0f} pkts/s = {one / figures.tshark:,.1f}x tshark; {n} workers "
          f"{many:,.0f} pkts/s = {many / figures.tshark:,.1f}x tshark, {many / one:.2f}x one worker "
          f"(target >= {0.85 * n:.2f}x)")
    print(f"  flow rows: 1 worker {len(figures.rows[1]):,}, {n} workers {len(figures.rows[n]):,}; "
          f"{'equal' if figures.rows_equal else 'DIFFERENT'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--packets", type=int, default=PACKETS)
    parser.add_argument("--workers", type=int, default=available_cores())
    parser.add_argument("--runs", type=int, default=3, help="runs of each, interleaved")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        report(measure(args.packets, args.workers, args.runs, Path(tmp_name)))

if __name__ == "__main__":
    main()
