"""How long an event takes from Kafka to readable in ClickHouse while flow rows stream through the sink.

The sink runs on the embedded broker and store with its defaults; a feeder offers 25,000 random flow rows
every 0.25 s (up to 100k rows/s); every 0.7 s one event is produced and timed until a reader with its own
ClickHouse client (as the dashboard or `fabricscope events` has) sees it. Target (issue 17): the sink's share
of "events in ClickHouse ≤1 s after convergence" well under a second, whatever the flow load.

Run from the repository root: .venv/bin/python -m bench.event_insert [--events 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

from bench.pipeline import LINKS
from pipeline.broker import EmbeddedBroker
from pipeline.bus import BusConfig, Producer
from pipeline.detect.engine import event_columns
from pipeline.detect.events import make_event
from pipeline.migrate import migrate
from pipeline.sink import Sink, SinkConfig
from pipeline.store import Store, StoreConfig, embedded_dsn
from tests.pipeline_rows import random_flows

FEED_ROWS = 25_000
FEED_EVERY_S = 0.25
EVENT_EVERY_S = 0.7
T0 = 1_780_000_000_000_000  # µs


def feed(bus: BusConfig, stop: threading.Event) -> None:
    """Flow rows at up to FEED_ROWS / FEED_EVERY_S a second until `stop`."""
    start_us = (int(time.time()) - 60) * 1_000_000
    batches = [random_flows(FEED_ROWS, seed=seed, links=LINKS, start_us=start_us) for seed in range(8)]
    producer = Producer(bus).start()
    sent = 0
    while not stop.is_set():
        producer.send_batch("flows", batches[sent % len(batches)])
        producer.flush()
        sent += 1
        stop.wait(FEED_EVERY_S)
    producer.stop()


def measure(events: int) -> list[float]:
    """Print and return each event's seconds from Kafka to readable in ClickHouse."""
    with tempfile.TemporaryDirectory(prefix="fabricscope-bench-") as directory, EmbeddedBroker() as broker:
        config = StoreConfig(dsn=embedded_dsn(directory), database="bench", create_database=True)
        with Store(config) as store, Store(config) as reader:
            migrate(store)
            sink = Sink(SinkConfig(), bus=broker.bus_config(), store=store).start()
            while not sink.assigned():
                time.sleep(0.05)
            stop = threading.Event()
            feeder = threading.Thread(target=feed, args=(broker.bus_config(), stop))
            feeder.start()
            producer = Producer(broker.bus_config()).start()
            delays: list[float] = []
            try:
                time.sleep(3)  # flows streaming, inserts in flight
                for n in range(events):
                    event = make_event("fast_recovery", ts=T0 + n, ts_end=T0 + n + 1_000, severity="warning",
                                       link="leaf1-spine1", summary=f"bench event {n}")
                    sent = time.monotonic()
                    producer.send_batch("events", event_columns([event]))
                    producer.flush()
                    while reader.query("SELECT count() FROM events").rows[0][0] < n + 1:
                        time.sleep(0.01)
                    delays.append(time.monotonic() - sent)
                    time.sleep(EVENT_EVERY_S)
            finally:
                stop.set()
                feeder.join()
                producer.stop()
                sink.stop()
    load = open("/proc/loadavg").read().split()[0]  # noqa: SIM115 - one read
    print(f"event Kafka → readable in ClickHouse: {', '.join(f'{d:.2f}' for d in delays)} s; median "
          f"{statistics.median(delays):.2f} s, max {max(delays):.2f} s; {sink.stats.rows.get('flows', 0):,} flow rows "
          f"inserted meanwhile (load average {load})")
    return delays


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=8)
    measure(parser.parse_args().events)


if __name__ == "__main__":
    main()
