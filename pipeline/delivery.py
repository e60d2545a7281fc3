"""Produce record batches and return only when the sink has put every row in ClickHouse.

This is `replay`'s embedded mode (DESIGN.md section 7): collector, broker and sink in one process. The
sink here is the only member of its group on a fresh broker, so the rows it reports inserted are exactly
the rows produced; completion is counted in rows that reached ClickHouse, never read from lag.
"""

from __future__ import annotations

from collections import Counter
from types import TracebackType

import pyarrow as pa

from pipeline import codec
from pipeline.bus import BusConfig, Producer
from pipeline.errors import BusError
from pipeline.sink import Sink, SinkConfig
from pipeline.store import Store

DEFAULT_FINISH_TIMEOUT_S = 600.0


class Delivery:
    """`send()` batches of any table, then `finish()`: every row is in the store when it returns."""

    def __init__(self, *, bus: BusConfig, store: Store, sink: SinkConfig | None = None) -> None:
        self.producer = Producer(bus)
        self.sink = Sink(sink or SinkConfig(), bus=bus, store=store)
        self.sent: Counter[str] = Counter()

    def start(self) -> Delivery:
        self.sink.start()
        self.producer.start()
        return self

    def send(self, table: str, batch: codec.Batch) -> None:
        rows = batch.num_rows if isinstance(batch, pa.Table) else len(next(iter(batch.values()), ()))
        if rows:
            self.producer.send_batch(table, batch)
            self.sent[table] += rows

    def finish(self, *, timeout_s: float = DEFAULT_FINISH_TIMEOUT_S) -> dict[str, int]:
        """Flush the producer, wait until the sink inserted every row sent, stop both; rows per table."""
        self.producer.flush()
        for table, rows in self.sent.items():
            if not self.sink.wait_for_rows(table, rows, timeout_s=timeout_s):
                self.stop()
                inserted = self.sink.stats.rows.get(table, 0)
                raise BusError(f"{table}: {inserted} of {rows} rows reached ClickHouse within {timeout_s:g} s")
        self.stop()
        return dict(self.sent)

    def stop(self) -> None:
        try:
            self.producer.stop()
        finally:
            self.sink.stop()

    def __enter__(self) -> Delivery:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if error is not None:
            self.stop()
