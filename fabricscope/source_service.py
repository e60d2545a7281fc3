"""A live source run as a long-lived service: settings, signals, metrics and where its records go.

Every live command (`capture`, `sflow`, `snmp`, `gnmi`) is the same service around a different source:
settings (fabricscope.config) come from flags, then the command's section of `--config FILE` (and its
`service:` section), then the dataclasses' defaults; SIGTERM or Ctrl-C asks the source to stop, and it
flushes what it holds (open flows, the last poll) before the service delivers the rest and exits. With
`--kafka` the records go through the outbox, which buffers within a budget while Kafka is away; without it
the embedded broker, chdb and the detectors run in this process, as `replay` does. `/metrics` serves
Prometheus metrics while it runs.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from collectors.collector import DEFAULT_EXPORTER, DEFAULT_MAX_FLOWS
from collectors.flows import DEFAULT_TABLE_MEMORY_MB
from fabricscope.options import option
from pipeline.settings import IN_CODE, Origin, split_host_port
from pipeline.source import Columns, Source, Step

if TYPE_CHECKING:
    from fabricscope.config import Config
    from fabricscope.metrics import Delivery
    from pipeline.bus import BusConfig
    from pipeline.event_feed import EventFeed

DEFAULT_BUFFER_MEMORY_MB = 256
DEFAULT_BUFFER_DISK_MB = 4096
DEFAULT_DRAIN_S = 30.0
DEFAULT_LOG_LEVEL = "INFO"
DEFAULT_METRICS_HOST = "127.0.0.1"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
METRICS_OFF = "off"


def default_metrics(port: int) -> str:
    """Where a source serves /metrics unless told: loopback, on the port of its command."""
    return f"{DEFAULT_METRICS_HOST}:{port}"


@dataclass(frozen=True, kw_only=True)
class ServiceConfig:
    """The service shell's settings (config section `service:`, or the keys in a source's own section):
    the outbox's budgets while Kafka is away, the drain on SIGTERM, the exporter name, logging and /metrics,
    and the bound on the flow table's flows (`max_flows`: capture, sflow and replay, which build one).
    `metrics` None: the command's own port on loopback (`default_metrics`); 'off': none."""

    buffer_memory_mb: int = DEFAULT_BUFFER_MEMORY_MB
    buffer_dir: str | None = None
    buffer_disk_mb: int = DEFAULT_BUFFER_DISK_MB
    drain: float = DEFAULT_DRAIN_S
    exporter: str = DEFAULT_EXPORTER
    log_level: str = DEFAULT_LOG_LEVEL
    metrics: str | None = None
    max_flows: int = DEFAULT_MAX_FLOWS

    def validate(self, origin: Origin = IN_CODE) -> None:
        if self.max_flows < 1:
            raise origin.error("max_flows", "must be at least 1")
        for key in ("buffer_memory_mb", "buffer_disk_mb", "drain"):
            if getattr(self, key) < 0:
                raise origin.error(key, "must not be negative")
        if not self.exporter:
            raise origin.error("exporter", "must not be empty")
        if self.log_level not in LOG_LEVELS:
            raise origin.error("log_level", f"must be one of {', '.join(LOG_LEVELS)}, not {self.log_level!r}")
        if self.metrics not in (None, METRICS_OFF) and split_host_port(str(self.metrics)) is None:
            raise origin.error("metrics", f"'{self.metrics}' is not HOST:PORT (or 'off')")


def add_service_arguments(parser: argparse.ArgumentParser, *, metrics_port: int) -> None:
    """The options every live source shares; their defaults are ServiceConfig's (see fabricscope.config)."""
    group = parser.add_argument_group("service")
    group.add_argument("--topology", metavar="T",
                       help="topology YAML (DESIGN section 4); or in --config, or FABRICSCOPE_TOPOLOGY")
    group.add_argument("--metrics", metavar="HOST:PORT",
                       help=f"serve Prometheus /metrics here, 'off' for none "
                       f"(default: {default_metrics(metrics_port)})")
    option(group, ServiceConfig, "buffer_memory_mb", "--buffer-memory-mb", type=int, metavar="MB",
           help="records held in memory while Kafka is unreachable")
    option(group, ServiceConfig, "buffer_dir", "--buffer-dir", metavar="DIR",
           help="spill to this directory beyond the memory budget; kept across restarts")
    option(group, ServiceConfig, "buffer_disk_mb", "--buffer-disk-mb", type=int, metavar="MB",
           help="disk budget of --buffer-dir")
    option(group, ServiceConfig, "drain", "--drain", type=float, metavar="S",
           help="on SIGTERM, how long to keep sending what is buffered")
    option(group, ServiceConfig, "exporter", "--exporter", help="collector name in every record")
    option(group, ServiceConfig, "log_level", "--log-level", choices=LOG_LEVELS, help="log level")
    parser.set_defaults(metrics_port=metrics_port)


