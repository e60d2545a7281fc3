"""`replay --out` files are written as the batches come, not at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from collectors.collector import Collector, CollectorConfig
from collectors.pcapfile import open_capture
from pipeline import recordfile
from pipeline.recordfile import RecordFileWriter
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_jsonl_rows_are_in_the_file_as_soon_as_their_batch_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recordfile, "JSON_CHUNK_ROWS", 7)  # batches span several chunks
    collector = Collector(  # 100 ms rows: the 400 ms sample gives rows in several steps
        load_topology(SAMPLES / "mixed.topology.yaml"), CollectorConfig(active_timeout_s=0.1)
    )
    out = tmp_path / "flows.jsonl"
    batches = 0
    with RecordFileWriter(out, "flows") as writer, open_capture(SAMPLES / "mixed.pcap", batch_size=2048) as capture:
        for step in collector.run(capture):
            before = writer.rows
            writer.write(step.flows)
            lines = out.read_text(encoding="utf-8").splitlines()
            assert len(lines) == writer.rows == before + len(step.flows["ts_start"])  # on disk before close
            batches += writer.rows > before
    assert batches > 2, "the sample gives rows in several steps"
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sum(row["packets"] for row in rows) == collector.stats.packets - collector.stats.malformed
