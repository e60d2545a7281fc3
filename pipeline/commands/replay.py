"""`fabricscope replay PCAP... --topology T [--out FILE]`: run captures through the collector.

With `--out` the flow records go to a Parquet/JSONL file and nothing else starts. Without it, records go
through Kafka into ClickHouse (the embedded broker and chdb unless --kafka/--clickhouse are given), and the
command returns only when every record is in ClickHouse.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pcaps", nargs="+", metavar="PCAP", help="pcap or pcapng files, replayed in order")
    parser.add_argument("--topology", required=True, metavar="T", help="topology YAML (DESIGN section 4)")
    parser.add_argument(
        "--speed", default="max", help="'max' (as fast as possible) or a factor of real time, e.g. 1.0"
    )
    parser.add_argument("--counters", metavar="FILE", help="switch counters JSONL to send with the packets")
    parser.add_argument("--out", metavar="FILE", help="write flow records to FILE (.parquet or .jsonl), no Kafka")
    parser.add_argument("--exporter", default="fabricscope", help="collector name in every record")
    parser.add_argument("--active-timeout", type=float, default=1.0, metavar="S", help="flow export interval, ≤1 s")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


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


def run(args: argparse.Namespace) -> int:
    from collectors.collector import Collector, CollectorConfig
    from collectors.replay import replay_batches
    from pipeline.recordfile import RecordFileWriter
    from pipeline.topology import load_topology

    topology = load_topology(args.topology)
    speed = parse_speed(args.speed)
    for pcap in args.pcaps:
        if not Path(pcap).is_file():
            raise InputError(pcap, "no such file")
    if not 0 < args.active_timeout <= 1:
        raise InputError("--active-timeout", "must be in (0, 1] seconds")
    collector = Collector(
        topology, CollectorConfig(exporter=args.exporter, active_timeout_s=args.active_timeout)
    )
    batches = replay_batches(args.pcaps, speed=speed, progress=not args.no_progress)
    if args.out is None:
        from pipeline.embedded import replay_into_store

        summary = replay_into_store(args, topology, collector, batches)
    else:
        with RecordFileWriter(args.out, "flows") as writer:
            for step in collector.run(batches):
                writer.write(step.flows)
        summary = f"{writer.rows} flow rows written to {args.out}"
    stats = collector.stats
    print(
        f"{stats.packets} packets, {stats.malformed} malformed skipped, {stats.unattributed} not attributed "
        f"to a link; {summary}",
        file=sys.stderr,
    )
    return 0
