"""The counters the sink, the detectors and the dashboard keep, and the Prometheus families made of them."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from collectors.collector import Collector
from collectors.replay import replay_batches
from dashboards.app import create_app
from dashboards.latency import RequestLatency
from fabricscope.commands import ingest
from fabricscope.config import load_config
from fabricscope.metrics import DashboardMetrics, DetectorMetrics, SinkMetrics, metrics_page, registry_of
from pipeline.detect.engine import DetectorSet
from pipeline.detect.service import DetectorCounts
from pipeline.errors import InputError
from pipeline.sink import SinkStats
from pipeline.store import Store, StoreConfig
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TOPOLOGY_FILE = SAMPLES / "topology.yaml"


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus page by (name, sorted labels)."""
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text.decode()) for sample in family.samples}


def test_request_latency_counts_each_request_in_its_bucket_once() -> None:
    latency = RequestLatency((0.01, 0.1, 1.0))
    for seconds in (0.005, 0.01, 0.05, 0.5, 3.0):
        latency.observe("/_dash-update-component", seconds)
    latency.observe("/", 0.2)
    snapshot = latency.snapshot()
    assert snapshot["/_dash-update-component"].buckets == (2, 1, 1, 1)  # a bound is inclusive
    assert snapshot["/_dash-update-component"].count == 5
    assert snapshot["/_dash-update-component"].sum_s == pytest.approx(3.565)
    assert snapshot["/"].buckets == (0, 0, 1, 0)
    with pytest.raises(ValueError, match="ascending"):
        RequestLatency((1.0, 0.1))


def test_the_histogram_family_is_cumulative_with_sum_and_count() -> None:
    latency = RequestLatency((0.01, 0.1))
    for seconds in (0.001, 0.05, 0.05, 2.0):
        latency.observe("/", seconds)
    got = samples(generate_latest(registry_of(DashboardMetrics(latency))))
    name = "fabricscope_dashboard_request_seconds"
    assert got[(f"{name}_bucket", (("le", "0.01"), ("route", "/")))] == 1
    assert got[(f"{name}_bucket", (("le", "0.1"), ("route", "/")))] == 3
    assert got[(f"{name}_bucket", (("le", "+Inf"), ("route", "/")))] == 4
    assert got[(f"{name}_count", (("route", "/"),))] == 4
    assert got[(f"{name}_sum", (("route", "/"),))] == pytest.approx(2.101)


def test_the_dashboard_times_its_requests_and_serves_them_on_metrics() -> None:
    latency = RequestLatency()
    registry = registry_of(DashboardMetrics(latency))
    app = create_app(Store(StoreConfig(dsn="chdb:///nonexistent")), load_topology(TOPOLOGY_FILE),
                     latency=latency, metrics=lambda: metrics_page(registry))
    client = app.server.test_client()
    assert client.get("/").status_code == 200
    assert client.get("/_dash-layout").status_code == 200
    assert client.get("/no/such/page").status_code in (200, 404)
    page = client.get("/metrics")
    assert page.status_code == 200 and page.mimetype == "text/plain"
    got = samples(page.data)
    counts = {dict(labels)["route"]: value for (name, labels), value in got.items()
              if name == "fabricscope_dashboard_request_seconds_count"}
    assert counts["/"] == 1 and counts["/_dash-layout"] == 1
    assert sum(counts.values()) == 3  # the /metrics request itself is timed after its page is rendered


def test_sink_figures_become_counters() -> None:
    stats = SinkStats(rows={"flows": 120, "counters": 7}, messages=9, dead_letters=2, inserts=4, retries=3,
                      insert_s=1.5, insert_wait_s=0.25)
    got = samples(generate_latest(registry_of(SinkMetrics(SimpleNamespace(stats=stats)))))
    assert got[("fabricscope_sink_rows_total", (("table", "flows"),))] == 120
    assert got[("fabricscope_sink_rows_total", (("table", "counters"),))] == 7
    assert got[("fabricscope_sink_inserts_total", ())] == 4
    assert got[("fabricscope_sink_insert_wait_seconds_total", ())] == 0.25
    assert got[("fabricscope_sink_retries_total", ())] == 3
    assert got[("fabricscope_sink_dlq_messages_total", ())] == 2


def test_detector_figures_become_counters_and_gauges() -> None:
    counts = DetectorCounts(rows={"flows": 50}, messages=3, events=2, skipped=1, open_incidents=1, lag_s=0.4,
                            waiting_rows=7)
    service = SimpleNamespace(counts=lambda: counts)
    got = samples(generate_latest(registry_of(DetectorMetrics(service))))
    assert got[("fabricscope_detector_rows_total", (("table", "flows"),))] == 50
    assert got[("fabricscope_detector_events_total", ())] == 2
    assert got[("fabricscope_detector_skipped_total", ())] == 1
    assert got[("fabricscope_detector_open_incidents", ())] == 1
    assert got[("fabricscope_detector_rows_waiting", ())] == 7
    assert got[("fabricscope_detector_lag_seconds", ())] == 0.4


def test_open_incidents_follow_the_latest_row_of_each_incident() -> None:
    detectors = DetectorSet(load_topology(TOPOLOGY_FILE))
    track = detectors._track
    track([{"event_id": "a", "state": "open"}, {"event_id": "b", "state": "open"}, {"kind": "congestion"}])
    assert detectors.open_incidents == 2 and detectors.emitted == 3
    track([{"event_id": "a", "state": "open"}, {"event_id": "b", "state": "closed"}])
    assert detectors.open_incidents == 1
    track([{"event_id": "a", "state": "closed"}])
    assert detectors.open_incidents == 0 and detectors.emitted == 6


def test_open_incidents_of_a_sample_rise_while_its_episode_lasts_and_fall_to_zero_at_the_end() -> None:
    topology = load_topology(SAMPLES / "allreduce_congestion.topology.yaml")
    detectors, latest, seen_open = DetectorSet(topology), {}, 0
    for records in Collector(topology).run(replay_batches([SAMPLES / "allreduce_congestion.pcap"], progress=False)):
        for table, batch in records.tables():
            latest.update((event["event_id"], event["state"]) for event in detectors.update(table, batch))
            assert detectors.open_incidents == sum(state == "open" for state in latest.values())
            seen_open = max(seen_open, detectors.open_incidents)
    latest.update((event["event_id"], event["state"]) for event in detectors.flush())
    assert seen_open >= 1 and set(latest.values()) == {"closed"} and detectors.open_incidents == 0


def test_ingest_refuses_a_bad_metrics_address_before_starting_anything() -> None:
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    assert parser.parse_args([]).metrics == f"127.0.0.1:{ingest.METRICS_PORT}"
    args = parser.parse_args(["--metrics", "nowhere"])
    args.data_dir = args.kafka = args.clickhouse = args.config = None
    with pytest.raises(InputError, match="--metrics: 'nowhere' is not HOST:PORT"):
        ingest.run(args, load_config(args))
