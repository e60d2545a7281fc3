"""Events against the soak's ground truth: precision, recall and timing errors per event kind.

The soak (samples/soak.scenario.yaml: 30 minutes of fabric time, jobs starting and stopping, quiet gaps,
22 link failures, flaps, congestion over many iterations) is generated once into bench/out/ and reused
while the scenario and the simulator are unchanged (the directory is named by a hash of both). It is then
run through the real pipeline as a user would:

    fabricscope replay PCAP --topology T --counters C --data-dir DIR      (embedded broker + ClickHouse)
    fabricscope query "SELECT * FROM events ..." --format json --data-dir DIR

or, with --detectors-only, through the collector and pipeline.detect.engine.DetectorSet in this process
(no Kafka, no ClickHouse; the counters interleaved by time as `replay` does) for a faster loop.

When the events table has `event_id` (one incident written as it opens, changes and closes), the latest
row of each event_id (max `updated`) is the incident; without it every row is one.

Matching, per kind, one detected event to at most one truth incident (greedy, closest `ts` first):
- fast_recovery, link_down, link_up: same link, |ts - truth ts| <= TOLERANCE_US[kind];
- link_flap: same link, [ts, ts_end] overlaps the truth's widened by the tolerance;
- congestion: same link and direction, intervals overlap (widened by the tolerance);
- collective_slowdown: same job, intervals overlap (widened by the tolerance);
- ecmp_imbalance: same leaf (device, or the link's leaf), intervals overlap.
Timing errors are |ts - truth ts| of the matched pairs. Low precision or recall is a measurement, not a
failure: the exit status is non-zero only when the run itself breaks.

Run from the repository root: .venv/bin/python -m bench.events [--detectors-only] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "samples" / "soak.scenario.yaml"
OUT = ROOT / "bench" / "out"
KINDS = ("fast_recovery", "link_down", "link_up", "link_flap", "congestion", "collective_slowdown",
         "ecmp_imbalance")
# how far a detected ts may lie from the truth's (µs); counters are polled every 100 ms
TOLERANCE_US = {
    "fast_recovery": 50_000,
    "link_down": 250_000,
    "link_up": 250_000,
    "link_flap": 250_000,
    "congestion": 100_000,
    "collective_slowdown": 300_000,
    "ecmp_imbalance": 0,
}
POINT_KINDS = {"fast_recovery", "link_down", "link_up"}
CONVERGENCE_GOAL_MS = 0.05
CONTEXT_US = 2_000_000  # a false positive is shown with the nearest truth incident this close to it
Row = dict[str, Any]


# --- the soak: generated once per scenario and simulator version ----------------------------------------

def soak_outputs(scenario: Path) -> tuple[Path, Path, Path, Path]:
    """(pcap, topology, counters, truth) of the scenario, generated unless bench/out holds them already."""
    digest = hashlib.sha256(scenario.read_bytes())
    for source in sorted((ROOT / "simulator").glob("*.py")):
        digest.update(source.read_bytes())
    folder = OUT / f"{scenario.name.split('.')[0]}-{digest.hexdigest()[:12]}"
    pcap = folder / "soak.pcap"
    paths = (pcap, folder / "soak.topology.yaml", folder / "soak.counters.jsonl", folder / "soak.truth.json")
    if all(path.exists() for path in paths):
        print(f"soak: reusing {folder.relative_to(ROOT)}")
        return paths
    from pipeline.detect.ecmp import EcmpConfig
    from simulator.generator import generate
    from simulator.scenario import load_scenario

    folder.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    partial = folder / "partial.pcap"
    outputs = generate(load_scenario(scenario), partial, imbalance=EcmpConfig())
    for made, final in zip((outputs.pcap, outputs.topology, outputs.counters, outputs.truth), paths, strict=True):
        made.replace(final)  # the pcap last: a crash mid-way leaves no complete-looking set
    print(f"soak: generated {folder.relative_to(ROOT)} in {time.perf_counter() - began:.1f} s")
    for stale in folder.parent.glob(f"{folder.name.rsplit('-', 1)[0]}-*"):
        if stale != folder:  # an older scenario or simulator: ~0.5 GB each
            shutil.rmtree(stale, ignore_errors=True)
    return paths


# --- detected events -----------------------------------------------------------------------------------

def _fabricscope() -> list[str]:
    script = Path(sys.executable).parent / "fabricscope"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fabricscope.cli"]


def through_pipeline(pcap: Path, topology: Path, counters: Path, data_dir: Path) -> list[Row]:
    """`fabricscope replay` into an embedded store, then the events table read back with `fabricscope query`."""
    command = [*_fabricscope(), "replay", str(pcap), "--topology", str(topology), "--counters", str(counters),
               "--data-dir", str(data_dir), "--no-progress"]
    began = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"replay: {time.perf_counter() - began:.1f} s")
    sql = "SELECT * FROM events ORDER BY ts"
    result = subprocess.run([*_fabricscope(), "query", sql, "--format", "json", "--data-dir", str(data_dir)],
                            check=True, capture_output=True, text=True)
    return json.loads(result.stdout)


def detectors_only(pcap: Path, topology_path: Path, counters: Path) -> list[Row]:
    """The collector's batches and the counters, interleaved by time as `replay` does, through DetectorSet."""
    from collectors.collector import Collector
    from collectors.replay import replay_batches
    from pipeline.counterfile import read_counters
    from pipeline.detect.engine import DetectorSet
    from pipeline.streaming import TimedBatches, latest_us, rows_of
    from pipeline.topology import load_topology

    topology = load_topology(topology_path)
    detectors = DetectorSet(topology)
    side = TimedBatches("counters", read_counters(str(counters)))
    events: list[Row] = []
    newest: int | None = None
    began = time.perf_counter()
    for step in Collector(topology).run(replay_batches([pcap], progress=False)):
        batches = list(step.tables())
        for table, batch in batches:
            ts = latest_us(table, batch)
            if ts is not None:
                newest = ts if newest is None else max(newest, ts)
        for table, batch in [("counters", side.until(newest)), *batches]:
            if rows_of(batch):
                events += detectors.update(table, batch)
    rest = side.until(None)
    if rows_of(rest):
        events += detectors.update("counters", rest)
    events += detectors.flush()
    print(f"collector + detectors in process: {time.perf_counter() - began:.1f} s")
    return events


