"""A big fabric by simulation (issue 17): how far one machine carries the record path, and what runs out first.

For each size (default 16×4, 32×8, 64×16 and 128×16 = 2,048 links, 4,096 hosts), `--minutes` of fabric time
(default 10) go through the production processes, each measured on its own:

- **collector**: this process, standing for the collectors of a fabric that size. It paces the fabric's
  records at real time (`--speed`): per link direction `--flows` RoCE flows exporting a row every second
  and a 10 ms link bin every 10 ms (a busy fabric: every bin filled). The generator cannot make packets
  for more than 9 spines (ERSPAN session = 10 × leaf + spine), so the records are built with numpy; the
  collector's own cost is per packet, not per link (`bench.collector`). At `--failure-s`, the records the
  real collector makes of `samples/link_failure.pcap` (a failure of leaf2-spine2, on the same link names
  and host prefixes as the big fabric's first 4 leaves, which carry nothing else) are shifted into the
  stream: the detector latency below is measured on that failure.
- **broker**: the embedded tansu (its peak RSS read from /proc before it stops);
- **ingest**: `fabricscope ingest --kafka …` (the sink) and `fabricscope ingest --kafka … --topology …
  --no-sink` (the detectors), a member each in a process of its own, as a multi-core machine runs them; the
  peak RSS of each, the rows the sink committed and the detectors took (their /metrics) over the time they
  needed;
- **dashboard**: then, on the store ingest filled, every panel's queries as `bench.dashboard` times them,
  p95 per range, in a process of its own.

Detector latency = when the fast_recovery event is readable in ClickHouse (the sink's committed event rows,
from ingest's /metrics, cover every event the detectors had produced by then) − when the fabric's clock
passed the failure's convergence (the generator's truth). A stage that falls behind shows as collector lag
(how late a second went out), how long after the last record was sent the sink had committed every record and
the detectors had taken every record, the detectors' Kafka lag, and a growing detector latency. A size stops
where a stage cannot keep real time or a process runs out of memory.

Run from the repository root: .venv/bin/python -m bench.big_fabric [--sizes 16x4,32x8] [--minutes 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collectors.collector import Collector
from collectors.replay import replay_batches
from collectors.workers import available_cores
from pipeline import records
from pipeline.broker import EmbeddedBroker
from pipeline.bus import BusConfig, Producer
from pipeline.counterfile import read_counters
from pipeline.topology import Topology, load_topology
from simulator.fabric import Fabric
from simulator.scenario import FabricSpec

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "samples" / "link_failure"
SAMPLE_LEAVES = 4  # leaf1..leaf4 carry the sample's traffic alone
FABRIC_START_US = 1_780_000_000_000_000  # 2026-05-28: the sample is shifted here, far from its own day
BINS_PER_S = 1_000_000 // records.LINK_BIN_US
PROGRESS_S = 15.0
DASHBOARD_RANGES = ("1m", "5m", "15m")
TIME_COLUMNS = {"flows": ("ts_start", "ts_end", "ts_tail"), "iterations": ("ts", "ts_end"), "counters": ("ts",),
                "link_bins": ("ts", "ts_first", "ts_last", "ts_first_ce", "ts_last_ce")}
Columns = dict[str, np.ndarray]


def peak_rss_mb(pid: int) -> float:
    """VmHWM of a running process, in MB. Not getrusage: on Linux its ru_maxrss keeps the parent's peak across
    fork and exec, while VmHWM belongs to the process's own memory map."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a running process so far (/proc/PID/stat, fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(name: str) -> list[int]:
    """This process's children whose command name starts with `name`."""
    found = []
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            found += [int(pid) for pid in (task / "children").read_text().split()
                      if Path(f"/proc/{pid}/comm").read_text().startswith(name)]
        except FileNotFoundError:  # a thread or child that ended meanwhile
            continue
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FabricRecords:
    """One fabric second's records: `flows` RoCE flows per link direction exporting a row, and every 10 ms
    link bin of every link direction; leaves 1..SAMPLE_LEAVES left to the sample."""

    def __init__(self, topology: Topology, flows: int) -> None:
        links = [link for link in topology.links if int(link.leaf[4:]) > SAMPLE_LEAVES]
        self.link_directions = 2 * len(links)
        per = np.repeat(np.arange(len(links)), 2)
        self.link = np.array([link.id for link in links], dtype=object)[per]
        self.leaf = np.array([link.leaf for link in links], dtype=object)[per]
        self.spine = np.array([link.spine for link in links], dtype=object)[per]
        self.direction = np.tile(np.array(["up", "down"], dtype=object), len(links))
        self.flows = flows
        leaves = np.array([int(link.leaf[4:]) for link in links])[per]
        far = leaves % len(topology.leaves) + 1  # the other end of each flow: the next leaf
        near_host, far_host = self._addresses(leaves), self._addresses(far)
        up = self.direction == "up"
        self.src = np.where(up[:, None], near_host, far_host)
        self.dst = np.where(up[:, None], far_host, near_host)

    @staticmethod
    def _addresses(leaves: np.ndarray) -> np.ndarray:
        raw = np.zeros((len(leaves), 16), dtype=np.uint8)
        raw[:, 10:12] = 0xFF
        raw[:, 12], raw[:, 13], raw[:, 14], raw[:, 15] = 10, 0, leaves, 10
        return raw

    def flow_rows(self, second: int) -> Columns:
        n = self.link_directions * self.flows
        which = np.repeat(np.arange(self.link_directions), self.flows)
        flow = np.arange(n)
        batch = records.empty_columns("flows", n)
        start = FABRIC_START_US + second * 1_000_000 + flow % 1000
        batch["ts_start"] = start.astype("datetime64[us]")
        batch["ts_end"] = (start + 999_000).astype("datetime64[us]")
        batch["ts_tail"] = (start + 998_000).astype("datetime64[us]")
        for name in ("link", "leaf", "spine", "direction"):
            batch[name] = getattr(self, name)[which]
        batch["exporter"] = np.full(n, "big-fabric", dtype=object)
        batch["src_ip"], batch["dst_ip"] = self.src[which], self.dst[which]
        batch["src_port"] = (49152 + flow % 16384).astype(np.uint16)
        batch["dst_port"] = np.full(n, 4791, dtype=np.uint16)
        batch["proto"] = np.full(n, 17, dtype=np.uint8)
        batch["roce_qp"] = flow.astype(np.uint32)
        packets = np.full(n, 5_000, dtype=np.uint64)
        batch["packets"], batch["bytes"], batch["ecn_ect"] = packets, packets * np.uint64(4_158), packets
        batch["roce_write"] = packets
        batch["psn_first"] = (second * 5_000 % 2**24 + np.zeros(n)).astype(np.uint32)
        batch["psn_last"] = batch["psn_first"] + np.uint32(4_999)
        batch["app"] = np.full(n, "rocev2", dtype=object)
        batch["traffic_class"] = np.full(n, "collective", dtype=object)
        batch["confidence"] = np.ones(n, dtype=np.float32)
        batch["sampling_rate"] = np.ones(n, dtype=np.uint32)
        return batch

    def link_bins(self, second: int) -> Columns:
        n = self.link_directions * BINS_PER_S
        which = np.repeat(np.arange(self.link_directions), BINS_PER_S)
        ts = FABRIC_START_US + second * 1_000_000 + np.tile(np.arange(BINS_PER_S), self.link_directions) * 10_000
        batch = records.empty_columns("link_bins", n)
        batch["ts"], batch["ts_first"], batch["ts_last"] = (
            (ts + offset).astype("datetime64[us]") for offset in (0, 5, 9_990))
        for name in ("link", "leaf", "spine", "direction"):
            batch[name] = getattr(self, name)[which]
        batch["exporter"] = np.full(n, "big-fabric", dtype=object)
        packets = np.full(n, 50 * self.flows, dtype=np.uint64)
        batch["packets"], batch["roce_packets"], batch["roce_ect"] = packets, packets, packets
        batch["bytes"] = packets * np.uint64(4_158)
        batch["sampling_rate"] = np.ones(n, dtype=np.uint32)
        return batch