def add_max_flows_argument(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--max-flows, for the commands that build a flow table (capture, sflow, replay)."""
    option(parser, ServiceConfig, "max_flows", "--max-flows", type=int, metavar="N",
           help="flows the flow table holds at most; past it the idlest are exported early (rows stay exact). "
           f"The default is sized for ~{DEFAULT_TABLE_MEMORY_MB} MB of table memory")


def _announced(steps: Iterator[Step], message: str) -> Iterator[Step]:
    """Say `message` once the source has produced its first step: from then on it is receiving."""
    for index, step in enumerate(steps):
        if index == 0:
            print(message, file=sys.stderr, flush=True)
        yield step


def _counted(steps: Iterator[Step], delivery: Delivery) -> Iterator[Step]:
    """The embedded path's delivery figures: rows handed to the embedded broker, by table."""
    delivery.connected = True
    for step in steps:
        for table, batch in step:
            delivery.sent[table] += len(next(iter(batch.values()), ()))
        yield step


def _to_kafka(args: argparse.Namespace, config: Config, source: Source, steps: Iterator[Step],
              delivery: Delivery) -> str:
    """Records into the outbox; a source that records packets (`on_events`) reads the events topic meanwhile,
    so the detectors of `ingest` pin its incidents' packets."""
    from fabricscope.outbox import Outbox, OutboxConfig
    from pipeline.bus import BusConfig

    service = config.service
    bus = BusConfig(bootstrap=args.kafka, security=dict(config.kafka))
    outbox_config = OutboxConfig(
        memory_bytes=int(service.buffer_memory_mb) << 20,
        disk_dir=Path(service.buffer_dir) if service.buffer_dir else None,
        disk_bytes=int(service.buffer_disk_mb) << 20,
    )
    outbox = Outbox(bus, outbox_config, delivery).start()
    feed = _event_feed(bus, service.exporter, getattr(source, "on_events", None))
    try:
        for step in steps:
            for table, batch in step:
                if len(next(iter(batch.values()), ())):
                    outbox.put(table, batch)
    finally:  # also on bad input: what was accepted before it is still sent
        if feed is not None:
            feed.stop()
        left = outbox.stop(timeout_s=float(service.drain))
    where = f"{left} messages left in {service.buffer_dir} for the next start" if left else "nothing left buffered"
    return f"{sum(delivery.sent.values())} rows sent to {args.kafka}, {sum(delivery.dropped.values())} dropped; {where}"


def _event_feed(bus: BusConfig, exporter: str, on_events: Callable[[Columns], None] | None) -> EventFeed | None:
    """The events topic feeding `on_events` (a consumer group per host and exporter: each needs every event);
    None when nobody listens, or when Kafka cannot be reached now (logged: collection goes on unpinned)."""
    from pipeline.errors import FabricscopeError
    from pipeline.event_feed import EventFeed

    if on_events is None:
        return None
    try:
        return EventFeed(bus, group=f"fabricscope-recorder-{socket.gethostname()}-{exporter}",
                         on_events=on_events).start()
    except FabricscopeError as exc:
        logging.getLogger(__name__).error("no event feed, incidents are not pinned: %s", exc)
        return None


def _to_embedded_store(args: argparse.Namespace, config: Config, source: Source, steps: Iterator[Step],
                       delivery: Delivery) -> str:
    """Detectors run here, so a source that records packets (`on_events`) learns of incidents as they open."""
    from fabricscope.services import Services, ServicesConfig
    from pipeline.detect.engine import DetectorSet
    from pipeline.streaming import stream_to_store
    from pipeline.topology import load_topology

    detectors = DetectorSet(load_topology(config.required_topology()), config.detectors)
    with Services(ServicesConfig.from_args(args, config.kafka)) as services:
        summary = stream_to_store(_counted(steps, delivery), bus=services.bus, store=services.store,
                                  detectors=detectors, progress=False, on_events=getattr(source, "on_events", None))
    return str(summary)


def run_source(args: argparse.Namespace, config: Config, source: Source) -> int:
    """Start `source` (a bad setting or a taken port stops here, before anything else), run it until
    SIGTERM/SIGINT, deliver its records, stop it and print what it counted; exit code 0."""
    from fabricscope.lifecycle import service_setup
    from fabricscope.metrics import Delivery, serve_metrics  # prometheus_client only where a service runs

    service = config.service
    source.start()
    try:
        # the outbox reports outages once, not per retry
        stop = service_setup(service.log_level, quiet={"kafka": logging.CRITICAL})
        delivery = Delivery()
        metrics = str(service.metrics)
        server = None if metrics == METRICS_OFF else serve_metrics(metrics, source, delivery)
        where = args.kafka or f"the embedded store in {args.data_dir}"
        message = (f"fabricscope {source.name}: receiving, records to {where}"
                   + (f", metrics on http://{metrics}/metrics" if server else "") + "; SIGTERM or Ctrl-C stops")
        try:
            steps = _announced(source.steps(stop), message)
            summary = (_to_kafka(args, config, source, steps, delivery) if args.kafka
                       else _to_embedded_store(args, config, source, steps, delivery))
        finally:
            if server is not None:
                server.shutdown()
    finally:
        source.stop()
    counts = ", ".join(f"{value} {key}" for key, value in source.counts().items())
    print(f"fabricscope {source.name}: stopped; {counts}; {summary}", file=sys.stderr, flush=True)
    return 0
