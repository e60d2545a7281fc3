"""fabricscope.config: --config read once into one typed Config; flags over the file over the dataclass
defaults; anything unknown or mistyped named with file:line; --help shows the dataclasses' defaults."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
from pathlib import Path

import pytest

from collectors.capture_source import DEFAULT_RING_MB, CaptureConfig
from collectors.sflow_source import DEFAULT_LISTEN, SflowConfig, SflowSource
from collectors.snmp import DEFAULT_INTERVAL_S, SnmpConfig
from dashboards.server import DashboardConfig
from fabricscope.cli import build_parser
from fabricscope.config import Config, load_config
from fabricscope.source_service import DEFAULT_BUFFER_MEMORY_MB, DEFAULT_DRAIN_S, ServiceConfig
from pipeline.detect.config import DetectorConfig
from pipeline.errors import InputError
from pipeline.sink import DEFAULT_BATCH_ROWS, SinkConfig
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TOPOLOGY = str(SAMPLES / "topology.yaml")


def settle(argv: list[str], text: str | None = None, tmp_path: Path | None = None) -> Config:
    extra: list[str] = []
    if text is not None:
        assert tmp_path is not None
        path = tmp_path / "fabricscope.yaml"
        path.write_text(text)
        extra = ["--config", str(path)]
    return load_config(build_parser(argv[0]).parse_args([*argv, *extra]))


def config_file(tmp_path: Path) -> str:
    return str(tmp_path / "fabricscope.yaml")


def test_without_a_file_every_section_is_its_dataclass_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FABRICSCOPE_SNMP_COMMUNITY", raising=False)
    config = settle(["capture", "--topology", TOPOLOGY])
    assert config.capture == CaptureConfig()
    assert config.capture.ring_mb == DEFAULT_RING_MB
    assert config.service == ServiceConfig(metrics="127.0.0.1:9710")
    assert config.service.buffer_memory_mb == DEFAULT_BUFFER_MEMORY_MB
    assert (config.sflow, config.snmp, config.sink, config.dashboard, config.detectors) == (
        SflowConfig(), SnmpConfig(), SinkConfig(), DashboardConfig(), DetectorConfig())
    assert config.kafka == {} and config.file is None and config.topology == TOPOLOGY


def test_a_config_value_replaces_the_default(tmp_path: Path) -> None:
    config = settle(["capture", "--topology", TOPOLOGY],
                    "capture:\n  snaplen: 256\n  drain: 5\nservice:\n  drain: 9\n  buffer_dir: /var/spool\n"
                    "sink:\n  batch_rows: 1000\n", tmp_path)
    assert (config.capture.snaplen, config.capture.ring_mb) == (256, DEFAULT_RING_MB)
    # the source's own section wins over `service:`, which wins over the defaults
    assert (config.service.drain, config.service.buffer_dir) == (5.0, "/var/spool")
    assert config.sink.batch_rows == 1000  # other sections are read (and checked) too
    assert settle(["ingest"], "sink:\n  batch_rows: 1000\n", tmp_path).sink.batch_rows == 1000
    assert settle(["ingest"]).sink.batch_rows == DEFAULT_BATCH_ROWS


def test_a_flag_overrides_the_config_value(tmp_path: Path) -> None:
    text = "capture:\n  snaplen: 256\n  ring_mb: 64\nservice:\n  drain: 9\n"
    config = settle(["capture", "--topology", TOPOLOGY, "--snaplen", "1500", "--drain", "2"], text, tmp_path)
    assert (config.capture.snaplen, config.capture.ring_mb, config.service.drain) == (1500, 64, 2.0)
    sink = settle(["ingest", "--batch-rows", "7", "--batch-wait", "0.25"], "sink:\n  batch_rows: 1000\n", tmp_path)
    assert (sink.sink.batch_rows, sink.sink.batch_wait_s) == (7, 0.25)
    dashboard = settle(["dashboard", "--port", "9000"], "dashboard:\n  port: 8080\n  history: true\n", tmp_path)
    assert (dashboard.dashboard.port, dashboard.dashboard.history) == (9000, True)


def test_targets_from_the_file_take_the_sections_community(tmp_path: Path) -> None:
    text = ("snmp:\n  community: lab\n  interval: 5\n  targets:\n    - {device: leaf1, host: 10.0.0.11}\n"
            "    - {device: leaf2, host: 10.0.0.12, community: other}\n")
    snmp = settle(["snmp", "--topology", TOPOLOGY], text, tmp_path).snmp
    assert [(t.device, t.host, t.port, t.community) for t in snmp.targets] == [
        ("leaf1", "10.0.0.11", 161, "lab"), ("leaf2", "10.0.0.12", 161, "other")]
    assert snmp.interval == 5.0
    flagged = settle(["snmp", "--topology", TOPOLOGY, "--target", "spine1=10.0.0.1:1161"], text, tmp_path).snmp
    assert [(t.device, t.port, t.community) for t in flagged.targets] == [("spine1", 1161, "lab")]
    assert settle(["snmp", "--topology", TOPOLOGY, "--target", "x=h"]).snmp.interval == DEFAULT_INTERVAL_S


@pytest.mark.parametrize(("text", "line", "message"), [
    ("capture:\n  snaplen: 256\n  snaplne: 128\n", 3, "capture.snaplne: unknown setting"),
    ("service:\n  drain: 1\n  drian: 2\n", 3, "service.drian: unknown setting"),
    ("sflow: {}\ncaptur: {snaplen: 1}\n", 2, "captur: unknown section"),
    ("kafka:\n  security_protocol: SSL\n  bootstrap_servers: x:9092\n", 3, "kafka.bootstrap_servers: not a Kafka"),
])
def test_an_unknown_key_is_an_error_naming_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as caught:
        settle(["capture", "--topology", TOPOLOGY], text, tmp_path)
    assert (caught.value.source, caught.value.line) == (config_file(tmp_path), line)
    assert str(caught.value).startswith(f"{config_file(tmp_path)}:{line}: {message}")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("capture:\n  snaplen: lots\n", 2, "capture.snaplen: expected int, got 'lots'"),
    ("capture:\n  snaplen: 1.5\n", 2, "capture.snaplen: expected int, got 1.5"),
    ("gnmi:\n  insecure: 1\n", 2, "gnmi.insecure: expected true or false, got 1"),
    ("sink:\n  batch_wait_s: [1]\n", 2, "sink.batch_wait_s: expected float, got [1]"),
    ("dashboard:\n  port: 80\n  host: [a]\n", 3, "dashboard.host: expected str, got ['a']"),
    ("snmp:\n  targets: leaf1\n", 2, "snmp.targets: expected a list, got 'leaf1'"),
    # NaN, inf and numbers past any setting were taken as they were and failed (or hung) later
    ("sink:\n  batch_wait_s: .nan\n", 2,
     "sink.batch_wait_s: expected a finite number in -2,147,483,647..2,147,483,647, got nan"),
    ("sink:\n  batch_wait_s: 'inf'\n", 2, "sink.batch_wait_s: expected a finite number"),
    ("sflow:\n  receive_buffer: 100000000000000000000000000\n", 2, "sflow.receive_buffer: expected a finite"),
    ("gnmi:\n  interval: 1.0e+400\n", 2, "gnmi.interval: expected a finite number"),
    # well typed, but not a valid value: validate() names it where it was written
    ("capture:\n  ring_mb: 64\n  snaplen: 10\n", 3, "capture.snaplen: must be within 64..262144 bytes"),
    ("service:\n  log_level: LOUD\n", 2, "service.log_level: must be one of DEBUG, INFO, WARNING, ERROR"),
    ("snmp: {}\ncapture:\n  buffer_dir: /x\n  exporter: ''\n", 4, "capture.exporter: must not be empty"),
])
def test_a_bad_value_is_an_error_naming_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as caught:
        settle(["capture", "--topology", TOPOLOGY], text, tmp_path)
    assert (caught.value.source, caught.value.line) == (config_file(tmp_path), line)
    assert str(caught.value).startswith(f"{config_file(tmp_path)}:{line}: {message}")


def test_the_ingest_sink_section_is_validated(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=rf"^{tmp_path}/fabricscope.yaml:3: sink.tables: not record tables: flws"):
        settle(["ingest"], "sink:\n  batch_rows: 10\n  tables: [flows, flws]\n", tmp_path)
    with pytest.raises(InputError, match=r"^--batch-wait: must be positive"):
        settle(["ingest", "--batch-wait", "0"])


def test_a_bad_target_in_the_file_names_its_line(tmp_path: Path) -> None:
    text = "snmp:\n  targets:\n    - {device: leaf1, host: 10.0.0.11}\n    - {device: leaf2}\n"
    with pytest.raises(InputError, match=rf"^{tmp_path}/fabricscope.yaml:4: snmp.targets: a target is"):
        settle(["snmp", "--topology", TOPOLOGY], text, tmp_path)
    with pytest.raises(InputError, match=r"^--target: 'leaf1' is not DEVICE=HOST\[:PORT\]"):
        settle(["snmp", "--topology", TOPOLOGY, "--target", "leaf1"])


@pytest.mark.parametrize(("target", "reason"), [
    ("{device: leaf1, host: 10.0.0.11, port: 100000000000000000000000000}", "target leaf1: port: expected a finite"),
    ("{device: leaf1, host: 10.0.0.11, port: 0}", "target leaf1: port must be in 1..65535, not 0"),
    ("{device: leaf1, host: 10.0.0.11, timeout_s: .nan}", "target leaf1: timeout_s: expected a finite number"),
    ("{device: leaf1, host: [10.0.0.11]}", "target leaf1: host: expected str"),
    ("{device: '', host: 10.0.0.11}", "a target's device and host must not be empty"),
    ("'leaf1=10.0.0.11:70000'", "target leaf1: port must be in 1..65535, not 70000"),
])
def test_a_target_is_typed_as_its_class(tmp_path: Path, target: str, reason: str) -> None:
    """A target mapping from the file was passed through as written: a port of 10^26 or a host list
    reached the socket."""
    text = f"snmp:\n  targets:\n    - {target}\n"
    with pytest.raises(InputError) as caught:
        settle(["snmp", "--topology", TOPOLOGY], text, tmp_path)
    assert (caught.value.source, caught.value.line) == (config_file(tmp_path), 3)
    assert caught.value.reason.startswith(f"snmp.targets: {reason}"), caught.value.reason


def test_a_bad_flag_value_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^--snaplen: must be within"):
        settle(["capture", "--topology", TOPOLOGY, "--snaplen", "10"], "capture:\n  snaplen: 256\n", tmp_path)
    with pytest.raises(InputError, match=r"^--listen: 'nowhere' is not HOST:PORT"):
        settle(["sflow", "--topology", TOPOLOGY, "--listen", "nowhere"])
    with pytest.raises(InputError, match=r"^--target: at least one DEVICE=HOST\[:PORT\]"):
        settle(["snmp", "--topology", TOPOLOGY])
    with pytest.raises(InputError, match=r"^--port: 70000 is not a TCP port"):
        settle(["dashboard", "--port", "70000"])


def test_help_shows_the_dataclass_defaults() -> None:
    def shown(*argv: str) -> str:
        done = subprocess.run([sys.executable, "-m", "fabricscope.cli", *argv, "--help"], capture_output=True,
                              text=True, timeout=120, check=True)
        return " ".join(done.stdout.split())

    assert f"kernel ring size; larger rides out longer bursts (default: {DEFAULT_RING_MB})" in shown("capture")
    assert f"(default: {DEFAULT_BUFFER_MEMORY_MB})" in shown("capture")
    assert f"how long to keep sending what is buffered (default: {DEFAULT_DRAIN_S:g})" in shown("snmp")
    assert f"UDP address the agents send to (default: {DEFAULT_LISTEN})" in shown("sflow")
    assert f"rows buffered before an insert (default: {DEFAULT_BATCH_ROWS})" in shown("ingest")


def test_the_sflow_source_binds_in_start_not_in_its_constructor() -> None:
    source = SflowSource(load_topology(TOPOLOGY), SflowConfig(listen="127.0.0.1:0"))
    assert source.port == 0, "nothing bound yet"
    with source:
        assert source.port > 0
        bound = source.port
        with pytest.raises(InputError, match="is in use"):
            SflowSource(load_topology(TOPOLOGY), SflowConfig(listen=f"127.0.0.1:{bound}")).start()
    SflowSource(load_topology(TOPOLOGY), SflowConfig(listen=f"127.0.0.1:{bound}")).start().stop()  # released


def test_the_readme_example_loads(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = readme.split("## Configuration", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    config = settle(["snmp", "--topology", TOPOLOGY], example, tmp_path)
    assert config.kafka["security_protocol"] == "SASL_SSL"
    assert (config.capture.iface, config.snmp.community, config.service.drain) == ("ens2f1", "fabricscope", 60.0)
    assert config.detectors.congestion.ce_ratio == 0.05 and config.dashboard.host == "0.0.0.0"
    assert config.jobs is not None and config.jobs.current().name([ipaddress.ip_address("10.0.2.7")]) == "llama-70b"
