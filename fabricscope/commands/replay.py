"""`fabricscope replay PCAP... --topology T [--out FILE]`: run captures through the collector.

With `--out` the flow records go to a Parquet/JSONL file and nothing else starts. Without it, records go
through Kafka into ClickHouse (the embedded broker and chdb unless --kafka/--clickhouse are given), and the
command returns only when every record is in ClickHouse.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from pipeline.errors import InputError

if TYPE_CHECKING:
    from collectors.collector import Collector, CollectorConfig, Records
    from collectors.packets import PacketBatch
    from collectors.pcapfile import CaptureStats
    from collectors.replay import Pace
    from collectors.workers import WorkerCollector
    from fabricscope.config import Config
    from pipeline.streaming import Step, TimedBatches
    from pipeline.topology import Topology


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from collectors.collector import DEFAULT_ACTIVE_TIMEOUT_S, DEFAULT_EXPORTER
    from fabricscope.second_opinion import add_second_opinion_arguments
    from fabricscope.source_service import add_max_flows_argument

    parser.add_argument("pcaps", nargs="+", metavar="PCAP", help="pcap or pcapng files, replayed in order")
    parser.add_argument("--topology", required=True, metavar="T", help="topology YAML (DESIGN section 4)")
    parser.add_argument(
        "--speed", default="max", help="'max' (as fast as possible) or a factor of real time, e.g. 1.0"
    )
    parser.add_argument("--counters", metavar="FILE", help="switch counters JSONL to send with the packets")
    parser.add_argument("--out", metavar="FILE", help="write flow records to FILE (.parquet or .jsonl), no Kafka")
    parser.add_argument("--exporter", default=DEFAULT_EXPORTER,
                        help="collector name in every record (default: %(default)s)")
    parser.add_argument("--active-timeout", type=float, default=DEFAULT_ACTIVE_TIMEOUT_S, metavar="S",
                        help="flow export interval, ≤1 s (default: %(default)s)")
    add_max_flows_argument(parser)
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="collector processes, flows hashed to them; the records are the same as with one "
                             "(default: one fewer than the cores, 1 to 4: each worker still reads every packet, "
                             "and merging their steps takes a core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_second_opinion_arguments(parser, replay=True)


def parse_speed(text: str) -> float | None:
    """None for 'max', else a positive factor of real time."""
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = -1.0
    if speed <= 0:
        raise InputError("--speed", f"'{text}' is neither 'max' nor a positive number")
    return speed


def _counters(args: argparse.Namespace) -> list[TimedBatches]:
    """The --counters file read whole (TimedBatches sorts it), so a bad line is named before anything starts.
    Without one, the streaming machinery (Kafka client, detectors: ~0.2 s of CPU to import) is not loaded."""
    if not args.counters:
        return []
    from pipeline.counterfile import read_counters
    from pipeline.streaming import TimedBatches

    return [TimedBatches("counters", read_counters(args.counters))]


def _produce_only(args: argparse.Namespace, config: Config, steps: Iterable[Step],
                  counters: list[TimedBatches]) -> str:
    """--kafka given: records go to the cluster; `fabricscope ingest` members insert them and detect."""
    from pipeline.bus import Admin, BusConfig, Producer, pipeline_topics
    from pipeline.streaming import rows_of

    bus = BusConfig(bootstrap=args.kafka, security=dict(config.kafka))
    Admin(bus).create_topics(pipeline_topics())
    producer = Producer(bus).start()
    sent = 0
    try:
        for source in counters:
            producer.send_batch("counters", source.until(None))
        for step in steps:
            for table, batch in step:
                if rows_of(batch):
                    producer.send_batch(table, batch)
                    sent += rows_of(batch)
        producer.flush()
    finally:
        producer.stop()
    return f"{sent} records sent to {args.kafka}"


def _into_embedded_store(args: argparse.Namespace, config: Config, topology: Topology, steps: Iterable[Step],
                         counters: list[TimedBatches]) -> str:
    from fabricscope.alerting import alerts_summary, build_notifier
    from fabricscope.services import Services, ServicesConfig
    from pipeline.detect.engine import DetectorSet
    from pipeline.streaming import stream_to_store

    with Services(ServicesConfig.from_args(args, config.kafka)) as services:
        notifier = build_notifier(config, services.bus, "fabricscope-alerts")
        summary = stream_to_store(
            steps,
            bus=services.bus,
            store=services.store,
            detectors=DetectorSet(topology, config.detectors),
            side_sources=counters,
            progress=not args.no_progress,
            notifier=notifier,
        )
    return str(summary) + alerts_summary(notifier)


def run(args: argparse.Namespace, config: Config) -> int:
    from collectors.collector import CollectorConfig
    from collectors.pcapfile import open_capture
    from collectors.recorder import remember_replayed, store_directory
    from collectors.replay import Pace
    from collectors.workers import WorkerCollector
    from fabricscope.second_opinion import second_opinion_for
    from pipeline.recordfile import RecordFileWriter
    from pipeline.topology import load_topology

    topology = load_topology(args.topology)
    speed = parse_speed(args.speed)
    for pcap in args.pcaps:
        open_capture(pcap).close()  # a missing or foreign file is named before anything starts
    counters = _counters(args)
    if not 0 < args.active_timeout <= 1:
        raise InputError("--active-timeout", "must be in (0, 1] seconds")
    max_flows = config.service.max_flows if args.max_flows is None else args.max_flows  # flag > file > default
    if max_flows < 1:
        raise InputError("--max-flows" if args.max_flows is not None else str(config.file), "max_flows must be >= 1")
    collector_config = CollectorConfig(
        exporter=args.exporter, active_timeout_s=args.active_timeout, max_flows=max_flows, job_names=config.jobs,
        second_opinion=second_opinion_for(config, replay=True), wait_for_opinions=True,
    )
    pace = Pace() if speed is not None else None
    collector, records, reads = _collector(args, topology, collector_config, speed, pace)
    try:
        steps = (step.tables() for step in records)
        if args.out is not None:
            with RecordFileWriter(args.out, "flows") as writer:
                for step in steps:
                    writer.write(dict(step)["flows"])
            summary = f"{writer.rows} flow rows written to {args.out}"
        elif args.kafka is not None:
            summary = _produce_only(args, config, steps, counters)
        else:
            summary = _into_embedded_store(args, config, topology, steps, counters)
            remember_replayed(store_directory(args.data_dir), args.pcaps)  # the dashboard's packets view cuts them
    finally:
        if isinstance(collector, WorkerCollector):
            collector.stop()
    _refuse_unreadable(reads)
    stats = collector.stats
    opinions = stats.opinions
    asked = f", Wireshark named {opinions.answered} of {opinions.dissected} unknown flows" if opinions.sampled else ""
    paced = f", {pace}" if pace is not None and not isinstance(collector, WorkerCollector) else ""
    unsupported = "".join(f", {count} packets of unsupported link type {linktype}"
                          for linktype, count in sorted(stats.unsupported_linktypes.items()))
    print(
        f"{stats.packets} packets, {_read_totals(reads).skipped_text()}, {stats.malformed} malformed packets"
        f"{unsupported}, "
        f"{stats.unattributed} not attributed to a link, {stats.flows_exported_early} flow rows exported early "
        f"(table full){asked}{paced}; {summary}",
        file=sys.stderr,
    )
    return 0


def _collector(args: argparse.Namespace, topology: Topology, config: CollectorConfig, speed: float | None,
               pace: Pace | None
               ) -> tuple[Collector | WorkerCollector, Iterator[Records], list[tuple[str, CaptureStats]]]:
    """The collector --workers asks for (one: in this process, as ever), its records and the list the files'
    read stats go to; several workers are forked here, before any thread starts (each paces itself; `pace`
    is kept by a collector in this process only)."""
    from collectors.collector import Collector
    from collectors.replay import replay_batches
    from collectors.workers import WorkerCollector, default_workers

    workers = default_workers() if args.workers is None else args.workers
    if workers < 1:
        raise InputError("--workers", "must be at least 1")
    if workers == 1:
        reads: list[tuple[str, CaptureStats]] = []
        collector = Collector(topology, config)
        return collector, collector.run(replay_batches(args.pcaps, speed=speed, progress=not args.no_progress,
                                                       reads=reads, pace=pace)), reads

    def batches_of(worker: int, reads: list[tuple[str, CaptureStats]]) -> Iterator[PacketBatch]:
        """Every worker reads every file; worker 0 draws the progress bar and keeps the read stats."""
        return replay_batches(args.pcaps, speed=speed, progress=not args.no_progress and worker == 0, reads=reads)

    workers_collector = WorkerCollector(topology, config, workers=workers, batches=batches_of).start()
    return workers_collector, workers_collector.run(), workers_collector.reads


def _read_totals(reads: list[tuple[str, CaptureStats]]) -> CaptureStats:
    from collectors.pcapfile import CaptureStats

    total = CaptureStats()
    for _, stats in reads:
        total.add(stats)
    return total


def _refuse_unreadable(reads: list[tuple[str, CaptureStats]]) -> None:
    """A file whose damage left nothing to read is bad input, named once every other file's records are in."""
    unreadable = [(path, reason) for path, stats in reads if (reason := stats.unreadable()) is not None]
    if unreadable:
        path, reason = unreadable[0]
        others = f"; {len(unreadable) - 1} more such files" if len(unreadable) > 1 else ""
        kept = "; the records of the other files were kept" if len(reads) > len(unreadable) else ""
        raise InputError(path, reason + others + kept)
