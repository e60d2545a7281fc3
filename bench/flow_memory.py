"""Peak RSS of `fabricscope replay` under a flood of distinct flows, against ndpiReader (and tshark) measured in
this run on the same traffic.

Writes a capture of N distinct RoCE flows within one second of packet time (one ERSPAN-mirrored packet each,
in time order), byte by byte with numpy from one scapy-built template, plus the same frames without their
ERSPAN encapsulation for the peers (they would see one GRE tunnel otherwise). Then runs, each as a process of
its own under `/usr/bin/time -v` (its "Maximum resident set size" is the largest process's peak): `fabricscope
replay` with `--out x.jsonl`, `--out x.parquet` and into the embedded store (broker + chdb), each with every
`--workers` count asked for; beside the largest process, the peak of the whole process tree's RSS (workers,
and the embedded broker in store mode) is sampled every 20 ms, with its PSS read at each new peak. The
target applies to that PSS: the memory the tree takes from the machine, where summed RSS counts every page
the forked workers share with their parent (libraries, compiled scans) once per process. Libraries
installed minutes ago may map from the page cache in large folios and add ~80 MB of file-backed RSS to
every process until the cache is dropped (`echo 1 > /proc/sys/vm/drop_caches`): measure a settled install.
And, up to --peer-flows (their memory grows with every flow: ndpiReader took 3.5 GB for 1M, 5M would take
most of a shared machine), `ndpiReader -i` and `tshark -q -z conv,udp` (its conversation table is a flow
table too). Target (issue 13): under 1.2 GB for 1M and for 5M flows in every output mode.
Run from the repository root: .venv/bin/python -m bench.flow_memory [--flows 1000000 5000000] [--out-dir DIR].
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.flows_pcap import PCAP_HEADER, START_S, template

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = ROOT / "samples" / "topology.yaml"
TARGET_MB = 1200
MODES = ("jsonl", "parquet", "store")
CHUNK = 250_000  # flows written per numpy block, so the generator itself stays small
ERSPAN_II_BYTES = 14 + 20 + 8 + 8  # outer Ethernet, IPv4, GRE with sequence number, ERSPAN II
RSS_LINE = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
SUMMARY_EARLY = re.compile(r"(\d+) flow rows exported early")


def write_flood(path: Path, flows: int, *, strip_erspan: bool = False) -> None:
    """`flows` distinct RoCE flows, one packet each, spread evenly in time order over one second. A flow's index
    gives its BTH destination QP and its 5-tuple (UDP source port: the low 16 bits; the last byte of the
    destination address 10.0.2.x: the rest), so peers that key on the 5-tuple see as many flows as we do."""
    frame, sport_at, dqpn_at = template()
    if strip_erspan:
        frame, sport_at, dqpn_at = frame[ERSPAN_II_BYTES:], sport_at - ERSPAN_II_BYTES, dqpn_at - ERSPAN_II_BYTES
    size = len(frame)
    with path.open("wb") as out:
        out.write(PCAP_HEADER.tobytes())
        for start in range(0, flows, CHUNK):
            index = np.arange(start, min(start + CHUNK, flows), dtype=np.uint64)
            records = np.empty((len(index), 16 + size), dtype=np.uint8)
            records[:, 16:] = np.frombuffer(frame, dtype=np.uint8)
            header = np.zeros((len(index), 4), dtype="<u4")
            header[:, 0] = START_S
            header[:, 1] = index * 1_000_000 // flows  # µs: every flow within the same second
            header[:, 2:] = size
            records[:, :16] = header.view(np.uint8)
            records[:, 16 + sport_at] = (index >> 8) & 0xFF
            records[:, 16 + sport_at + 1] = index & 0xFF
            records[:, 16 + sport_at - 1] = 11 + (index >> 16)  # IPv4 destination's last byte, before UDP
            for byte in range(3):
                records[:, 16 + dqpn_at + byte] = (index >> (16 - 8 * byte)) & 0xFF
            out.write(records.tobytes())


def tree_rss_kb(pid: int) -> int:
    """Resident kB of `pid` and every descendant now (a process gone meanwhile counts 0)."""
    return sum(_status_kb(member, "VmRSS:") for member in _tree(pid))


def tree_pss_kb(pid: int) -> int:
    """Proportional kB (PSS: a page k processes share counts 1/k in each) of `pid` and every descendant now.
    Reading it walks each process's page tables under its memory lock, so it is read only at a new RSS peak."""
    total = 0
    for member in _tree(pid):
        try:
            total += next(int(line.split()[1]) for line in Path(f"/proc/{member}/smaps_rollup").read_text()
                          .splitlines() if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue
    return total


def _status_kb(pid: int, field: str) -> int:
    try:
        return next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith(field))
    except (OSError, StopIteration):
        return 0


