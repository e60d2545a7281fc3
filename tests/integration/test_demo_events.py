"""The demo tells no lies: the live demo path (generated cycles replayed in real time through the embedded
broker, ClickHouse and detectors), with shortened cycles, gives one incident per fault it injects and no
event on a link that did not fail; its dashboard, watched in headless Chromium while it runs, is live and
reads as a fabric at work."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from chromium import headless_chromium
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.integration

FABRICSCOPE = [sys.executable, "-m", "fabricscope.cli"]
CYCLES = 2
CYCLE_S = 20
LINK_KINDS = {"fast_recovery", "link_down", "link_up", "link_flap"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_n_demo_cycles_give_n_failures_n_congestions_and_no_event_on_a_healthy_link(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    demo = subprocess.Popen([*FABRICSCOPE, "demo", "--cycle", str(CYCLE_S), "--cycles", str(CYCLES),
                             "--port", str(free_port()), "--data-dir", str(data_dir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert demo.stderr is not None
        banner = demo.stderr.readline()
        assert "dashboard on " in banner and "1:8,000 scale model" in banner, banner
        watched_live(banner.split(" on ")[1].split()[0], tmp_path / "chromium")
        stderr = demo.stderr.read()
        assert demo.wait(timeout=CYCLES * CYCLE_S + 180) == 0, stderr
    finally:
        demo.kill()
        demo.wait()
    scenario = yaml.safe_load(next((data_dir / "demo").glob("cycle-*.scenario.yaml")).read_text())
    faults = scenario["faults"]
    jobs = {traffic["job"] for traffic in scenario["traffic"] if "job" in traffic}
    failing = next(fault["link"] for fault in faults if fault["kind"] == "link_failure")
    congested = next((fault["link"], fault["direction"]) for fault in faults if fault["kind"] == "congestion")
    query = subprocess.run([*FABRICSCOPE, "events", "--format", "json", "--data-dir", str(data_dir)],
                           capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    incidents = json.loads(query.stdout)
    summary = [(e["kind"], e["link"], e["direction"], e["summary"]) for e in incidents]
    recoveries = [e for e in incidents if e["kind"] == "fast_recovery"]
    assert [e["link"] for e in recoveries] == [failing] * CYCLES, summary
    congestions = [e for e in incidents if e["kind"] == "congestion"]
    assert [(e["link"], e["direction"]) for e in congestions] == [congested] * CYCLES, summary
    assert len([e for e in incidents if e["kind"] == "collective_slowdown"]) >= CYCLES, summary
    # the jobs carry the names the scenario gave them, not DFI's ids
    assert {e["job"] for e in incidents if e["kind"] == "collective_slowdown"} <= jobs, summary
    assert all(e["job"] and set(e["job"].split(",")) <= jobs for e in congestions), summary
    assert {e["link"] for e in incidents if e["kind"] in LINK_KINDS} == {failing}, summary
    assert {e["link"] for e in incidents} <= {"", failing, congested[0]}, summary
    recorded_packets_of_the_failure(data_dir, recoveries[0])
    busiest_link_reads_as_a_fabric_at_work(data_dir, float(scenario["fabric"]["speed_gbps"]))


def busiest_link_reads_as_a_fabric_at_work(data_dir: Path, speed_gbps: float) -> None:
    """The demo is a scale model: over its run the busiest link direction carries 20-100% of the link speed
    the scenario gave it (at 400G it carried 0.006%)."""
    query = subprocess.run([*FABRICSCOPE, "query", "--format", "json", "--data-dir", str(data_dir),
                            "SELECT link, direction, sum(bytes) * 8 / dateDiff('microsecond', min(ts_start),"
                            " max(ts_end)) * 1e6 AS bps FROM flows WHERE link != '' GROUP BY link, direction"
                            " ORDER BY bps DESC LIMIT 1"], capture_output=True, text=True, timeout=120)
    assert query.returncode == 0, query.stderr
    busiest = json.loads(query.stdout)[0]
    assert 0.2 <= busiest["bps"] / (speed_gbps * 1e9) <= 1.0, busiest


def watched_live(url: str, profile: Path) -> None:
    """The dashboard of the running demo in headless Chromium: it says live, its map shows the scale model's
    load (some link direction at 10% or more) and the first congestion episode reaches the table."""
    with headless_chromium(profile) as browser:
        browser.get(f"{url}/?range=1m")
        wait = WebDriverWait(browser, CYCLE_S * 2)
        wait.until(lambda d: d.find_element(By.ID, "window-text").text.endswith("· live"))
        wait.until(lambda d: max(_map_percentages(d), default=0.0) >= 10.0)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#congestion-table td[data-dash-column='link']"))
        artifacts = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
        artifacts.mkdir(parents=True, exist_ok=True)
        browser.find_element(By.ID, "fabric").screenshot(str(artifacts / "demo_fabric.png"))


def _map_percentages(browser: webdriver.Chrome) -> list[float]:
    labels = browser.execute_script(
        "const gd = document.querySelector('#fabric-map .js-plotly-plot');"
        "const t = gd && gd.data ? gd.data.find(t => t.name === 'links') : null;"
        "return t ? Array.from(t.text) : [];")
    return [float(label.rstrip("%")) for label in labels if label.endswith("%") and label[0].isdigit()]


def recorded_packets_of_the_failure(data_dir: Path, recovery: dict[str, object]) -> None:
    """`fabricscope packets --event` on the demo's recorded store: the failed link's packets around the
    failure, from before the failure time the detector gave."""
    topology = next((data_dir / "demo").glob("*.topology.yaml"))
    listed = subprocess.run([*FABRICSCOPE, "packets", "--event", str(recovery["event_id"]), "--topology",
                             str(topology), "--data-dir", str(data_dir), "--limit", "100000", "--format", "json"],
                            capture_output=True, text=True, timeout=300)
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert rows and {row["link"] for row in rows} == {recovery["link"]}
    failed_at = datetime.fromisoformat(str(recovery["ts"]))
    assert min(datetime.fromisoformat(row["time"]) for row in rows) < failed_at  # it carried traffic before
