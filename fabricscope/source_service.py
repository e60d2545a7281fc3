"""A live source run as a long-lived service: settings, signals, metrics and where its records go.

Every live command (`capture`, `sflow`, `snmp`, `gnmi`) is the same service around a different source:
settings come from flags, then the command's section of `--config FILE`, then defaults; SIGTERM or Ctrl-C
asks the source to stop, and it flushes what it holds (open flows, the last poll) before the service
delivers the rest and exits. With `--kafka` the records go through the outbox, which buffers within a
budget while Kafka is away; without it the embedded broker, chdb and the detectors run in this process,
as `replay` does. `/metrics` serves Prometheus metrics while it runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

from fabricscope.metrics import Delivery, serve_metrics
from pipeline.errors import InputError
from pipeline.source import Source, Step
from pipeline.yamlfile import LineDict, line_of, load_yaml

T = TypeVar("T")
SERVICE_DEFAULTS: dict[str, Any] = {
    "buffer_memory_mb": 256,
    "buffer_dir": None,
    "buffer_disk_mb": 4096,
    "drain": 30.0,
    "exporter": "fabricscope",
    "log_level": "INFO",
}


def add_service_arguments(parser: argparse.ArgumentParser, *, metrics_port: int) -> None:
    """The options every live source shares. Defaults are applied after the config file (see `settle`)."""
    group = parser.add_argument_group("service")
    group.add_argument("--topology", metavar="T",
                       help="topology YAML (DESIGN section 4); or in --config, or FABRICSCOPE_TOPOLOGY")
    group.add_argument("--metrics", metavar="HOST:PORT",
                       help=f"serve Prometheus /metrics here, 'off' for none (default: 127.0.0.1:{metrics_port})")
    group.add_argument("--buffer-memory-mb", type=int, metavar="MB",
                       help="records held in memory while Kafka is unreachable (default: 256)")
    group.add_argument("--buffer-dir", metavar="DIR",
                       help="spill to this directory beyond the memory budget; kept across restarts (default: none)")
    group.add_argument("--buffer-disk-mb", type=int, metavar="MB", help="disk budget of --buffer-dir (default: 4096)")
    group.add_argument("--drain", type=float, metavar="S",
                       help="on SIGTERM, how long to keep sending what is buffered (default: 30)")
    group.add_argument("--exporter", help="collector name in every record (default: fabricscope)")
    group.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default: INFO")
    parser.set_defaults(metrics_port=metrics_port)


def settle(args: argparse.Namespace, section: str, defaults: Mapping[str, Any]) -> None:
    """Fill every setting left unset on the command line from the `section:` of --config, then from
    `defaults` and SERVICE_DEFAULTS. Unknown keys in the section are bad input naming file and line."""
    defaults = {**SERVICE_DEFAULTS, "metrics": f"127.0.0.1:{args.metrics_port}",
                "topology": os.environ.get("FABRICSCOPE_TOPOLOGY"), **defaults}
    if args.config:
        document = load_yaml(args.config)
        values = document.get(section)
        if values is not None and not isinstance(values, LineDict):
            raise InputError(args.config, f"'{section}' must be a mapping of settings",
                             line=line_of(document, section))
        for key, value in (values or {}).items():
            dest = str(key).replace("-", "_")
            if dest not in defaults:
                raise InputError(args.config, f"{section}.{key}: unknown setting (known: {', '.join(defaults)})",
                                 line=line_of(values, key))
            if getattr(args, dest, None) is None:
                where = (args.config, line_of(values, key), f"{section}.{key}")
                setattr(args, dest, _typed(value, defaults[dest], *where))
    for dest, value in defaults.items():
        if getattr(args, dest, None) is None:
            setattr(args, dest, value)
    if not args.topology:
        raise InputError("--topology", f"required (on the command line or as {section}.topology in --config)")


def device_target(item: Any, kind: type[T], defaults: Mapping[str, Any], where: str, *, default_port: int) -> T:
    """A switch to poll or subscribe to: DEVICE=HOST[:PORT] from a flag (IPv6 as [addr]:port), or a mapping of
    `kind`'s fields from the config file; `defaults` fill what neither gives (e.g. the community)."""
    if isinstance(item, str):
        device, sep, address = item.partition("=")
        if address.startswith("[") or address.count(":") == 1:
            host, _, port = address.rpartition(":")
        else:  # a bare name, IPv4 or IPv6 address
            host, port = address, str(default_port)
        host = host.strip("[]")
        if not sep or not device or not host or not port.isdigit():
            raise InputError(where, f"'{item}' is not DEVICE=HOST[:PORT]")
        fields: Mapping[str, Any] = {"device": device, "host": host, "port": int(port)}
    elif isinstance(item, dict) and {"device", "host"} <= set(item):
        fields = {str(key): value for key, value in item.items()}
    else:
        raise InputError(where, f"a target is DEVICE=HOST[:PORT] or a mapping with device and host, not {item!r}")
    try:
        return kind(**{**defaults, **fields})
    except (TypeError, ValueError) as exc:
        raise InputError(where, f"target {fields.get('device')}: {exc}") from exc


