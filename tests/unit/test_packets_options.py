"""`fabricscope packets` and the recorder's settings: flows parse as the flows table keys them, bad input is
one line naming the option or file:line, the recorder's flags win over its `recorder:` section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from collectors.packet_select import DEFAULT_LIMIT, flow_text, parse_flow
from collectors.recorder import DEFAULT_BUDGET_MB, RecorderConfig
from fabricscope.cli import build_parser, main
from fabricscope.config import load_config
from pipeline.addresses import words_of
from pipeline.errors import InputError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def test_a_flow_parses_to_the_flows_tables_key_and_back() -> None:
    flow = parse_flow("10.0.1.5:49152>10.0.2.7:4791/udp", qp=0x1234)
    assert (flow.src, flow.dst) == (words_of("10.0.1.5"), words_of("10.0.2.7"))
    assert (flow.src_port, flow.dst_port, flow.proto, flow.qp) == (49152, 4791, 17, 0x1234)
    v6 = parse_flow("[fd00:0:0:1::1]:4420>[fd00:0:0:2::1]:50000/6")
    assert v6.dst == words_of("fd00:0:0:2::1") and v6.proto == 6
    assert parse_flow(flow_text(v6)) == v6


@pytest.mark.parametrize("text", ["10.0.1.5>10.0.2.7/udp", "10.0.1.5:1>10.0.2.7:2/sctpx", "10.0.1.999:1>10.0.2.7:2/udp",
                                  "10.0.1.5:70000>10.0.2.7:2/udp"])
def test_a_bad_flow_is_bad_input_naming_the_option(text: str) -> None:
    with pytest.raises(InputError, match=r"^--flow: "):
        parse_flow(text)


def test_packets_bad_input_is_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["packets", "--data-dir", str(tmp_path), "--topology", str(SAMPLES / "combo.topology.yaml"), "--out",
            str(tmp_path / "x.pcap")]
    cases = {("--pcap", str(SAMPLES / "combo.pcap"), "--link", "leaf9-spine1"): "--link: 'leaf9-spine1' is not a link",
             ("--pcap", str(tmp_path / "missing.pcap")): "missing.pcap: no such file",
             ("--pcap", str(SAMPLES / "combo.pcap"), "--qp", "5"): "--qp: needs --flow",
             (): "--data-dir: no recorded packets and no replayed capture in"}
    for options, message in cases.items():
        assert main([*base, *options]) == 2
        error = capsys.readouterr().err.strip()
        assert message in error and len(error.splitlines()) == 1, error


def test_the_recorders_flag_wins_over_its_section_and_help_states_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "fabricscope.yaml"
    path.write_text("recorder:\n  budget_mb: 100\n  pinned_budget_mb: 50\n")
    args = build_parser("capture").parse_args(["capture", "--topology", str(SAMPLES / "topology.yaml"), "--config",
                                               str(path), "--record-budget-mb", "300"])
    settings = load_config(args).recorder
    assert (settings.budget_mb, settings.pinned_budget_mb) == (300, 50)
    assert load_config(build_parser("capture").parse_args(
        ["capture", "--topology", str(SAMPLES / "topology.yaml")])).recorder == RecorderConfig()
    assert f"(default: {DEFAULT_BUDGET_MB})" in command_help("capture")
    assert f"(default: {DEFAULT_LIMIT})" in command_help("packets")


def command_help(command: str) -> str:
    done = subprocess.run([sys.executable, "-m", "fabricscope.cli", command, "--help"], capture_output=True,
                          text=True, check=True)
    return " ".join(done.stdout.split())


def test_a_bad_recorder_value_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "fabricscope.yaml"
    path.write_text("recorder:\n  segment_s: 0\n")
    args = build_parser("demo").parse_args(["demo", "--config", str(path)])
    with pytest.raises(InputError, match=r"fabricscope.yaml:2: recorder.segment_s: must be positive"):
        load_config(args)
