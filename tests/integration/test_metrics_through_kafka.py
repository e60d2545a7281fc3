"""/metrics of the ingest services through the real parts: the sink and the detectors consume from the
embedded broker into chdb while a scrape reads their counters; the sink's rows must be the rows in ClickHouse
and the detectors' rows the rows produced."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from pipeline_rows import random_flows
from prometheus_client.parser import text_string_to_metric_families

from fabricscope.metrics import DetectorMetrics, SinkMetrics, registry_of, serve_registry
from pipeline.bus import BusConfig, Producer
from pipeline.detect.engine import DetectorSet
from pipeline.detect.service import DetectorService, DetectorServiceConfig
from pipeline.sink import Sink, SinkConfig
from pipeline.store import Store
from pipeline.topology import load_topology

pytestmark = pytest.mark.integration

TOPOLOGY_FILE = Path(__file__).resolve().parents[2] / "samples" / "topology.yaml"
WAIT_S = 120


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_ingest_metrics_show_the_rows_that_reached_clickhouse(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    batches = [random_flows(5_000, seed=seed) for seed in range(70, 74)]
    producer = Producer(bus_config).start()
    for batch in batches:
        producer.send_batch("flows", batch)
    producer.flush()
    producer.stop()

    sink = Sink(SinkConfig(group="sink-metrics", batch_rows=20_000, batch_wait_s=0.2), bus=bus_config, store=store)
    detectors = DetectorService(DetectorServiceConfig(group="detect-metrics"), bus=bus_config,
                                detectors=DetectorSet(load_topology(TOPOLOGY_FILE)))
    port = _free_port()
    server = serve_registry(f"127.0.0.1:{port}", registry_of(SinkMetrics(sink), DetectorMetrics(detectors)))
    stop = threading.Event()
    detecting = threading.Thread(target=detectors.run, args=(stop,), name="detect-metrics")
    detecting.start()
    sink.start()
    try:
        assert sink.wait_for_rows("flows", 20_000, timeout_s=WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while detectors.counts().rows.get("flows", 0) < 20_000 and time.monotonic() < deadline:
            time.sleep(0.1)
        metrics = _scrape(port)
    finally:
        stop.set()
        sink.stop()
        detecting.join(WAIT_S)
        server.shutdown()
    stored = int(store.query("SELECT count() FROM flows").rows[0][0])
    assert stored == 20_000
    assert metrics[("fabricscope_sink_rows_total", (("table", "flows"),))] == stored
    assert metrics[("fabricscope_sink_inserts_total", ())] >= 1
    messages = metrics[("fabricscope_sink_messages_total", ())]  # send_batch keys a message per link
    assert messages >= len(batches)
    assert metrics[("fabricscope_sink_dlq_messages_total", ())] == 0
    assert metrics[("fabricscope_detector_rows_total", (("table", "flows"),))] == stored
    assert metrics[("fabricscope_detector_messages_total", ())] == messages
    assert 0 < metrics[("fabricscope_detector_lag_seconds", ())] < WAIT_S