def _tree(pid: int) -> list[int]:
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(member for child in children for member in _tree(int(child)))]


def peak_rss(command: list[str]) -> tuple[float, float, float, float, str]:
    """Peak RSS in MB of the largest process (/usr/bin/time -v), of the whole process tree (summed every 20 ms:
    `replay --workers N` forks its workers) and its PSS sum at those peaks (pages the forked workers share with
    their parent counted once), wall seconds, and stderr."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as errors:
        process = subprocess.Popen(["/usr/bin/time", "-v", *command], stdout=subprocess.DEVNULL, stderr=errors,
                                   text=True)
        tree_peak = pss_peak = 0
        while process.poll() is None:
            rss = tree_rss_kb(process.pid)
            if rss > tree_peak:
                tree_peak, pss_peak = rss, max(pss_peak, tree_pss_kb(process.pid))
            time.sleep(0.02)
        errors.seek(0)
        stderr = errors.read()
    wall = time.monotonic() - start
    if process.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({process.returncode}): {stderr[-2000:]}")
    match = RSS_LINE.search(stderr)
    if match is None:
        raise RuntimeError("no 'Maximum resident set size' from /usr/bin/time -v")
    return int(match.group(1)) / 1024, tree_peak / 1024, pss_peak / 1024, wall, stderr


def replay(pcap: Path, mode: str, work: Path, workers: int) -> list[str]:
    command = [sys.executable, "-m", "fabricscope.cli", "replay", str(pcap), "--topology", str(TOPOLOGY),
               "--no-progress", "--workers", str(workers)]
    if mode == "store":
        return [*command, "--data-dir", str(work / "store")]
    return [*command, "--out", str(work / f"flows.{mode}")]


def measure(flows: int, work: Path, modes: list[str], peer_flows: int, workers: list[int]) -> None:
    mirrored, inner = work / f"flood-{flows}.pcap", work / f"flood-{flows}-inner.pcap"
    write_flood(mirrored, flows)
    write_flood(inner, flows, strip_erspan=True)
    print(f"\n{flows:,} distinct flows within one second ({mirrored.stat().st_size / 1e6:,.0f} MB capture)")
    for mode in modes:
        for count in workers:
            shutil.rmtree(work / "store", ignore_errors=True)
            rss, tree, pss, wall, stderr = peak_rss(replay(mirrored, mode, work, count))
            early = SUMMARY_EARLY.search(stderr)
            verdict = "under" if pss < TARGET_MB else "OVER"
            print(f"  fabricscope replay {mode:<8} --workers {count}  {rss:>7,.0f} MB largest process, "
                  f"{tree:>7,.0f} MB all processes (PSS {pss:>6,.0f})  {wall:>6.1f} s   "
                  f"{early.group(1) if early else '?'} rows exported early   PSS {verdict} {TARGET_MB} MB", flush=True)
            (work / f"flows.{mode}").unlink(missing_ok=True)
    shutil.rmtree(work / "store", ignore_errors=True)
    if shutil.which("ndpiReader") and flows <= peer_flows:
        rss, _, _, wall, _ = peak_rss(["ndpiReader", "-q", "-i", str(inner)])
        print(f"  ndpiReader -i             {rss:>7,.0f} MB peak RSS  {wall:>6.1f} s", flush=True)
    if shutil.which("tshark") and flows <= peer_flows:
        rss, _, _, wall, _ = peak_rss(["tshark", "-n", "-q", "-r", str(inner), "-z", "conv,udp"])
        print(f"  tshark -z conv,udp        {rss:>7,.0f} MB peak RSS  {wall:>6.1f} s", flush=True)
    mirrored.unlink()
    inner.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="replay output modes")
    parser.add_argument("--peer-flows", type=int, default=1_000_000, help="run the peers only up to this many")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="replay --workers counts to run")
    parser.add_argument("--out-dir", type=Path, help="where the captures go (default: a temporary directory)")
    args = parser.parse_args()
    if args.out_dir:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out_dir) as work_name:
        for flows in args.flows:
            measure(flows, Path(work_name), args.modes, args.peer_flows, args.workers)


if __name__ == "__main__":
    main()
