"""Scenario files: the sample scenarios load, and bad files are rejected with file, line and reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from fabricscope.cli import EXIT_BAD_INPUT, main
from pipeline.errors import ScenarioError
from simulator.scenario import load_scenario

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

GOOD = """\
name: tiny
duration_ms: 20
capture: {erspan_type: 3, snaplen: 128, ts_resolution: ns}
fabric: {leaves: 2, spines: 2, hosts_per_leaf: 2}
traffic:
  - {kind: allreduce, job: j1, hosts: 4, period_ms: 10, burst_ms: 4}
  - {kind: tls, flows: 1, sni: a.example.com}
faults:
  - {kind: congestion, link: leaf2-spine1, direction: down, start_ms: 2, end_ms: 12}
  - {kind: link_failure, link: leaf1-spine2, at_ms: 15, local_convergence_ms: 0.5}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.scenario.yaml"
    path.write_text(text)
    return path


def test_good_scenario_values(tmp_path: Path) -> None:
    scenario = load_scenario(write(tmp_path, GOOD))
    assert scenario.name == "tiny"
    assert scenario.duration_ns == 20_000_000
    assert (scenario.capture.erspan_type, scenario.capture.snaplen, scenario.capture.ts_resolution) == (3, 128, "ns")
    assert scenario.fabric.leaves == 2 and scenario.fabric.spines == 2
    assert [item.kind for item in scenario.traffic] == ["allreduce", "tls"]
    assert scenario.traffic[0].params["qps_per_pair"] == 1  # default filled in
    assert scenario.traffic[1].params["sni"] == "a.example.com"
    failure = scenario.faults[1]
    assert failure.params["local_convergence_ms"] == 0.5
    assert failure.params["remote_convergence_ms"] == 5.0
    assert failure.line == 10
    assert scenario.traffic[0].params["end_ms"] == -1.0  # sends until the end of the capture
    assert not scenario.incident_truth


def test_soak_is_long_with_many_faults() -> None:
    soak = load_scenario(SAMPLES / "soak.scenario.yaml")
    assert soak.duration_ns >= 30 * 60 * 10**9 and soak.incident_truth
    kinds = [fault.kind for fault in soak.faults]
    assert kinds.count("link_failure") + kinds.count("link_flap") >= 20 and kinds.count("link_flap") >= 2
    assert kinds.count("congestion") >= 5
    assert any(item.params.get("end_ms", -1) >= 0 for item in soak.traffic)  # jobs stop


@pytest.mark.parametrize("name", ["mixed", "allreduce_congestion", "link_failure", "combo", "soak"])
def test_sample_scenarios_load(name: str) -> None:
    scenario = load_scenario(SAMPLES / f"{name}.scenario.yaml")
    assert scenario.name == name
    assert scenario.fabric.leaves == 4 and scenario.fabric.spines == 2


BAD = [
    (GOOD.replace("name: tiny", "name: tiny\ncolour: red"), 2, "unknown key 'colour'"),
    # a start its time zone pushes past year 1 was an OverflowError traceback; before 1970 or after 2106 the
    # pcap's unsigned 32-bit seconds wrapped silently
    (GOOD.replace("name: tiny", "name: tiny\nstart: '0001-01-01T00:00:00+01:00'"), 2, "between 1970 and 2106"),
    (GOOD.replace("name: tiny", "name: tiny\nstart: 1969-12-31T23:59:59Z"), 2, "between 1970 and 2106"),
    (GOOD.replace("name: tiny", "name: tiny\nstart: 2106-02-07T06:28:15Z"), 2, "between 1970 and 2106"),
    (GOOD.replace("name: tiny", "name: tiny\nstart: 2026-02-30T00:00:00Z"), 2, "invalid timestamp value"),
    (GOOD.replace("erspan_type: 3", "erspan_type: 4"), 3, "'erspan_type' must be 2 or 3"),
    (GOOD.replace("snaplen: 128", "snaplen: 64"), 3, "'snaplen' must be 0"),
    (GOOD.replace("ts_resolution: ns", "ts_resolution: ms"), 3, "'ts_resolution'"),
    (GOOD.replace("spines: 2", "spines: 0"), 4, "'spines' must be an integer"),
    (GOOD.replace("kind: tls", "kind: quic"), 7, "unknown traffic kind 'quic'"),
    (GOOD.replace("kind: tls", "kind: [tls]"), 7, "unknown traffic kind '['tls']'"),  # was a TypeError
    (GOOD.replace("job: j1, ", ""), 6, "'job' is required"),
    (GOOD.replace("burst_ms: 4", "burst_ms: -4"), 6, "'burst_ms' must be a number"),
    (GOOD.replace("flows: 1", "flows: 1, port: 9"), 7, "unknown key 'port'"),
    (GOOD.replace("leaf2-spine1", "leaf7-spine1"), 9, "'leaf7-spine1' is not a link"),
    (GOOD.replace("direction: down", "direction: sideways"), 9, "'direction' must be 'up' or 'down'"),
    (GOOD.replace("end_ms: 12", "end_ms: 1"), 9, "'end_ms' must come after 'start_ms'"),
    (GOOD.replace("at_ms: 15", "at_ms: 25"), 10, "'at_ms' must fall inside"),
    (GOOD + "  - {kind: ecmp_imbalance, leaf: leaf1, spine: spine1, share: 1.5}\n", 11, "'share' must be a number"),
    (GOOD.replace("hosts: 4,", "hosts: 5,"), 6, "'hosts' exceeds the fabric's 4"),
    (GOOD.replace("burst_ms: 4", "burst_ms: 8"), 6, "must stay below 'period_ms'"),
    (GOOD.replace("  - {kind: tls", "  - {kind: allreduce, job: j1, hosts: 2}\n  - {kind: tls"), 7, "named twice"),
    (GOOD.replace("duration_ms: 20", "duration_ms: [20"), 3, "invalid YAML"),
    (GOOD.replace("duration_ms: 20\n", ""), 1, "'duration_ms' must be a number"),
    (GOOD.replace("duration_ms: 20", "duration_ms: 3600001"), 2, "'duration_ms' must be a number in 1..3.6e+06"),
    (GOOD.replace("sni: a.example.com}", "sni: a.example.com, start_ms: 5, end_ms: 5}"), 7,
     "'end_ms' must come after 'start_ms'"),
    (GOOD.replace("burst_ms: 4}", "burst_ms: 4, start_ms: 20}"), 6, "'start_ms' must fall inside"),
    (GOOD.replace("name: tiny", "name: tiny\nincident_truth: 1"), 2, "'incident_truth' must be true or false"),
]


@pytest.mark.parametrize(("text", "line", "reason"), BAD)
def test_bad_scenario_names_line_and_reason(tmp_path: Path, text: str, line: int, reason: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert caught.value.source == str(path)
    assert caught.value.line == line
    assert reason in caught.value.reason


def test_cli_bad_scenario_exit_2_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, GOOD.replace("erspan_type: 3", "erspan_type: 9"))
    code = main(["simulate", "--scenario", str(path), "--out", str(tmp_path / "x.pcap")])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT
    assert err.count("\n") == 1
    assert f"{path}:3:" in err and "erspan_type" in err
    assert not (tmp_path / "x.pcap").exists()


def test_cli_missing_scenario_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", "--scenario", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "x.pcap")])
    assert code == EXIT_BAD_INPUT
    assert capsys.readouterr().err.count("\n") == 1
