"""Prometheus metrics of a running source on `/metrics`, read from the source and its delivery at scrape time.

Nothing is counted twice: the source keeps its own totals (`Source.counts()`), the delivery its sent,
dropped and queued figures, and a scrape turns both into metric families. Names:

    fabricscope_<count>_total{source}               each key of Source.counts(): packets, kernel_drops, malformed,
                                                    flows_exported_early (the flow table was full),
                                                    second_opinion_sampled/dropped/dissected/answered/failed…
    fabricscope_<count>_by_reason_total{source,reason}  the same count split by reason, for the sources that
                                                    give it (pipeline.source.ReasonCounts): malformed packets…
    fabricscope_unsupported_link_type_packets_total{source,linktype}  packets of link types the decoder does
                                                    not open, by number (pipeline.source.LinkTypeCounts: capture)
    fabricscope_records_sent_total{source,table}    rows acknowledged by Kafka (or sent to the embedded broker)
    fabricscope_records_dropped_total{source,table} rows dropped because the buffer was full while Kafka was away
    fabricscope_buffer_bytes{source,where}          encoded messages waiting, in memory and on disk
    fabricscope_lag_seconds{source}                 age of the oldest message Kafka has not acknowledged
    fabricscope_kafka_connected{source}             1 while the producer is connected
    fabricscope_kafka_reconnects_total{source}      failed sends or connects, each followed by a backoff

The services that read the topics (`ingest`) and the dashboard export their own figures the same way,
read at scrape time from the component (`Sink.stats`, `DetectorService.counts()`, `RequestLatency`):

    fabricscope_sink_rows_total{table}              rows inserted and committed (= rows in ClickHouse)
    fabricscope_sink_messages_total                 Kafka messages consumed
    fabricscope_sink_inserts_total                  ranges inserted and committed
    fabricscope_sink_insert_seconds_total           time spent in ClickHouse inserts (insert thread)
    fabricscope_sink_insert_wait_seconds_total      time the consumer waited for an insert to finish
    fabricscope_sink_retries_total                  retries after ClickHouse was unavailable
    fabricscope_sink_dlq_messages_total             messages sent to <topic>.dlq
    fabricscope_detector_rows_total{table}          rows fed to the detectors
    fabricscope_detector_events_total               event rows produced to the events topic
    fabricscope_detector_skipped_total              messages the detectors could not decode
    fabricscope_detector_open_incidents             incidents open now
    fabricscope_detector_lag_seconds                how long the last message processed had waited in Kafka
    fabricscope_dashboard_request_seconds{route}    histogram of the dashboard's answer times
    fabricscope_alerts_sent_total{webhook,state}    alerts a webhook took (2xx), by step: open, update, close
    fabricscope_alerts_failed_attempts_total{webhook}  POSTs that failed (each retried or dead-lettered)
    fabricscope_alerts_dead_letter_total{webhook}   alerts given up on (retry window over, or refused)
    fabricscope_alerts_queued{webhook}              alerts waiting for their webhook
    fabricscope_alerts_resent_total{webhook}        open incidents' alerts sent again (Alertmanager's resend)
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.errors import InputError
from pipeline.source import LinkTypeCounts, ReasonCounts, Source

if TYPE_CHECKING:  # the live sources import this module: no sink, detectors or Flask for them
    from dashboards.latency import RequestLatency
    from pipeline.alerts.notifier import Notifier
    from pipeline.detect.service import DetectorService
    from pipeline.sink import Sink


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
        if isinstance(self.source, ReasonCounts):
            for key, reasons in sorted(self.source.counts_by_reason().items()):
                family = CounterMetricFamily(f"fabricscope_{key}_by_reason", f"{key} counted by the {name} source, "
                                             "by reason", labels=["source", "reason"])
                for reason, value in sorted(reasons.items()):
                    family.add_metric([name, reason], value)
                yield family
        if isinstance(self.source, LinkTypeCounts):
            family = CounterMetricFamily("fabricscope_unsupported_link_type_packets",
                                         f"packets of link types the {name} source does not decode, by number",
                                         labels=["source", "linktype"])
            for linktype, packets in sorted(self.source.unsupported_link_types().items()):
                family.add_metric([name, str(linktype)], packets)
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


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation)
    family.add_metric([], value)
    return family


class SinkMetrics(Collector):
    """A prometheus_client collector over one sink's stats."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        stats = self.sink.stats
        rows = CounterMetricFamily("fabricscope_sink_rows", "rows inserted into ClickHouse and committed",
                                   labels=["table"])
        for table, count in sorted(stats.rows.items()):
            rows.add_metric([table], count)
        yield rows
        yield _counter("fabricscope_sink_messages", "Kafka messages consumed by the sink", stats.messages)
        yield _counter("fabricscope_sink_inserts", "ranges inserted and committed", stats.inserts)
        yield _counter("fabricscope_sink_insert_seconds", "time spent in ClickHouse inserts", stats.insert_s)
        yield _counter("fabricscope_sink_insert_wait_seconds", "time the consumer waited for an insert",
                       stats.insert_wait_s)
        yield _counter("fabricscope_sink_retries", "retries after ClickHouse was unavailable", stats.retries)
        yield _counter("fabricscope_sink_dlq_messages", "messages sent to the dead-letter topics",
                       stats.dead_letters)


