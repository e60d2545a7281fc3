"""`fabricscope ingest`: the sink (and, as they come, the detectors) as Kafka consumer-group members.

Run as many as the topics have partitions against --kafka/--clickhouse; each takes a share. Without
--kafka it starts the embedded broker and prints its address for producers. SIGTERM or Ctrl-C stops it
after it has flushed what it holds; what it had not inserted stays uncommitted in Kafka. The detectors
checkpoint their state under --data-dir (detectors/<group>.state), so an incident open when it stops, or
is killed, goes on as the same incident after it starts again; with --until-idle the input is complete
and they close what is open before it exits. With webhooks in the config's `alerts:` section it also
delivers the events topic's incidents to them (pipeline.alerts), keeping under --data-dir which alerts
went out (alerts/<group>.ledger) so a restart sends none twice. With --no-sink it runs only the detectors,
in a process of their own beside members that run the sink (which store and alert on their events): on a
machine of several cores the two no longer share one interpreter.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from fabricscope.options import option
from pipeline.detect.service import DEFAULT_GROUP as DEFAULT_DETECT_GROUP
from pipeline.detect.service import DetectorServiceConfig
from pipeline.errors import InputError
from pipeline.sink import SinkConfig

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

    from fabricscope.config import Config
    from pipeline.detect.engine import DetectorSet

METRICS_PORT = 9714


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from fabricscope.source_service import LOG_LEVELS, ServiceConfig

    option(parser, SinkConfig, "group", "--group", help="consumer group")
    parser.add_argument("--detect-group", metavar="GROUP", default=DEFAULT_DETECT_GROUP,
                        help="the detectors' consumer group, whose state is checkpointed as "
                        "<data-dir>/detectors/GROUP.state (default: %(default)s)")
    option(parser, SinkConfig, "batch_rows", "--batch-rows", type=int, help="rows buffered before an insert")
    option(parser, SinkConfig, "batch_wait_s", "--batch-wait", type=float, metavar="S",
           help="longest a row waits before its insert, in seconds")
    parser.add_argument("--until-idle", type=float, metavar="S",
                        help="exit once nothing arrived for S seconds (a batch load), instead of running on")
    option(parser, ServiceConfig, "log_level", "--log-level", choices=LOG_LEVELS, help="log level")
    parser.add_argument("--topology", metavar="T", default=os.environ.get("FABRICSCOPE_TOPOLOGY"),
                        help="topology YAML: also run the detectors (consumer group fabricscope-detect), "
                        "events to the events topic")
    parser.add_argument("--no-sink", action="store_true",
                        help="run only the detectors (needs --topology and --kafka; no ClickHouse opened): a member "
                        "of their own, in its own process, beside members that run the sink")
    parser.add_argument("--cluster", metavar="NAME", default=os.environ.get("FABRICSCOPE_CLICKHOUSE_CLUSTER"),
                        help="the ClickHouse cluster (remote_servers name) to migrate ON CLUSTER: Replicated "
                        "tables behind Distributed ones (needs --clickhouse)")
    parser.add_argument("--metrics", metavar="HOST:PORT", default=f"127.0.0.1:{METRICS_PORT}",
                        help="serve Prometheus /metrics (sink and detectors) here, 'off' for none "
                        "(default: %(default)s)")


def _detectors(config: Config) -> DetectorSet | None:
    """The detectors when --topology is given (checked before anything starts), else None."""
    if not config.topology:
        return None
    from pipeline.detect.engine import DetectorSet
    from pipeline.topology import load_topology

    return DetectorSet(load_topology(config.topology), config.detectors)


def _check_cluster(args: argparse.Namespace) -> None:
    """--cluster needs a ClickHouse server (the embedded store is one process) and a name that stays quoted."""
    from pipeline.cluster import check_cluster_name
    from pipeline.errors import StoreError

    if args.clickhouse is None:
        raise InputError("--cluster", "needs --clickhouse: the embedded store is a single server")
    try:
        check_cluster_name(args.cluster)
    except StoreError as exc:
        raise InputError("--cluster", str(exc)) from exc


def run(args: argparse.Namespace, config: Config) -> int:
    from fabricscope.alerting import build_notifier
    from fabricscope.lifecycle import service_setup
    from fabricscope.metrics import (
        AlertMetrics,
        DetectorMetrics,
        SinkMetrics,
        parse_listen,
        registry_of,
        serve_registry,
    )
    from fabricscope.services import Services, ServicesConfig
    from pipeline.alerts.notifier import DEFAULT_GROUP as ALERTS_GROUP
    from pipeline.sink import Sink

    if args.metrics != "off":
        parse_listen(args.metrics, "--metrics")  # checked before anything starts
    if args.cluster is not None:
        _check_cluster(args)
    detectors = _detectors(config)
    if args.no_sink:
        return _detect_only(args, config, detectors)
    stop = service_setup(config.service.log_level)
    with Services(ServicesConfig.from_args(args, config.kafka)) as services:
        if services.broker is not None:
            print(f"fabricscope ingest: embedded broker on {services.broker.bootstrap}", file=sys.stderr, flush=True)
        sink = Sink(config.sink, bus=services.bus, store=services.store)
        detecting = None
        collectors: list[Collector] = [SinkMetrics(sink)]
        if detectors is not None:
            from pipeline.detect.service import DetectorService

            state = Path(args.data_dir) / "detectors" / f"{args.detect_group}.state"
            detecting = DetectorService(DetectorServiceConfig(group=args.detect_group, checkpoint=state,
                                                              watermark=config.detectors.watermark),
                                        bus=services.bus, detectors=detectors)
            collectors.append(DetectorMetrics(detecting))
        notifier = build_notifier(config, services.bus, ALERTS_GROUP,
                                  Path(args.data_dir) / "alerts" / f"{ALERTS_GROUP}.ledger")
        if notifier is not None:
            collectors.append(AlertMetrics(notifier))
        server = None if args.metrics == "off" else serve_registry(args.metrics, registry_of(*collectors))
        if server is not None:
            print(f"fabricscope ingest: metrics on http://{args.metrics}/metrics", file=sys.stderr, flush=True)
        try:
            if notifier is not None:
                notifier.start()
            if detecting is not None:
                detecting.start()
            sink.run(stop, idle_exit_s=args.until_idle)
            if detecting is not None:
                detecting.stop()  # the detectors checkpoint what they hold: open incidents go on after a restart
                if not stop.is_set():  # a batch load is complete: close what is open and insert those events too
                    detecting.flush()
                    sink.run(stop, idle_exit_s=args.until_idle)
            if notifier is not None and not stop.is_set():  # a batch load: its alerts go out before the exit
                window_s = max(webhook.retry_window_s for webhook in config.alerts.webhooks)
                notifier.wait_delivered(0, window_s + (args.until_idle or 0))
        finally:
            if notifier is not None:
                notifier.stop()
            if server is not None:
                server.shutdown()
        stats = sink.stats
    print(f"fabricscope ingest: {stats.messages} messages, rows {stats.rows}, {stats.dead_letters} to the DLQ",
          file=sys.stderr)
    return 0


def _detect_only(args: argparse.Namespace, config: Config, detectors: DetectorSet | None) -> int:
    """`ingest --no-sink`: the detectors' consumer-group member alone, until SIGTERM or Ctrl-C (it then
    checkpoints what it holds). Its events go to the events topic, which the members running the sink store
    and alert on; it opens no store, so it runs beside them on the same --data-dir (its checkpoint is its own)."""
    from fabricscope.lifecycle import service_setup
    from fabricscope.metrics import DetectorMetrics, registry_of, serve_registry
    from fabricscope.services import ServicesConfig, external_bus
    from pipeline.detect.service import DetectorService

    if detectors is None:
        raise InputError("--no-sink", "needs --topology: without the sink, ingest runs only the detectors")
    if args.kafka is None:
        raise InputError("--no-sink", "needs --kafka: the members running the sink read the same broker")
    if args.until_idle is not None:
        raise InputError("--until-idle", "needs the sink: a member with --no-sink runs until it is stopped")
    stop = service_setup(config.service.log_level)
    state = Path(args.data_dir) / "detectors" / f"{args.detect_group}.state"
    detecting = DetectorService(DetectorServiceConfig(group=args.detect_group, checkpoint=state,
                                                      watermark=config.detectors.watermark),
                                bus=external_bus(ServicesConfig.from_args(args, config.kafka)), detectors=detectors)
    server = None if args.metrics == "off" else serve_registry(args.metrics, registry_of(DetectorMetrics(detecting)))
    if server is not None:
        print(f"fabricscope ingest: metrics on http://{args.metrics}/metrics", file=sys.stderr, flush=True)
    try:
        detecting.run(stop)
    finally:
        if server is not None:
            server.shutdown()
    counts = detecting.counts()
    print(f"fabricscope ingest: detectors only, {counts.messages} messages, {counts.events} events", file=sys.stderr)
    return 0