def _us(value: Any) -> int:
    """µs since the epoch of an event time: ISO text from `fabricscope query`, numpy or Python datetime."""
    if isinstance(value, str):
        return round(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e6)
    if isinstance(value, datetime):
        return round(value.timestamp() * 1e6)
    return int(np.datetime64(value, "us").astype(np.int64))


def incidents(rows: list[Row]) -> tuple[list[Row], str]:
    """One row per incident: the latest (max `updated`) of each event_id when the column exists."""
    if rows and "event_id" in rows[0]:
        latest: dict[str, Row] = {}
        for row in rows:
            seen = latest.get(row["event_id"])
            if seen is None or _us(row["updated"]) >= _us(seen["updated"]):
                latest[row["event_id"]] = row
        kept, how = list(latest.values()), f"{len(rows)} rows, latest of each of {len(latest)} event_id"
    else:
        kept, how = list(rows), f"{len(rows)} rows, no event_id column: one incident per row"
    for row in kept:
        row["ts_us"], row["ts_end_us"] = _us(row["ts"]), _us(row["ts_end"])
    return sorted(kept, key=lambda r: (r["ts_us"], r["kind"])), how


# --- matching --------------------------------------------------------------------------------------------

def _leaf(row: Row) -> str:
    return row.get("leaf") or row.get("device") or str(row.get("link", "")).split("-")[0]


def _same_place(kind: str, truth: Row, event: Row) -> bool:
    if kind == "collective_slowdown":
        return event.get("job") in truth["job_names"]
    if kind == "ecmp_imbalance":
        return _leaf(truth) == _leaf(event)
    if kind == "congestion":
        return truth["link"] == event.get("link") and truth["direction"] == event.get("direction")
    return truth["link"] == event.get("link")


def _close_in_time(kind: str, truth: Row, event: Row) -> bool:
    slack = TOLERANCE_US[kind]
    if kind in POINT_KINDS:
        return abs(event["ts_us"] - truth["ts_us"]) <= slack
    end = int(truth.get("ts_end_us") or truth["ts_us"])
    return event["ts_us"] <= end + slack and event["ts_end_us"] >= truth["ts_us"] - slack


@dataclass
class KindResult:
    kind: str
    truth: list[Row]
    detected: list[Row]
    pairs: list[tuple[Row, Row]] = field(default_factory=list)

    @property
    def missed(self) -> list[Row]:
        matched = {id(t) for t, _ in self.pairs}
        return [t for t in self.truth if id(t) not in matched]

    @property
    def false_positives(self) -> list[Row]:
        matched = {id(e) for _, e in self.pairs}
        return [e for e in self.detected if id(e) not in matched]