@dataclass
class Sample:
    """The sample failure's records by fabric second (shifted to start at `at_s`) and its convergence time."""

    by_second: dict[int, list[tuple[str, Columns]]] = field(default_factory=dict)
    converged_us: int = 0


def sample_failure(at_s: int) -> Sample:
    topology = load_topology(ROOT / "samples" / "topology.yaml")
    truth = json.loads(SAMPLE.with_suffix(".truth.json").read_text())
    shift_us = FABRIC_START_US + at_s * 1_000_000 - truth["start_us"]
    steps = [table_batch for step in Collector(topology).run(replay_batches([SAMPLE.with_suffix(".pcap")],
                                                                             progress=False))
             for table_batch in step.tables()]
    steps += [("counters", batch) for batch in read_counters(SAMPLE.with_suffix(".counters.jsonl"))]
    sample = Sample()
    for table, batch in steps:
        if not len(next(iter(batch.values()))):
            continue
        shifted = dict(batch)
        for name in TIME_COLUMNS.get(table, ()):
            shifted[name] = np.asarray(batch[name]).astype("datetime64[us]") + np.timedelta64(shift_us, "us")
        first = int(np.asarray(shifted[TIME_COLUMNS[table][0]]).astype("datetime64[us]").astype(np.int64).min())
        sample.by_second.setdefault((first - FABRIC_START_US) // 1_000_000, []).append((table, shifted))
    failure = next(event for event in truth["events"] if event["kind"] == "fast_recovery")
    sample.converged_us = int(failure["ts_us"] + failure["convergence_ms"] * 1000 + shift_us)
    return sample


def ingest_metrics(metrics: str) -> dict[str, float]:
    """From ingest's /metrics: `sink:TABLE` rows committed in ClickHouse, `detect:TABLE` rows fed to the
    detectors, `detect_lag` (how long the last message they took had waited in Kafka); empty while it is not up."""
    try:
        with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return {}
    found = {f"{stage}:{table}": float(value) for stage, table, value in re.findall(
        r'fabricscope_(sink|detector)_rows_total\{table="(\w+)"\} (\S+)', text)}
    lag = re.search(r"^fabricscope_detector_lag_seconds (\S+)$", text, re.MULTILINE)
    if lag:
        found["detect_lag"] = float(lag.group(1))
    return found


def total(found: dict[str, float], stage: str) -> int:
    """Rows of the record tables (not the detectors' events) at a stage: `sink` or `detector`."""
    return int(sum(value for key, value in found.items() if key.startswith(f"{stage}:") and key != "sink:events"))


class EventWatch:
    """When the fast_recovery event is readable in ClickHouse: the events topic says when the detectors sent
    it, ingest's /metrics when the sink had committed that many event rows."""

    def __init__(self, bus: BusConfig, metrics: str) -> None:
        self.bus, self.metrics = bus, metrics
        self.out_at: float | None = None
        self.stored_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> EventWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from pipeline import codec

        consumer = KafkaConsumer(bootstrap_servers=self.bus.bootstrap, enable_auto_commit=False, group_id=None)
        topic = records.topic("events")
        consumer.assign([TopicPartition(topic, p) for p in range(4)])
        consumer.seek_to_beginning()
        produced, needed = 0, None
        while not self._stop.is_set() and self.stored_at is None:
            for messages in consumer.poll(timeout_ms=50).values():
                for message in messages:
                    rows = codec.decode("events", message.value)
                    produced += rows.num_rows
                    if needed is None and "fast_recovery" in rows.column("kind").to_pylist():
                        self.out_at, needed = time.monotonic(), produced
            if needed is not None and ingest_metrics(self.metrics).get("sink:events", 0) >= needed:
                self.stored_at = time.monotonic()
        consumer.close()


@dataclass
class Result:
    """What one fabric size measured; None where a stage never caught up within --give-up-s."""

    size: str
    links: int
    rows_per_s_needed: float
    rows_sent: int = 0
    collector_lag_s: float = 0.0
    collector_rss_mb: float = 0.0
    broker_rss_mb: float = 0.0
    ingest_rss_mb: float = 0.0
    detectors_rss_mb: float = 0.0
    ingest_rows_per_s: float = 0.0
    ingest_behind_s: float | None = None
    detector_rows_per_s: float = 0.0
    detector_behind_s: float | None = None
    detector_lag_max_s: float = 0.0
    detector_out_s: float | None = None
    detector_stored_s: float | None = None
    dashboard_rss_mb: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds while the size ran
    wall_s: float = 0.0
    dashboard_p95_ms: dict[str, float] = field(default_factory=dict)
    failed: str = ""


def run_size(leaves: int, spines: int, args: argparse.Namespace, scratch: Path) -> Result:
    topology_path = scratch / f"topology-{leaves}x{spines}.yaml"
    topology = Fabric(FabricSpec(name="big", leaves=leaves, spines=spines)).write_topology(topology_path,
                                                                                           mirrored=False)
    model = FabricRecords(topology, args.flows)
    seconds = round(args.minutes * 60)
    per_s = model.link_directions * (args.flows + BINS_PER_S)
    result = Result(f"{leaves}x{spines}", len(topology.links), per_s)
    sample = sample_failure(min(args.failure_s, seconds - 1))
    Path("/proc/self/clear_refs").write_text("5")  # this size's peak, not an earlier size's or bench's
    data_dir = scratch / f"store-{leaves}x{spines}"
    metrics, detect_metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    log = scratch / f"ingest-{leaves}x{spines}.log"  # a file: a pipe nobody reads would stall its logging
    own_cpu = sum(os.times()[:2])
    with EmbeddedBroker() as broker, log.open("w") as ingest_log:
        bus = broker.bus_config()
        (tansu,) = child_pids("tansu")
        command = [sys.executable, "-m", "fabricscope.cli", "ingest", "--kafka", bus.bootstrap, "--data-dir",
                   str(data_dir)]
        ingest = subprocess.Popen([*command, "--metrics", metrics], stdout=subprocess.DEVNULL, stderr=ingest_log)
        detecting = subprocess.Popen([*command, "--no-sink", "--topology", str(topology_path), "--metrics",
                                      detect_metrics], stdout=subprocess.DEVNULL, stderr=ingest_log)
        watch = EventWatch(bus, metrics).start()
        producer = Producer(bus).start()
        began = time.monotonic()
        converged_at = None
        shown = began

        def progress(at: str) -> dict[str, float]:
            found = {**ingest_metrics(metrics), **ingest_metrics(detect_metrics)}
            result.detector_lag_max_s = max(result.detector_lag_max_s, found.get("detect_lag", 0.0))
            print(f"  {result.size} {time.monotonic() - began:5.0f} s: {at}, sent {result.rows_sent:,}, in ClickHouse "
                  f"{total(found, 'sink'):,}, through the detectors {total(found, 'detector'):,} (lag "
                  f"{found.get('detect_lag', 0.0):.1f} s)", file=sys.stderr, flush=True)
            return found

        try:
            for second in range(seconds):
                due = began + second / args.speed
                time.sleep(max(0.0, due - time.monotonic()))
                for table, batch in (("flows", model.flow_rows(second)), ("link_bins", model.link_bins(second)),
                                     *sample.by_second.get(second, [])):
                    producer.send_batch(table, batch)
                    result.rows_sent += len(next(iter(batch.values())))
                if converged_at is None and FABRIC_START_US + (second + 1) * 1_000_000 > sample.converged_us:
                    converged_at = began + (sample.converged_us - FABRIC_START_US) / 1e6 / args.speed
                if second:  # the first second includes connecting
                    result.collector_lag_s = max(result.collector_lag_s, time.monotonic() - due)
                if time.monotonic() - shown >= PROGRESS_S:
                    progress(f"fabric second {second}")
                    shown = time.monotonic()
                if result.collector_lag_s > args.give_up_s:
                    result.failed = f"the collector fell {args.give_up_s:.0f} s behind real time at second {second}"
                    break
            producer.flush()
        finally:
            producer.stop()
        sent_at = time.monotonic()
        # this process's peak since the size began (clear_refs above): the records of this size
        result.collector_rss_mb = peak_rss_mb(os.getpid())
        stored = detected = 0
        while ingest.poll() is None and detecting.poll() is None:
            found = progress("all sent")
            stored, detected = total(found, "sink"), total(found, "detector")
            now = time.monotonic()
            if result.ingest_behind_s is None and stored >= result.rows_sent:
                result.ingest_behind_s = now - sent_at
            if result.detector_behind_s is None and detected >= result.rows_sent:
                result.detector_behind_s = now - sent_at
            if result.ingest_behind_s is not None and result.detector_behind_s is not None and watch.stored_at:
                break
            if now - sent_at > args.give_up_s:
                result.failed += (f"; {args.give_up_s:.0f} s after the last record, {stored:,} of "
                                  f"{result.rows_sent:,} records were in ClickHouse and {detected:,} through the "
                                  "detectors")
                break
            time.sleep(min(PROGRESS_S, 1.0))
        ended = time.monotonic()
        result.ingest_rss_mb, result.detectors_rss_mb = peak_rss_mb(ingest.pid), peak_rss_mb(detecting.pid)
        result.wall_s = ended - began
        result.cpu_s = {"collector": sum(os.times()[:2]) - own_cpu, "broker": cpu_s(tansu), "sink": cpu_s(ingest.pid),
                        "detectors": cpu_s(detecting.pid)}
        for member in (ingest, detecting):
            member.terminate()  # SIGTERM: it flushes (the sink) or checkpoints (the detectors) what it holds
        statuses = [ingest.wait(), detecting.wait()]
        watch.stop()
        result.broker_rss_mb = peak_rss_mb(tansu)
    stderr = log.read_text()
    if any(statuses):
        result.failed += f"; ingest exited {statuses} (sink, detectors): {stderr.strip().splitlines()[-1:]}"
    sink_s = (result.ingest_behind_s if result.ingest_behind_s is not None else ended - sent_at) + sent_at - began
    detect_s = (result.detector_behind_s if result.detector_behind_s is not None else ended - sent_at) + sent_at - began
    result.ingest_rows_per_s, result.detector_rows_per_s = stored / sink_s, detected / detect_s
    if converged_at is not None and watch.out_at is not None:
        result.detector_out_s = watch.out_at - converged_at
    if converged_at is not None and watch.stored_at is not None:
        result.detector_stored_s = watch.stored_at - converged_at
    dashboard = subprocess.Popen([sys.executable, "-m", "bench.big_fabric", "--dashboard", str(data_dir),
                                  str(topology_path), "--repeat", str(args.repeat)],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = dashboard.communicate()
    if dashboard.returncode != 0:
        result.failed = f"dashboard: {err.strip().splitlines()[-1:]}"
        return result
    result.dashboard_p95_ms = json.loads(out.strip().splitlines()[-1])
    result.dashboard_rss_mb = result.dashboard_p95_ms.pop("rss_mb")
    return result


def dashboard_p95(data_dir: str, topology_path: str, repeat: int) -> None:
    """The dashboard's panels on the store ingest filled, as bench.dashboard times them; one JSON line of
    the worst p95 per range, and this process's peak RSS."""
    from datetime import UTC, timedelta

    from bench.dashboard import measure, panels
    from dashboards import queries
    from dashboards.state import RANGES
    from pipeline.store import Store, StoreConfig, embedded_dsn

    topology = load_topology(topology_path)
    worst: dict[str, float] = {}
    with Store(StoreConfig(dsn=embedded_dsn(Path(data_dir)))) as store:
        newest = queries.latest_time(queries.run(store, queries.latest()))
        assert newest is not None
        end = newest.to_pydatetime().replace(tzinfo=UTC) + timedelta(microseconds=1)
        for name in DASHBOARD_RANGES:
            for run in panels(store, topology, end - RANGES[name], end, end).values():
                worst[name] = max(worst.get(name, 0.0), measure(run, repeat)[1])
    worst["rss_mb"] = peak_rss_mb(os.getpid())
    print(json.dumps(worst))


def report(result: Result) -> None:
    def seconds(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f} s"

    def behind(value: float | None) -> str:
        return "not within --give-up-s" if value is None else f"{value:.1f} s"

    p95 = ", ".join(f"{name} {ms:.0f} ms" for name, ms in result.dashboard_p95_ms.items())
    cpu = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.cpu_s.items())
    print(f"{result.size}: {result.links:,} links, {result.rows_per_s_needed:,.0f} records/s of fabric time, "
          f"{result.rows_sent:,} sent\n"
          f"  collector (records) peak RSS {result.collector_rss_mb:,.0f} MB, at most {result.collector_lag_s:.2f} s "
          f"behind real time\n"
          f"  broker peak RSS {result.broker_rss_mb:,.0f} MB\n"
          f"  sink (ingest) peak RSS {result.ingest_rss_mb:,.0f} MB, {result.ingest_rows_per_s:,.0f} rows/s, every "
          f"record in ClickHouse {behind(result.ingest_behind_s)} after the last was sent\n"
          f"  detectors (ingest --no-sink) peak RSS {result.detectors_rss_mb:,.0f} MB, "
          f"{result.detector_rows_per_s:,.0f} rows/s, through every record {behind(result.detector_behind_s)} "
          f"after, their lag at most {result.detector_lag_max_s:.1f} s\n"
          f"  detector latency: out {seconds(result.detector_out_s)}, readable in ClickHouse "
          f"{seconds(result.detector_stored_s)} after the convergence\n"
          f"  CPU over the {result.wall_s:.0f} s: {cpu}; {sum(result.cpu_s.values()) / result.wall_s:.2f} of "
          f"{available_cores()} cores busy\n"
          f"  dashboard peak RSS {result.dashboard_rss_mb:,.0f} MB, worst panel p95: {p95 or '-'}"
          + (f"\n  STOPPED: {result.failed.lstrip('; ')}" if result.failed else ""), flush=True)


def options() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16x4,32x8,64x16,128x16", help="LEAVESxSPINES,... (default %(default)s)")
    parser.add_argument("--minutes", type=float, default=10.0, help="fabric time per size (default %(default)s)")
    parser.add_argument("--speed", type=float, default=1.0, help="factor of real time (default %(default)s)")
    parser.add_argument("--flows", type=int, default=2, help="flows per link direction (default %(default)s)")
    parser.add_argument("--failure-s", type=int, default=10,
                        help="fabric second the sample's failure is shifted to (default %(default)s)")
    parser.add_argument("--repeat", type=int, default=10, help="timed runs per dashboard panel and range")
    parser.add_argument("--give-up-s", type=float, default=60.0,
                        help="a size stops when the collector or ingest is this far behind (default %(default)s)")
    parser.add_argument("--dashboard", nargs=2, metavar=("DATA_DIR", "TOPOLOGY"), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = options().parse_args(argv)
    if args.dashboard:
        dashboard_p95(*args.dashboard, args.repeat)
        return 0
    with tempfile.TemporaryDirectory(prefix="fabricscope-big-") as scratch:
        for size in args.sizes.split(","):
            leaves, spines = (int(part) for part in size.split("x"))
            report(run_size(leaves, spines, args, Path(scratch)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
