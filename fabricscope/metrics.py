"""Prometheus metrics of a running source on `/metrics`, read from the source and its delivery at scrape time.

Nothing is counted twice: the source keeps its own totals (`Source.counts()`), the delivery its sent,
dropped and queued figures, and a scrape turns both into metric families. Names:

    fabricscope_<count>_total{source}               each key of Source.counts(): packets, kernel_drops, malformed…
    fabricscope_records_sent_total{source,table}    rows acknowledged by Kafka (or sent to the embedded broker)
    fabricscope_records_dropped_total{source,table} rows dropped because the buffer was full while Kafka was away
    fabricscope_buffer_bytes{source,where}          encoded messages waiting, in memory and on disk
    fabricscope_lag_seconds{source}                 age of the oldest message Kafka has not acknowledged
    fabricscope_kafka_connected{source}             1 while the producer is connected
    fabricscope_kafka_reconnects_total{source}      failed sends or connects, each followed by a backoff
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.errors import InputError
from pipeline.source import Source


@dataclass
class Delivery:
    """Where the records of a source stand on their way to Kafka; the outbox or the embedded path fill it."""

    sent: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    memory_bytes: int = 0
    disk_bytes: int = 0
    oldest_queued_s: float | None = None  # time.monotonic() of the oldest unacknowledged message
    connected: bool = False
    reconnects: int = 0


class SourceMetrics(Collector):
    """A prometheus_client collector over one source and its delivery."""

    def __init__(self, source: Source, delivery: Delivery) -> None:
        self.source = source
        self.delivery = delivery

    def collect(self) -> Iterator[Metric]:
        name = self.source.name
        for key, value in sorted(self.source.counts().items()):
            family = CounterMetricFamily(f"fabricscope_{key}", f"{key} counted by the {name} source", labels=["source"])
            family.add_metric([name], value)
            yield family
        sent = CounterMetricFamily("fabricscope_records_sent", "rows delivered to Kafka", labels=["source", "table"])
        dropped = CounterMetricFamily("fabricscope_records_dropped", "rows dropped with the buffer full",
                                      labels=["source", "table"])
        for family, counts in ((sent, self.delivery.sent), (dropped, self.delivery.dropped)):
            for table, rows in sorted(counts.items()):
                family.add_metric([name, table], rows)
            yield family
        buffered = GaugeMetricFamily("fabricscope_buffer_bytes", "encoded messages waiting for Kafka",
                                     labels=["source", "where"])
        buffered.add_metric([name, "memory"], self.delivery.memory_bytes)
        buffered.add_metric([name, "disk"], self.delivery.disk_bytes)
        yield buffered
        oldest = self.delivery.oldest_queued_s
        lag = GaugeMetricFamily("fabricscope_lag_seconds", "age of the oldest message not acknowledged by Kafka",
                                labels=["source"])
        lag.add_metric([name], 0.0 if oldest is None else max(0.0, time.monotonic() - oldest))
        yield lag
        connected = GaugeMetricFamily("fabricscope_kafka_connected", "1 while connected to Kafka", labels=["source"])
        connected.add_metric([name], 1.0 if self.delivery.connected else 0.0)
        yield connected
        reconnects = CounterMetricFamily("fabricscope_kafka_reconnects", "failed Kafka sends or connects",
                                         labels=["source"])
        reconnects.add_metric([name], self.delivery.reconnects)
        yield reconnects


def parse_listen(text: str, option: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [addr]:port) → (host, port); InputError naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(option, f"'{text}' is not HOST:PORT")
    return host, int(port)


def serve_metrics(listen: str, source: Source, delivery: Delivery) -> WSGIServer:
    """Serve /metrics on HOST:PORT in a daemon thread; a taken port is bad input naming --metrics."""
    host, port = parse_listen(listen, "--metrics")
    registry = CollectorRegistry()
    registry.register(SourceMetrics(source, delivery))
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise InputError("--metrics", f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    return server