class DetectorMetrics(Collector):
    """A prometheus_client collector over the detectors' consumer-group member."""

    def __init__(self, service: DetectorService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        counts = self.service.counts()
        rows = CounterMetricFamily("fabricscope_detector_rows", "rows fed to the detectors", labels=["table"])
        for table, count in sorted(counts.rows.items()):
            rows.add_metric([table], count)
        yield rows
        yield _counter("fabricscope_detector_messages", "Kafka messages consumed by the detectors", counts.messages)
        yield _counter("fabricscope_detector_events", "event rows produced to the events topic", counts.events)
        yield _counter("fabricscope_detector_skipped", "messages the detectors could not decode", counts.skipped)
        incidents = GaugeMetricFamily("fabricscope_detector_open_incidents", "incidents open now")
        incidents.add_metric([], counts.open_incidents)
        yield incidents
        lag = GaugeMetricFamily("fabricscope_detector_lag_seconds",
                                "how long the last message processed had waited in Kafka")
        lag.add_metric([], counts.lag_s)
        yield lag
        waiting = GaugeMetricFamily("fabricscope_detector_rows_waiting",
                                    "rows read that wait until every live source passed them (the detectors' clock)")
        waiting.add_metric([], counts.waiting_rows)
        yield waiting


class AlertMetrics(Collector):
    """A prometheus_client collector over the alert notifier's webhooks."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        sent = CounterMetricFamily("fabricscope_alerts_sent", "alerts a webhook took, by step",
                                   labels=["webhook", "state"])
        failed = CounterMetricFamily("fabricscope_alerts_failed_attempts", "webhook POSTs that failed",
                                     labels=["webhook"])
        dead = CounterMetricFamily("fabricscope_alerts_dead_letter", "alerts given up on", labels=["webhook"])
        queued = GaugeMetricFamily("fabricscope_alerts_queued", "alerts waiting for their webhook", labels=["webhook"])
        resent = CounterMetricFamily("fabricscope_alerts_resent", "open incidents' alerts sent again",
                                     labels=["webhook"])
        for webhook, counts in sorted(self.notifier.counts().items()):
            for state in ("open", "update", "close"):
                sent.add_metric([webhook, state], counts.sent.get(state, 0))
            failed.add_metric([webhook], counts.failed_attempts)
            dead.add_metric([webhook], counts.dead_letters)
            queued.add_metric([webhook], counts.queued)
            resent.add_metric([webhook], counts.resent)
        yield from (sent, failed, dead, queued, resent)


class DashboardMetrics(Collector):
    """A prometheus_client collector over the dashboard's request latency."""

    def __init__(self, latency: RequestLatency) -> None:
        self.latency = latency

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("fabricscope_dashboard_request_seconds",
                                       "time the dashboard took to answer a request", labels=["route"])
        bounds = [str(bound) for bound in self.latency.buckets_s] + ["+Inf"]
        for route, histogram in sorted(self.latency.snapshot().items()):
            cumulative = list(accumulate(histogram.buckets))
            family.add_metric([route], list(zip(bounds, cumulative, strict=True)), histogram.sum_s)
        yield family


def registry_of(*collectors: Collector) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding `collectors`."""
    registry = CollectorRegistry()
    for collector in collectors:
        registry.register(collector)
    return registry


def metrics_page(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The Prometheus text of `registry` and its content type (the dashboard's /metrics route)."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


def parse_listen(text: str, option: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 as [addr]:port) → (host, port); InputError naming the option otherwise."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InputError(option, f"'{text}' is not HOST:PORT")
    return host, int(port)


def serve_metrics(listen: str, source: Source, delivery: Delivery) -> WSGIServer:
    """Serve /metrics on HOST:PORT in a daemon thread; a taken port is bad input naming --metrics."""
    return serve_registry(listen, registry_of(SourceMetrics(source, delivery)))


def serve_registry(listen: str, registry: CollectorRegistry) -> WSGIServer:
    """Serve `registry` on /metrics at HOST:PORT in a daemon thread; a taken port is bad input naming --metrics."""
    host, port = parse_listen(listen, "--metrics")
    try:
        server, _ = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise InputError("--metrics", f"cannot listen on {listen}: {exc.strerror or exc}") from exc
    return server
