"""A flood of distinct flows through `fabricscope replay` with a small --max-flows: the summary line reports
the rows exported early, and the rows still add up to what the capture holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from bench.flow_memory import write_flood
from collectors.pcapfile import DEFAULT_BATCH_SIZE

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FLOWS = DEFAULT_BATCH_SIZE + 5000  # two batches: the second finds the table past the bound


def test_replay_with_a_small_bound_reports_early_exports_and_loses_nothing(tmp_path: Path) -> None:
    capture, out = tmp_path / "flood.pcap", tmp_path / "flows.jsonl"
    write_flood(capture, FLOWS)
    done = subprocess.run(
        [sys.executable, "-m", "fabricscope.cli", "replay", str(capture), "--topology", str(SAMPLES / "topology.yaml"),
         "--out", str(out), "--max-flows", "1000", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    early = re.search(r"(\d+) flow rows exported early", done.stderr)
    assert early is not None and int(early.group(1)) > 0, done.stderr
    flows: dict[tuple[int, int], int] = {}
    with out.open(encoding="utf-8") as rows:
        for line in rows:
            row = json.loads(line)
            key = (row["src_port"], row["roce_qp"])
            flows[key] = flows.get(key, 0) + row["packets"]
    assert len(flows) == FLOWS and set(flows.values()) == {1}  # the writer's truth: one packet per flow
