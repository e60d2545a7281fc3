"""deploy/: the compose file, the systemd unit and the example settings must describe commands fabricscope
accepts, so a deployment copied from them starts. (No Docker engine runs here, so the images are not built.)"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from requirements import requires

from fabricscope.cli import build_parser
from fabricscope.commands import gnmi
from fabricscope.config import Config, load_config
from pipeline.bus import pipeline_topics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOPOLOGY = ROOT / "samples" / "topology.yaml"
_DEFAULTED = re.compile(r"\$\{(\w+):?-([^}]*)\}")


COMPOSE_FILES = ("compose.yaml", "compose.cluster.yaml")
# service → the command it runs, per compose file
COMPOSE_COMMANDS = {
    "compose.yaml": {"ingest": "ingest", "detect": "ingest", "dashboard": "dashboard", "capture": "capture",
                     "sflow": "sflow", "snmp": "snmp", "gnmi": "gnmi"},
    "compose.cluster.yaml": {"ingest": "ingest", "detect": "ingest", "dashboard": "dashboard",
                             "capture-a": "capture", "capture-b": "capture"},
}


def _compose(file: str) -> dict:
    return yaml.safe_load((DEPLOY / file).read_text())


def _compose_services(file: str = "compose.yaml") -> dict[str, dict]:
    return {name: spec for name, spec in _compose(file)["services"].items()
            if spec.get("image") == "fabricscope:latest"}


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def _argv(spec: dict) -> list[str]:
    return [_DEFAULTED.sub(lambda m: m.group(2), str(word)) for word in spec["command"]]


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_every_compose_service_runs_a_command_fabricscope_accepts(file: str) -> None:
    services = _compose_services(file)
    assert {name: _parse(_argv(spec)).command_name for name, spec in services.items()} == COMPOSE_COMMANDS[file]
    for spec in services.values():
        for variable in spec["environment"]:
            assert variable.startswith("FABRICSCOPE_")
            assert any(variable in path.read_text() for path in (ROOT / "fabricscope").rglob("*.py")), variable


@pytest.mark.parametrize("file", COMPOSE_FILES)
def test_exactly_one_ingest_member_detects(file: str) -> None:
    """The detectors need every link's records (a failure's evidence spans a leaf's links, which the topics
    spread over partitions): one member runs them; the sink members get no topology."""
    members = {name: spec for name, spec in _compose_services(file).items() if spec["command"][0] == "ingest"}
    detecting = [name for name, spec in members.items()
                 if spec["environment"].get("FABRICSCOPE_TOPOLOGY") or "--topology" in spec["command"]]
    assert detecting == ["detect"]
    assert "replicas" not in members["detect"].get("deploy", {})
    assert not any("--group" in spec["command"] for spec in members.values())  # one sink group, detect in it


def test_the_cluster_deployment_names_one_cluster_and_makes_room_for_its_members() -> None:
    compose = _compose("compose.cluster.yaml")
    services = _compose_services("compose.cluster.yaml")
    cluster_xml = (DEPLOY / "clickhouse" / "cluster.xml").read_text()
    for name in ("ingest", "detect"):
        cluster = _parse(_argv(services[name])).cluster
        assert f"<{cluster}>" in cluster_xml
    shards = re.findall(r"<host>(\w+)</host>", cluster_xml.split("<zookeeper>")[0])
    assert shards and all(host in compose["services"] for host in shards)
    create = compose["services"]["topics"]["command"][0]
    tables = re.search(r"for topic in ([\w ]+);", create).group(1).split()  # type: ignore[union-attr]
    names = [f"fabricscope.{t}.v1{suffix}" for t in tables for suffix in ("", ".dlq")]
    assert sorted(names) == sorted(pipeline_topics())
    partitions = int(re.search(r"FABRICSCOPE_PARTITIONS:-(\d+)", create).group(1))  # type: ignore[union-attr]
    assert partitions >= services["ingest"]["deploy"]["replicas"] + 1  # every member can own a partition
    assert len([name for name, spec in compose["services"].items()
                if spec.get("image", "").startswith("apache/kafka") and name != "topics"]) == 3


def test_the_dockerfile_copies_what_exists() -> None:
    copied = re.findall(r"^COPY (.+) \S+$", (DEPLOY / "Dockerfile").read_text(), re.MULTILINE)
    assert copied
    for sources in copied:
        for source in sources.split():
            assert (ROOT / source).exists(), source


def _settled(name: str) -> Config:
    return load_config(_parse([name, "--config", str(DEPLOY / "fabricscope.yaml"), "--topology", str(TOPOLOGY)]))


def test_the_example_settings_are_accepted_by_each_source() -> None:
    assert _settled("capture").capture.snaplen == 256
    assert _settled("sflow").sflow.listen == "0.0.0.0:6343"
    polled = _settled("snmp").snmp.targets
    assert [(t.device, t.host, t.port, t.timeout_s) for t in polled] == [
        ("leaf1", "10.0.0.11", 161, 1.0), ("leaf2", "10.0.0.12", 161, 1.0), ("spine1", "10.0.0.1", 161, 2.0)]
    assert {target.community for target in polled} == {"fabricscope"}
    subscribed = gnmi.build_source(_settled("gnmi"))
    assert [(t.device, t.host, t.port, t.insecure) for t in subscribed.targets] == [("leaf3", "10.0.0.13", 6030, True)]


def test_the_capture_env_example_holds_capture_flags() -> None:
    line = next(line for line in (DEPLOY / "systemd" / "capture.env").read_text().splitlines()
                if line.startswith("FABRICSCOPE_ARGS="))
    args = _parse(["capture", *shlex.split(line.partition("=")[2])])
    assert (args.iface, args.snaplen) == ("ens2f1", 256)


@requires(shutil.which("systemd-analyze") is not None, "systemd-analyze (Debian systemd) is not installed here")
def test_the_systemd_unit_verifies(tmp_path: Path) -> None:
    """systemd-analyze checks every key and that ExecStart is executable: point it at this checkout's venv."""
    executable = shutil.which("fabricscope") or str(ROOT / ".venv" / "bin" / "fabricscope")
    unit = (DEPLOY / "systemd" / "fabricscope@.service").read_text()
    unit = unit.replace("/opt/fabricscope/.venv/bin/fabricscope", executable).replace("/etc/fabricscope", str(tmp_path))
    unit = re.sub(r"^(User|Group)=.*$", r"\1=root", unit, flags=re.MULTILINE)
    (tmp_path / "fabricscope@.service").write_text(unit)
    (tmp_path / "fabricscope@capture.service").symlink_to(tmp_path / "fabricscope@.service")
    shutil.copy(DEPLOY / "systemd" / "fabricscope.env", tmp_path)
    done = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "fabricscope@capture.service")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