def _typed(value: Any, default: Any, source: str, line: int, name: str) -> Any:
    """A config value as the type of its default (int, float, str); lists and mappings pass as they are."""
    kind = type(default)
    if default is None or isinstance(value, kind) or kind not in (int, float, str):
        return value
    try:
        if isinstance(value, bool) or (kind is int and isinstance(value, float)):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise InputError(source, f"{name}: expected {kind.__name__}, got {value!r}", line=line) from None


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


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


def _to_kafka(args: argparse.Namespace, steps: Iterator[Step], delivery: Delivery) -> str:
    from fabricscope.outbox import Outbox, OutboxConfig
    from fabricscope.services import kafka_security
    from pipeline.bus import BusConfig

    bus = BusConfig(bootstrap=args.kafka, security=kafka_security(args.config))
    config = OutboxConfig(
        memory_bytes=int(args.buffer_memory_mb) << 20,
        disk_dir=Path(args.buffer_dir) if args.buffer_dir else None,
        disk_bytes=int(args.buffer_disk_mb) << 20,
    )
    outbox = Outbox(bus, config, delivery).start()
    try:
        for step in steps:
            for table, batch in step:
                if len(next(iter(batch.values()), ())):
                    outbox.put(table, batch)
    finally:  # also on bad input: what was accepted before it is still sent
        left = outbox.close(timeout_s=float(args.drain))
    where = f"{left} messages left in {args.buffer_dir} for the next start" if left else "nothing left buffered"
    return f"{sum(delivery.sent.values())} rows sent to {args.kafka}, {sum(delivery.dropped.values())} dropped; {where}"


def _to_embedded_store(args: argparse.Namespace, steps: Iterator[Step], delivery: Delivery) -> str:
    from fabricscope.services import Services, ServicesConfig
    from pipeline.detect.config import load_detector_config
    from pipeline.detect.engine import DetectorSet
    from pipeline.streaming import stream_to_store
    from pipeline.topology import load_topology

    detectors = DetectorSet(load_topology(args.topology), load_detector_config(args.config) if args.config else None)
    with Services(ServicesConfig.from_args(args)) as services:
        summary = stream_to_store(_counted(steps, delivery), bus=services.bus, store=services.store,
                                  detectors=detectors, progress=False)
    return str(summary)


def run_source(args: argparse.Namespace, source: Source) -> int:
    """Run `source` until SIGTERM/SIGINT, deliver its records, print what it counted; exit code 0."""
    logging.basicConfig(level=args.log_level, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.log_level != "DEBUG":
        logging.getLogger("kafka").setLevel(logging.CRITICAL)  # the outbox reports outages once, not per retry
    delivery = Delivery()
    server = None if str(args.metrics) == "off" else serve_metrics(str(args.metrics), source, delivery)
    stop = _stop_on_signals()
    where = args.kafka or f"the embedded store in {args.data_dir}"
    message = (f"fabricscope {source.name}: receiving, records to {where}"
               + (f", metrics on http://{args.metrics}/metrics" if server else "") + "; SIGTERM or Ctrl-C stops")
    try:
        steps = _announced(source.steps(stop), message)
        summary = _to_kafka(args, steps, delivery) if args.kafka else _to_embedded_store(args, steps, delivery)
    finally:
        if server is not None:
            server.shutdown()
    counts = ", ".join(f"{value} {key}" for key, value in source.counts().items())
    print(f"fabricscope {source.name}: stopped; {counts}; {summary}", file=sys.stderr, flush=True)
    return 0
