"""deploy/: the compose file, the systemd unit and the example settings must describe commands fabricscope
accepts, so a deployment copied from them starts. (No Docker engine runs here, so the images are not built.)"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import yaml
from requirements import requires

from fabricscope.cli import build_parser
from fabricscope.commands import gnmi
from fabricscope.config import Config, load_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
TOPOLOGY = ROOT / "samples" / "topology.yaml"
_DEFAULTED = re.compile(r"\$\{(\w+):?-([^}]*)\}")


def _compose_services() -> dict[str, dict]:
    return {name: spec for name, spec in yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"].items()
            if spec.get("image") == "fabricscope:latest"}


def _parse(argv: list[str]) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def test_every_compose_service_runs_a_command_fabricscope_accepts() -> None:
    services = _compose_services()
    assert set(services) == {"ingest", "dashboard", "capture", "sflow", "snmp", "gnmi"}
    for name, spec in services.items():
        argv = [_DEFAULTED.sub(lambda m: m.group(2), str(word)) for word in spec["command"]]
        assert _parse(argv).command_name == name
        for variable in spec["environment"]:
            assert variable.startswith("FABRICSCOPE_")
            assert any(variable in path.read_text() for path in (ROOT / "fabricscope").rglob("*.py")), variable


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
