"""`fabricscope ingest`: the sink (and, as they come, the detectors) as Kafka consumer-group members.

Run as many as the topics have partitions against --kafka/--clickhouse; each takes a share. Without
--kafka it starts the embedded broker and prints its address for producers. SIGTERM or Ctrl-C stops it
after it has flushed what it holds; what it had not inserted stays uncommitted in Kafka.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING

from pipeline.errors import InputError

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from pipeline.detect.engine import DetectorSet

DEFAULT_LOG_LEVEL = "INFO"
METRICS_PORT = 9714


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.sink import DEFAULT_BATCH_ROWS, DEFAULT_BATCH_WAIT_S, DEFAULT_GROUP

    parser.add_argument("--group", default=DEFAULT_GROUP, help="consumer group (default: %(default)s)")
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS,
                        help="rows buffered before an insert (default: %(default)s)")
    parser.add_argument("--batch-wait", type=float, default=DEFAULT_BATCH_WAIT_S, metavar="S",
                        help="longest a row waits before its insert (default: %(default)s s)")
    parser.add_argument("--until-idle", type=float, metavar="S",
                        help="exit once nothing arrived for S seconds (a batch load), instead of running on")
    parser.add_argument("--log-level", default=DEFAULT_LOG_LEVEL, choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    parser.add_argument("--topology", metavar="T", default=os.environ.get("FABRICSCOPE_TOPOLOGY"),
                        help="topology YAML: also run the detectors (consumer group fabricscope-detect), "
                        "events to the events topic")
    parser.add_argument("--metrics", metavar="HOST:PORT", default=f"127.0.0.1:{METRICS_PORT}",
                        help="serve Prometheus /metrics (sink and detectors) here, 'off' for none "
                        "(default: %(default)s)")


def _detectors(args: argparse.Namespace) -> DetectorSet | None:
    """The detectors when --topology is given (checked before anything starts), else None."""
    if not args.topology:
        return None
    from pipeline.detect.config import load_detector_config
    from pipeline.detect.engine import DetectorSet
    from pipeline.topology import load_topology

    config = load_detector_config(args.config) if args.config else None
    return DetectorSet(load_topology(args.topology), config)


def run(args: argparse.Namespace) -> int:
    from fabricscope.metrics import DetectorMetrics, SinkMetrics, parse_listen, registry_of, serve_registry
    from fabricscope.services import Services, ServicesConfig
    from pipeline.sink import Sink, SinkConfig

    if args.batch_rows <= 0 or args.batch_wait <= 0:
        raise InputError("--batch-rows/--batch-wait", "must be positive")
    if args.metrics != "off":
        parse_listen(args.metrics, "--metrics")  # checked before anything starts
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    detectors = _detectors(args)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with Services(ServicesConfig.from_args(args)) as services:
        if services.broker is not None:
            print(f"fabricscope ingest: embedded broker on {services.broker.bootstrap}", file=sys.stderr, flush=True)
        sink = Sink(SinkConfig(group=args.group, batch_rows=args.batch_rows, batch_wait_s=args.batch_wait),
                    bus=services.bus, store=services.store)
        detecting, detectors_stop = None, threading.Event()
        collectors: list[Collector] = [SinkMetrics(sink)]
        if detectors is not None:
            from pipeline.detect.service import DetectorService, DetectorServiceConfig

            service = DetectorService(DetectorServiceConfig(), bus=services.bus, detectors=detectors)
            collectors.append(DetectorMetrics(service))
            detecting = threading.Thread(target=service.run, args=(detectors_stop,), name="fabricscope-detect")
        server = None if args.metrics == "off" else serve_registry(args.metrics, registry_of(*collectors))
        if server is not None:
            print(f"fabricscope ingest: metrics on http://{args.metrics}/metrics", file=sys.stderr, flush=True)
        try:
            if detecting is not None:
                detecting.start()
            sink.run(stop, idle_exit_s=args.until_idle)
            if detecting is not None:
                detectors_stop.set()  # the detectors emit what they still hold, then stop
                detecting.join()
                if not stop.is_set():
                    sink.run(stop, idle_exit_s=args.until_idle)  # a batch load: insert those last events too
        finally:
            if server is not None:
                server.shutdown()
        stats = sink.stats
    print(f"fabricscope ingest: {stats.messages} messages, rows {stats.rows}, {stats.dead_letters} to the DLQ",
          file=sys.stderr)
    return 0
