"""A flood of distinct flows through `fabricscope replay` with a small --max-flows, with one and two workers, into
a JSON lines file and through Kafka into ClickHouse: the bound is on the flows of all workers together, so the
summary line reports the same rows exported early whatever the worker count, and the rows still add up to
what the capture holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.flow_memory import write_flood
from collectors.pcapfile import DEFAULT_BATCH_SIZE

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
FLOWS = DEFAULT_BATCH_SIZE + 5000  # two batches: the second finds the table past the bound
# Above each worker's half of the flows of the first batch, below all of them: a bound held per worker
# would export nothing early with two workers.
MAX_FLOWS = 40_000
# Every flow has one packet and all fall in one export interval, so no row leaves before the second batch,
# which makes room for itself by exporting early every flow past the bound (the writer's truth).
EARLY = FLOWS - MAX_FLOWS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def flood(tmp_path_factory: pytest.TempPathFactory) -> Path:
    capture = tmp_path_factory.mktemp("flood") / "flood.pcap"
    write_flood(capture, FLOWS)
    return capture


def replay(flood: Path, workers: int, *output: str) -> str:
    """`replay` of the flood under MAX_FLOWS, checked to succeed; its stderr (the summary line)."""
    done = subprocess.run(
        [*FABRICSCOPE, "replay", str(flood), "--topology", str(SAMPLES / "topology.yaml"), "--max-flows",
         str(MAX_FLOWS), "--workers", str(workers), "--no-progress", *output],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done.stderr


def early_exports(stderr: str) -> int:
    early = re.search(r"(\d+) flow rows exported early", stderr)
    assert early is not None, stderr
    return int(early.group(1))


def assert_one_packet_per_flow(rows: list[tuple[int, int, int]]) -> None:
    """(src_port, roce_qp, packets) rows: every flow of the capture, one packet each, none doubled."""
    flows: dict[tuple[int, int], int] = {}
    for src_port, roce_qp, packets in rows:
        flows[(src_port, roce_qp)] = flows.get((src_port, roce_qp), 0) + packets
    assert len(flows) == FLOWS and set(flows.values()) == {1}


@pytest.mark.parametrize("workers", [1, 2])
def test_jsonl_rows_and_early_exports_are_the_same_with_one_or_two_workers(
    flood: Path, tmp_path: Path, workers: int
) -> None:
    out = tmp_path / "flows.jsonl"
    stderr = replay(flood, workers, "--out", str(out))
    assert early_exports(stderr) == EARLY
    with out.open(encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    assert len(rows) == FLOWS
    assert_one_packet_per_flow([(row["src_port"], row["roce_qp"], row["packets"]) for row in rows])


def test_two_workers_into_the_store_count_the_early_exports_and_lose_no_row(flood: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "store"
    stderr = replay(flood, 2, "--data-dir", str(data_dir))
    assert early_exports(stderr) == EARLY
    done = subprocess.run(
        [*FABRICSCOPE, "query", "SELECT src_port, roce_qp, packets FROM flows", "--format", "json",
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert len(rows) == FLOWS
    assert_one_packet_per_flow([(row["src_port"], row["roce_qp"], row["packets"]) for row in rows])
