"""Pipeline benchmark: 1M flow rows producer → tansu → sink → chdb, end to end and stage by stage.

Two shapes of rows. `fabric`: as a collector exports a fabric, 100,000 flows on fixed links and address pairs
(4,096 hosts), one row per flow and second, so a second holds 100k rows and the rollups fold them as they
would in production; the target is judged on it. `random`: every row at a random time in an hour and between
random addresses, so nearly every row is its own rollup row (the worst case the rollup views can meet).

Prints rows/s end to end (from the first produce to the last row committed in ClickHouse), rows/s of
chdb inserts alone (same rows, as many rows per insert as the sink's inserts had — one per partition range,
so about batch_rows / partitions — into the migrated flows table with its rollup views, and into a bare
MergeTree for comparison), and where the time went. The sink inserts in its own thread while it fetches
and decodes the next batch, so its insert time overlaps the rest. Target: ≥300k rows/s end to end.

    .venv/bin/python bench/pipeline.py [--rows 1000000] [--batch-rows 500000] [--shape fabric|random|both]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# This script shares the package's name: import the package from the repository, not this file.
sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from pipeline import codec, records  # noqa: E402
from pipeline.broker import EmbeddedBroker  # noqa: E402
from pipeline.bus import Producer  # noqa: E402
from pipeline.migrate import migrate  # noqa: E402
from pipeline.sink import DEFAULT_BATCH_ROWS, INSERT_SETTINGS, Sink, SinkConfig  # noqa: E402
from pipeline.store import Store, StoreConfig, embedded_dsn  # noqa: E402
from tests.pipeline_rows import fabric_flows, random_flows  # noqa: E402

LINKS = np.array([f"leaf{leaf}-spine{spine}" for leaf in range(1, 9) for spine in range(1, 5)], dtype=object)
BATCH_FLOWS = 100_000
FABRIC_FLOWS = 100_000
SHAPES = ("fabric", "random")
TARGET_ROWS_S = 300_000


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s ({seconds:.2f} s)"


def end_to_end(broker: EmbeddedBroker, store: Store, batches: list[dict[str, np.ndarray]],
               batch_rows: int) -> tuple[float, int]:
    """Run the pipeline over the batches and print its figures; rows/s end to end and the sink's mean rows
    per insert."""
    total = sum(len(b["packets"]) for b in batches)
    sink = Sink(SinkConfig(batch_rows=batch_rows), bus=broker.bus_config(), store=store).start()
    while not sink.assigned():
        time.sleep(0.05)
    producer = Producer(broker.bus_config()).start()
    encode_s = send_s = 0.0
    started = time.perf_counter()
    messages = 0
    for batch in batches:
        t0 = time.perf_counter()
        encoded = codec.encode("flows", batch)
        t1 = time.perf_counter()
        for message in encoded:
            producer.send(records.topic("flows"), message.value, key=message.key)
        encode_s, send_s = encode_s + t1 - t0, send_s + time.perf_counter() - t1
        messages += len(encoded)
    t0 = time.perf_counter()
    producer.flush()
    send_s += time.perf_counter() - t0
    produced = time.perf_counter() - started
    if not sink.wait_for_rows("flows", total, timeout_s=600):
        raise SystemExit(f"sink stopped short: {sink.stats}")
    elapsed = time.perf_counter() - started
    stats = sink.stats
    sink.stop()
    producer.stop()
    stored = store.query("SELECT count(), sum(packets) FROM flows").rows[0]
    expected = (total, sum(int(b["packets"].sum()) for b in batches))
    print(f"end to end     {rate(total, elapsed)}  [{messages} messages ≤1 MiB, stored {stored} == {expected}: "
          f"{tuple(stored) == expected}]")
    print(f"  produce side {rate(total, produced)}: Arrow encode {encode_s:.2f} s, kafka send+flush {send_s:.2f} s")
    per_insert = total // max(1, stats.inserts)
    print(f"  sink side    decode {stats.decode_s:.2f} s, ClickHouse insert {stats.insert_s:.2f} s in {stats.inserts} "
          f"inserts of ~{per_insert:,} rows (insert thread), consumer blocked on inserts {stats.insert_wait_s:.2f} s")
    verdict = "meets" if total / elapsed >= TARGET_ROWS_S else "MISSES"
    print(f"  {verdict} the {TARGET_ROWS_S:,} rows/s target")
    return total / elapsed, per_insert


def inserts_alone(store: Store, batches: list[dict[str, np.ndarray]], batch_rows: int) -> None:
    """chdb alone, `batch_rows` per insert, with the views and without."""
    table = pa.concat_tables(codec.to_arrow("flows", b) for b in batches)
    on_flows, views = store.query(
        "SELECT sumIf(length(dependencies_table), name = 'flows'), countIf(engine = 'MaterializedView') "
        "FROM system.tables WHERE database = currentDatabase()").rows[0]
    store.command("CREATE TABLE bare AS flows ENGINE = MergeTree ORDER BY (link, direction, ts_start)")
    for target in ("flows", "bare"):
        store.command(f"TRUNCATE TABLE {target}")
        started = time.perf_counter()
        for offset in range(0, table.num_rows, batch_rows):
            store.insert_arrow(target, table.slice(offset, batch_rows),
                               settings={**INSERT_SETTINGS, "insert_deduplication_token": f"bench-{target}-{offset}"})
        label = (f"with the {views} rollup views, {on_flows} of them on flows" if target == "flows"
                 else "bare MergeTree")
        print(f"chdb insert    {rate(table.num_rows, time.perf_counter() - started)}  [{label}, "
              f"{batch_rows:,} rows per insert]")


def shaped_batches(rows: int, shape: str) -> list[dict[str, np.ndarray]]:
    """The bench's rows in batches of BATCH_FLOWS, in one of SHAPES."""
    start_us = (int(time.time()) - 3600) * 1_000_000
    if shape == "fabric":
        return [fabric_flows(min(BATCH_FLOWS, rows - start), first_row=start, flows=FABRIC_FLOWS, links=LINKS,
                             start_us=start_us) for start in range(0, rows, BATCH_FLOWS)]
    return [random_flows(min(BATCH_FLOWS, rows - start), seed=seed, links=LINKS, start_us=start_us)
            for seed, start in enumerate(range(0, rows, BATCH_FLOWS))]


def measure(rows: int, shape: str = "fabric", batch_rows: int = DEFAULT_BATCH_ROWS) -> float:
    """Print every figure of one run; rows/s end to end."""
    print(f"-- {shape} rows", flush=True)
    batches = shaped_batches(rows, shape)
    with tempfile.TemporaryDirectory(prefix="fabricscope-bench-") as directory, EmbeddedBroker() as broker:
        store = Store(StoreConfig(dsn=embedded_dsn(directory), database="bench", create_database=True)).open()
        try:
            migrate(store)
            rows_s, per_insert = end_to_end(broker, store, batches, batch_rows)
            inserts_alone(store, batches, per_insert)
        finally:
            store.close()
    return rows_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS,
                        help="sink rows per insert (default: the sink's)")
    parser.add_argument("--shape", choices=(*SHAPES, "both"), default="both", help="rows' shape (default: both)")
    args = parser.parse_args()
    for shape in SHAPES if args.shape == "both" else (args.shape,):
        measure(args.rows, shape, args.batch_rows)


if __name__ == "__main__":
    main()