def match(kind: str, truth: list[Row], detected: list[Row]) -> KindResult:
    candidates = [(abs(e["ts_us"] - t["ts_us"]), i, j) for i, t in enumerate(truth) for j, e in enumerate(detected)
                  if _same_place(kind, t, e) and _close_in_time(kind, t, e)]
    result = KindResult(kind, truth, detected)
    used_truth: set[int] = set()
    used_event: set[int] = set()
    for _, i, j in sorted(candidates):
        if i not in used_truth and j not in used_event:
            used_truth.add(i)
            used_event.add(j)
            result.pairs.append((truth[i], detected[j]))
    result.pairs.sort(key=lambda pair: pair[0]["ts_us"])
    return result


# --- report ----------------------------------------------------------------------------------------------

def _ratio(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _when(us: int, start_us: int) -> str:
    return f"{(us - start_us) / 1e6:9.3f} s ({np.datetime64(int(us), 'us')}Z)"


def _describe(row: Row) -> str:
    where = row.get("link") or row.get("job") or row.get("leaf") or row.get("device") or ""
    parts = [row["kind"], where]
    if row.get("direction") and row.get("direction") != "unknown":
        parts.append(row["direction"])
    if row.get("job") and where != row.get("job"):
        parts.append(f"job {row['job']}")
    if "ts_end_us" in row and row["ts_end_us"] != row["ts_us"]:
        parts.append(f"lasting {(row['ts_end_us'] - row['ts_us']) / 1e3:.1f} ms")
    if row.get("summary"):
        parts.append(f"— {row['summary']}")
    return " ".join(str(p) for p in parts)


def _context(event: Row, incidents: list[Row]) -> str:
    """The truth incident nearest in time (within CONTEXT_US): what the event may be a consequence of."""
    near = [t for t in incidents if abs(event["ts_us"] - t["ts_us"]) <= CONTEXT_US]
    if not near:
        return f"[no truth incident within {CONTEXT_US / 1e6:g} s]"
    t = min(near, key=lambda t: abs(event["ts_us"] - t["ts_us"]))
    where = t.get("link") or t.get("job") or t.get("leaf") or ""
    gap = (event["ts_us"] - t["ts_us"]) / 1e3
    return f"[{abs(gap):,.1f} ms {'after' if gap >= 0 else 'before'} truth {t['kind']} {where}]"


def _errors(values: list[float]) -> str:
    if not values:
        return "max n/a, median n/a"
    return f"max {max(values):,.0f}, median {statistics.median(values):,.0f}"


def _fast_recovery_figures(result: KindResult, start_us: int) -> list[str]:
    def at(truth: Row) -> str:
        return f"{truth['link']} at {(truth['ts_us'] - start_us) / 1e6:.3f} s"

    lines = []
    for name in ("local_convergence_ms", "remote_convergence_ms", "convergence_ms"):
        diffs, one_sided = [], []
        for truth, event in result.pairs:
            expected, got = truth.get(name), event.get(name)
            if expected is None and got is None:
                continue
            if expected is None or got is None:
                one_sided.append(f"{at(truth)}: {got} vs {expected}")
                continue
            diffs.append(abs(float(got) - float(expected)))
        within = sum(d <= CONVERGENCE_GOAL_MS for d in diffs)
        worst = f"{max(diffs):.3f}" if diffs else "n/a"
        listed = f" ({', '.join(one_sided)})" if one_sided else ""
        lines.append(f"    {name:<22} max |error| {worst} ms; within {CONVERGENCE_GOAL_MS} ms: {within}/{len(diffs)}; "
                     f"present on one side only: {len(one_sided)}{listed}")
    for name in ("flows_affected", "flows_recovered", "packets_lost"):
        wrong = [(t, e) for t, e in result.pairs if int(e.get(name) or 0) != int(t.get(name) or 0)]
        detail = ", ".join(f"{at(t)}: {e.get(name)} vs {t.get(name)}" for t, e in wrong[:8])
        lines.append(f"    {name:<22} mismatches {len(wrong)}/{len(result.pairs)}" + (f" ({detail}" + (
            ", ..." if len(wrong) > 8 else "") + ")" if wrong else ""))
    return lines


def report(truth: dict[str, Any], results: list[KindResult], how: str) -> None:
    start_us = truth["start_us"]
    print(f"\nevents read: {how}")
    print(f"tolerances (µs): {json.dumps(TOLERANCE_US)}")
    header = f"{'kind':<20} {'truth':>6} {'detected':>9} {'matched':>8} {'precision':>10} {'recall':>8}   |ts error| µs"
    print("\n" + header + "\n" + "-" * (len(header) + 24))
    for r in results:
        errors = [abs(e["ts_us"] - t["ts_us"]) for t, e in r.pairs]
        precision, recall = _ratio(len(r.pairs), len(r.detected)), _ratio(len(r.pairs), len(r.truth))
        print(f"{r.kind:<20} {len(r.truth):>6} {len(r.detected):>9} {len(r.pairs):>8} "
              f"{precision:>10} {recall:>8}   {_errors(errors)}")
    for r in results:
        interval = [abs(e["ts_end_us"] - t["ts_end_us"]) for t, e in r.pairs if "ts_end_us" in t]
        if interval and r.kind not in POINT_KINDS:
            print(f"{r.kind:<20} |ts_end error| µs: {_errors(interval)}")
    fast = next(r for r in results if r.kind == "fast_recovery")
    print("\nfast_recovery, matched pairs (detected vs truth):")
    for line in _fast_recovery_figures(fast, start_us):
        print(line)
    everything = sorted(truth["events"], key=lambda t: t["ts_us"])
    for r in results:
        if not r.missed and not r.false_positives:
            continue
        duplicates = [e for e in r.false_positives
                      if any(_same_place(r.kind, t, e) and _close_in_time(r.kind, t, e) for t in r.truth)]
        print(f"\n{r.kind}: {len(r.missed)} missed, {len(r.false_positives)} false positive(s), {len(duplicates)} of "
              f"them [dup]: a second event for a truth incident another event matched")
        for t in r.missed:
            print(f"  MISSED {_when(t['ts_us'], start_us)}  {_describe(t)}")
        for e in r.false_positives:
            tag = "[dup]" if any(e is d for d in duplicates) else _context(e, everything)
            print(f"  FALSE  {_when(e['ts_us'], start_us)}  {_describe(e)}  {tag}")
    other = sorted({e["kind"] for r in results for e in r.detected} - set(KINDS))
    if other:
        print(f"\nother kinds detected (no truth): {', '.join(other)}")


def job_names(job: str, hosts: list[str]) -> set[str]:
    """What a detected event may call a truth job: its scenario name, or the collector's name for the
    collective group it infers from the traffic (collectors/dfi.py: `job-` and its lowest host address)."""
    lowest = min(hosts, key=lambda host: ipaddress.ip_address(host).packed) if hosts else ""
    return {job, f"job-{lowest}"}


def evaluate(truth: dict[str, Any], events: list[Row]) -> list[KindResult]:
    for incident in truth["events"]:
        if incident["kind"] == "collective_slowdown":
            incident["job_names"] = job_names(incident["job"], truth["jobs"][incident["job"]]["hosts"])
    by_kind: dict[str, list[Row]] = {}
    for event in events:
        by_kind.setdefault(event["kind"], []).append(event)
    results = [match(kind, [t for t in truth["events"] if t["kind"] == kind], by_kind.pop(kind, []))
               for kind in KINDS]
    for kind, rows in sorted(by_kind.items()):
        results.append(KindResult(kind, [], rows))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=SCENARIO, help="soak scenario (default: %(default)s)")
    parser.add_argument("--detectors-only", action="store_true",
                        help="collector + DetectorSet in this process: no Kafka, no ClickHouse")
    parser.add_argument("--keep", action="store_true", help="keep the replay's data directory")
    args = parser.parse_args(argv)
    pcap, topology, counters, truth_path = soak_outputs(args.scenario)
    truth = json.loads(truth_path.read_text())
    size = pcap.stat().st_size
    print(f"soak: {truth['packets']:,} records, {size / 1e6:,.0f} MB pcap, {truth['duration_ms'] / 60_000:.1f} min "
          f"of fabric time, {len(truth['events'])} truth incidents")
    if args.detectors_only:
        rows = detectors_only(pcap, topology, counters)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="store-", dir=pcap.parent))
        try:
            rows = through_pipeline(pcap, topology, counters, data_dir)
        finally:
            if args.keep:
                print(f"data directory kept: {data_dir}")
            else:
                shutil.rmtree(data_dir, ignore_errors=True)
    events, how = incidents(rows)
    report(truth, evaluate(truth, events), how)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
