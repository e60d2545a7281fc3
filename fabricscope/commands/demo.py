"""`fabricscope demo [--port 8050] [--data-dir DIR]`: the whole tool on a synthetic fabric, live.

Embedded broker and ClickHouse (unless --kafka/--clickhouse), a synthetic leaf-spine fabric generated in
cycles and replayed in real time through the collector, the sink and the detectors, and the dashboard on
http://127.0.0.1:8050. Every cycle has a congestion episode and a link failure with its recovery. Between
cycles the Kafka topics are deleted and created again, since the embedded broker keeps every byte in memory.
The fabric is a scale model: its links are 400G / SCALE (simulator.live), matched to the synthetic packet
rate, so utilisation reads as on a production fabric. The jobs DFI finds carry the names the scenario gave
them (its hosts per job, as a scheduler would report them), unless --config maps jobs itself.
The packet recorder keeps the replayed frames in <data-dir>/packets and pins each incident's window, so
`fabricscope packets --event ID` finds them (once the demo has stopped: the store is this process's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fabricscope.commands.dashboard import add_listen_arguments
from fabricscope.recording import add_recorder_arguments
from fabricscope.second_opinion import add_second_opinion_arguments
from pipeline.errors import InputError

if TYPE_CHECKING:
    from collectors.job_names import JobNames
    from fabricscope.config import Config

DEFAULT_CYCLE_S = 120


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_listen_arguments(parser)
    parser.add_argument("--cycle", type=int, default=DEFAULT_CYCLE_S, metavar="S",
                        help="seconds of synthetic traffic per fault cycle (default: %(default)s)")
    parser.add_argument("--cycles", type=int, default=0, metavar="N", help="stop after N cycles (default: run on)")
    add_recorder_arguments(parser)
    add_second_opinion_arguments(parser)


def run(args: argparse.Namespace, config: Config) -> int:
    from collectors.collector import Collector, CollectorConfig
    from collectors.replay import Pace, replay_batches
    from dashboards.app import dashboard_server
    from fabricscope.alerting import alerts_summary, build_notifier
    from fabricscope.packet_source import StorePackets
    from fabricscope.recording import recorder_for
    from fabricscope.second_opinion import second_opinion_for
    from fabricscope.services import Services, ServicesConfig
    from pipeline.bus import Admin, pipeline_topics
    from pipeline.counterfile import read_counters
    from pipeline.detect.ecmp import EcmpConfig
    from pipeline.detect.engine import DetectorSet
    from pipeline.sink import SinkConfig
    from pipeline.store import Store
    from pipeline.streaming import TimedBatches, stream_to_store
    from pipeline.topology import load_topology
    from simulator.live import MIN_CYCLE_S, SCALE, SPEED_GBPS, LiveFabric

    if args.cycle < MIN_CYCLE_S:
        raise InputError("--cycle", f"must be at least {MIN_CYCLE_S} s (a congestion episode and a failure fit in it)")
    fabric = LiveFabric(Path(args.data_dir) / "demo", imbalance=EcmpConfig(), cycle_s=args.cycle)
    with Services(ServicesConfig.from_args(args, config.kafka)) as services:
        cycles = iter(fabric)
        first = next(cycles)
        topology = load_topology(first.topology)
        recorder = recorder_for(args, config, topology)
        # The dashboard reads through a client of its own: one client runs one call at a time, and the sink's
        # flow inserts (a second or more each) would hold every page, and the newest incident, behind them.
        reader = Store(services.store.config).open()
        server = dashboard_server(reader, topology, host=config.dashboard.host, port=config.dashboard.port,
                                  packets=StorePackets(reader, topology, args.data_dir)).start()
        print(f"fabricscope demo: dashboard on {server.url} — synthetic fabric '{topology.fabric}' live, "
              f"a congestion episode and a link failure every {args.cycle} s; a 1:{SCALE:,} scale model of 400G "
              f"links ({SPEED_GBPS * 1000:g} Mb/s); Ctrl-C to stop", file=sys.stderr,
              flush=True)
        try:
            outputs, played = first, 0
            while True:
                collector = Collector(topology, CollectorConfig(job_names=config.jobs or scenario_jobs(outputs.truth),
                                                                second_opinion=second_opinion_for(config)),
                                      recorder=recorder)
                pace = Pace()
                batches = replay_batches([outputs.pcap], speed=1.0, progress=False, pace=pace)
                notifier = build_notifier(config, services.bus, f"fabricscope-demo-alerts-{played}")
                summary = stream_to_store(
                    (step.tables() for step in collector.run(batches)),
                    bus=services.bus,
                    store=services.store,
                    detectors=DetectorSet(topology),
                    side_sources=[TimedBatches("counters", read_counters(outputs.counters))],
                    sink_config=SinkConfig(group=f"fabricscope-demo-{played}"),
                    progress=False,
                    notifier=notifier,
                    on_events=recorder.on_events if recorder is not None else None,
                )
                played += 1
                print(f"fabricscope demo: cycle {played}: {summary}{alerts_summary(notifier)}; {pace}",
                      file=sys.stderr, flush=True)
                admin = Admin(services.bus)
                admin.delete_topics(pipeline_topics())
                admin.create_topics(pipeline_topics())
                if args.cycles and played >= args.cycles:
                    return 0
                outputs = next(cycles)
        finally:
            server.stop()
            reader.close()
            if recorder is not None:
                recorder.close()


def scenario_jobs(truth: Path) -> JobNames:
    """The generator's jobs and their hosts, from a cycle's truth file: what a scheduler would tell."""
    from collectors.job_names import JobNames

    jobs = json.loads(truth.read_text(encoding="utf-8"))["jobs"]
    return JobNames.from_hosts({name: job["hosts"] for name, job in jobs.items()})
