"""`fabricscope gnmi --file`: saved gNMI notifications through the embedded pipeline into ClickHouse, and a bad
line named with its file and line (exit 2) without losing the rows accepted before it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

TOPOLOGY = Path(__file__).resolve().parents[2] / "samples" / "topology.yaml"
T0_NS = 1_768_474_800_000_000_000


def _notification(index: int, ifname: str, octets: int) -> str:
    return json.dumps({"update": {
        "timestamp": T0_NS + index * 10**9,
        "prefix": f"interfaces/interface[name={ifname}]",
        "update": [
            {"path": "state/counters", "val": {"in-octets": str(octets), "out-octets": str(2 * octets),
                                               "in-unicast-pkts": str(octets // 100), "in-errors": "0"}},
            {"path": "state/oper-status", "val": "UP"},
        ],
    }})


def _fabricscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabricscope.cli", *args], capture_output=True, text=True, timeout=180)


def test_a_notification_file_lands_as_counters_rows(tmp_path: Path) -> None:
    lines = [_notification(i, name, 1_000 * (i + 1)) for i in range(5) for name in ("Ethernet49", "Ethernet50")]
    lines.append(_notification(5, "Ethernet7", 1))  # not in the topology: not recorded
    saved = tmp_path / "leaf1.jsonl"
    saved.write_text("\n".join(lines) + "\n")
    data_dir = str(tmp_path / "store")
    done = _fabricscope("gnmi", "--file", str(saved), "--device", "leaf1", "--topology", str(TOPOLOGY),
                        "--data-dir", data_dir, "--metrics", "off")
    assert done.returncode == 0, done.stderr
    query = _fabricscope("query", "SELECT link, count() AS n, max(in_octets) AS top, max(out_octets) AS out, "
                         "min(oper_up) AS up, any(source) AS source FROM counters GROUP BY link ORDER BY link",
                         "--format", "json", "--data-dir", data_dir)
    assert query.returncode == 0, query.stderr
    assert json.loads(query.stdout) == [
        {"link": "leaf1-spine1", "n": 5, "top": 5000, "out": 10000, "up": 1, "source": "gnmi"},
        {"link": "leaf1-spine2", "n": 5, "top": 5000, "out": 10000, "up": 1, "source": "gnmi"},
    ]


def test_a_bad_line_is_named_before_anything_starts(tmp_path: Path) -> None:
    """The file is read whole first: a bad line is the one line printed (exit 2), and nothing is stored."""
    saved = tmp_path / "leaf1.jsonl"
    saved.write_text(_notification(0, "Ethernet49", 5) + "\n{not json\n")
    done = _fabricscope("gnmi", "--file", str(saved), "--device", "leaf1", "--topology", str(TOPOLOGY),
                        "--data-dir", str(tmp_path / "store"), "--metrics", "off")
    assert done.returncode == 2
    assert done.stderr.startswith(f"fabricscope gnmi: {saved}:2: not JSON") and done.stderr.count("\n") == 1, \
        done.stderr
    assert not (tmp_path / "store").exists()
