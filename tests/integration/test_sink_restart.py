"""`fabricscope ingest` killed with SIGKILL in the middle and started again: every row once, none twice.

The sink runs as a real process on its own data directory (chdb allows one process per directory, and
this test process holds the session's), the broker is the session's and outlives both runs, and the
result is read back through `fabricscope query` once the sink has exited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from pipeline_rows import SUMMED, expected_sums, random_flows

from pipeline import records
from pipeline.bus import BusConfig, Producer

pytestmark = pytest.mark.integration

TIMEOUT_S = 180


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fabricscope.cli", *args]


def _ingest(broker: str, data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _cli("ingest", "--kafka", broker, "--data-dir", str(data_dir), "--group", "restart",
             "--batch-rows", "4000", "--batch-wait", "0.1", "--metrics", "off", *extra),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _wait_for_log(process: subprocess.Popen[str], text: str) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        if text in line:
            return
    raise AssertionError(f"ingest exited with {process.wait()} before logging {text!r}")


def _query(data_dir: Path, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(_cli("query", sql, "--data-dir", str(data_dir), "--format", "json"),
                          capture_output=True, text=True, timeout=TIMEOUT_S)


def test_sigkill_in_the_middle_then_restart_equals_a_clean_run(
        broker: str, bus_config: BusConfig, clean_topics: list[str], data_dir: Path) -> None:
    batches = [random_flows(10_000, seed=seed) for seed in range(40, 48)]
    producer = Producer(bus_config).start()
    for batch in batches:
        producer.send_batch("flows", batch)
    producer.flush()
    producer.stop()

    first = _ingest(broker, data_dir)
    _wait_for_log(first, " inserted ")
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=TIMEOUT_S) == -signal.SIGKILL

    second = _ingest(broker, data_dir, "--until-idle", "5")
    _wait_for_log(second, " assigned ")
    held = _query(data_dir, "SELECT 1")
    assert held.returncode == 1
    assert f"{(data_dir / 'clickhouse').resolve()} is in use by another process" in held.stderr
    assert second.wait(timeout=TIMEOUT_S) == 0

    sums = ", ".join(f"sum({name}) AS {name}" for name in SUMMED)
    tables = (("flows", "count()"), ("flows_1m", "sum(flows)"), ("link_stats_1s", "sum(flows)"))
    result = _query(data_dir, " UNION ALL ".join(f"SELECT '{table}' AS source, toUInt64({rows}) AS rows, {sums} "
                                                 f"FROM {table}" for table, rows in tables))
    assert result.returncode == 0, result.stderr
    stored = {row["source"]: tuple(int(row[name]) for name in ("rows", *SUMMED)) for row in json.loads(result.stdout)}
    assert stored == dict.fromkeys(("flows", "flows_1m", "link_stats_1s"), expected_sums(batches))


def test_query_is_read_only_and_events_list_in_order(
        broker: str, bus_config: BusConfig, clean_topics: list[str], data_dir: Path) -> None:
    events = records.empty_columns("events", 4)
    now_us = int(time.time()) * 1_000_000
    events["ts"] = np.array([now_us - 10, now_us - 40, now_us - 20, now_us - 7_200_000_000], dtype="datetime64[us]")
    events["ts_end"] = events["ts"]
    events["kind"] = np.array(["link_down", "link_down", "congestion", "link_down"], dtype=object)
    events["summary"] = np.array(["second", "first", "other kind", "too old"], dtype=object)
    producer = Producer(bus_config).start()
    producer.send_batch("events", events)
    producer.flush()
    producer.stop()
    loaded = subprocess.run(_cli("ingest", "--kafka", broker, "--data-dir", str(data_dir), "--until-idle", "1",
                                 "--metrics", "off"),
                            capture_output=True, text=True, timeout=TIMEOUT_S)
    assert loaded.returncode == 0, loaded.stderr
    refused = _query(data_dir, "INSERT INTO events (kind) VALUES ('link_down')")
    assert refused.returncode == 2 and "not a read" in refused.stderr.lower()
    listed = subprocess.run(_cli("events", "--data-dir", str(data_dir), "--since", "1h", "--kind", "link_down",
                                 "--format", "json"), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert listed.returncode == 0, listed.stderr
    assert [event["summary"] for event in json.loads(listed.stdout)] == ["first", "second"]
    missing = _query(data_dir.parent / "nowhere", "SELECT 1")
    assert missing.returncode == 2 and "no store in" in missing.stderr
