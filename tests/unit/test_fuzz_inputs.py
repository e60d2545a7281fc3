"""Every input file, damaged at random, through the real command line: the command either runs (exit 0) or
refuses with exit 2 and ONE stderr line naming the file (DESIGN.md section 7), never a traceback.

Each file type starts from a valid file and gets one to three mutations: a byte changed, bytes inserted
(NUL, bytes that are not UTF-8), the file cut short, a number swapped for one out of every range (10^26,
2^64, -1, NaN, inf), a value swapped for another type, a line written twice (duplicate keys and links).
The commands are chosen to stop cheaply: `replay --out` of an empty capture, `simulate` of a 5 ms
scenario, `gnmi --file` of a missing file (the config is checked first), `gnmi --file` of notifications
with its metrics on a taken port and `dashboard` on a taken port (both files are read before anything
listens). One subprocess per file type checks the real console script.
"""

from __future__ import annotations

import contextlib
import io
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pcap_builders import pcap_header
from werkzeug.security import generate_password_hash

from fabricscope.cli import EXIT_BAD_INPUT, EXIT_OK, main

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
TOPOLOGY = SAMPLES / "topology.yaml"
EXAMPLES = 100
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

VALID_TOPOLOGY = b"""\
fabric: pod1
speed_gbps: 400
spines: [spine1, spine2]
leaves:
  leaf1: {hosts: ["10.0.1.0/24"]}
  leaf2: {hosts: ["10.0.2.0/24", "fd00:0:0:2::/64"]}
links:
  - {leaf: leaf1, spine: spine1, leaf_port: Ethernet49, spine_port: Ethernet1, speed_gbps: 400}
  - {leaf: leaf1, spine: spine2, leaf_port: Ethernet50, spine_port: Ethernet1}
  - {leaf: leaf2, spine: spine1, leaf_port: Ethernet49, spine_port: Ethernet2}
  - {leaf: leaf2, spine: spine2, leaf_port: Ethernet50, spine_port: Ethernet2, speed_gbps: 100}
mirrors:
  - {erspan_session: 11, link: leaf1-spine1}
  - {vlan: 3012, link: leaf1-spine2}
  - {interface: tap-l2s1, link: leaf2-spine1}
sflow:
  - {agent: 192.0.2.1, ifindex: 49, link: leaf1-spine1}
counters:
  - {device: leaf1, ifname: Ethernet49, link: leaf1-spine1}
"""

VALID_SCENARIO = b"""\
name: tiny
start: "2026-01-15T10:00:00Z"
duration_ms: 5
seed: 7
capture: {erspan_type: 3, snaplen: 128, ts_resolution: ns}
fabric: {leaves: 2, spines: 2, hosts_per_leaf: 2}
traffic:
  - {kind: allreduce, job: j1, hosts: 4, period_ms: 2, burst_ms: 1}
  - {kind: tls, flows: 1, sni: a.example.com}
faults:
  - {kind: link_failure, link: leaf1-spine2, at_ms: 3, local_convergence_ms: 0.5}
"""

VALID_CONFIG = b"""\
capture: {snaplen: 256, ring_mb: 256}
sflow:
  listen: 0.0.0.0:6343
snmp:
  community: fabricscope
  interval: 10
  targets:
    - {device: leaf1, host: 10.0.0.11}
    - {device: spine1, host: 10.0.0.1, port: 161, timeout_s: 2.0}
gnmi:
  username: fabricscope
  insecure: true
  interval: 10
service: {log_level: info}
detectors:
  congestion: {ce_ratio: 0.05}
  fast_recovery: {window_ms: 10}
kafka: {security_protocol: PLAINTEXT}
alerts:
  webhooks:
    - {name: pager, url: "http://127.0.0.1:9093/api/v2/alerts", format: alertmanager, kinds: [fast_recovery],
       headers: {X-Scope-OrgID: fabric}, timeout_s: 5, resend_s: 60}
"""

VALID_GNMI = b"""\
{"update": {"timestamp": 1700000000000000000, "prefix": "interfaces/interface[name=Ethernet49]", \
"update": [{"path": "state/counters", "val": {"in-octets": "123", "out-octets": "45", "in-unicast-pkts": 7}}, \
{"path": "state/oper-status", "val": "UP"}]}}
{"source": "leaf1:6030", "timestamp": 1700000000100000000, \
"prefix": "openconfig-interfaces:interfaces/interface[name=Ethernet49]", \
"updates": [{"Path": "state/counters/in-octets", "values": {"state/counters/in-octets": "200"}}, \
{"Path": "ethernet/state/port-speed", "values": {"ethernet/state/port-speed": "SPEED_400GB"}}]}
{"sync_response": true}
"""

TOKEN = "0123456789abcdef0123"


def valid_auth() -> bytes:
    hashed = generate_password_hash("s3cret", method="pbkdf2:sha256:1000")  # cheap: one login per example
    return (f'users:\n  alice: "{hashed}"\ntokens:\n  - "{TOKEN}"\n'
            "lockout: {failures: 10, window_s: 60}\n").encode()


def valid_counters() -> bytes:
    sample = sorted(SAMPLES.glob("*.counters.jsonl"))[0]
    return b"".join(sample.read_bytes().splitlines(keepends=True)[:3])


# -- mutations ---------------------------------------------------------------------------------------------
OUT_OF_RANGE = (b"100000000000000000000000000", b"18446744073709551616", b"9223372036854775808", b"-1",
                b"1.0e+400", b"-0.0", b"0001", b"9999")
YAML_SWAPS = (b".nan", b".inf", b"[]", b"{}", b"null", b"true", b"'x'", b"[1, [2]]", b"2026-02-30",
              b"!!int x", b"&a [*a]", b'"a\\nb"')
JSON_SWAPS = (b"NaN", b"Infinity", b"[]", b"{}", b"null", b"true", b'"x"', b"1e400", b"[" * 3000)
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?")
_WORD = re.compile(rb"[A-Za-z_][\w.:-]*")


@st.composite
def mutated(draw: st.DrawFn, original: bytes, swaps: tuple[bytes, ...]) -> bytes:
    data = original
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(("byte", "insert", "truncate", "number", "swap", "duplicate")))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "byte" and data:
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif kind == "insert":
            junk = draw(st.sampled_from((b"\x00", b"\xff\xfe", b"\xe9", b"\x85", b"\n", b"\t", b"'", b'"', b"{",
                                         b"[", b"\\", b": ", b"#", b"- ", b"&x ", b"*x ")))
            data = data[:at] + junk + data[at:]
        elif kind == "truncate":
            data = data[:at]
        elif kind in ("number", "swap"):
            pattern, choices = (_NUMBER, OUT_OF_RANGE) if kind == "number" else (_WORD, swaps)
            matches = list(pattern.finditer(data))
            if matches:
                match = draw(st.sampled_from(matches))
                data = data[:match.start()] + draw(st.sampled_from(choices)) + data[match.end():]
        elif kind == "duplicate":
            lines = data.splitlines(keepends=True)
            if lines:
                index = draw(st.integers(0, len(lines) - 1))
                data = b"".join([*lines[:index + 1], lines[index], *lines[index + 1:]])
    return data


# -- running the command line ------------------------------------------------------------------------------
def run_in_process(argv: list[str]) -> tuple[int, str]:
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(argv)
    return code, err.getvalue()


def assert_ok_or_one_line(code: int, stderr: str, file: Path, *, also: tuple[str, ...] = ()) -> None:
    """Exit 0, or exit 2 with one line naming `file` (or, when the file was fine, what else the command
    refused: `also`)."""
    assert "Traceback" not in stderr, stderr
    assert code in (EXIT_OK, EXIT_BAD_INPUT), stderr
    if code == EXIT_BAD_INPUT:
        lines = stderr.splitlines()
        assert len(lines) == 1, stderr
        assert any(name in lines[0] for name in (str(file), *also)), lines[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-inputs")
    (path / "empty.pcap").write_bytes(pcap_header())
    return path


@pytest.fixture(scope="module")
def taken_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield int(listener.getsockname()[1])


def replay_argv(workdir: Path, topology: Path, *extra: str) -> list[str]:
    return ["replay", str(workdir / "empty.pcap"), "--topology", str(topology), "--out",
            str(workdir / "flows.jsonl"), "--no-progress", *extra]


def simulate_argv(workdir: Path, scenario: Path) -> list[str]:
    return ["simulate", "--scenario", str(scenario), "--out", str(workdir / "sim" / "tiny.pcap")]


def gnmi_argv(workdir: Path, config: Path) -> list[str]:
    return ["gnmi", "--config", str(config), "--topology", str(TOPOLOGY), "--file", str(workdir / "absent.jsonl"),
            "--device", "leaf1", "--data-dir", str(workdir / "data")]


def gnmi_file_argv(workdir: Path, notifications: Path, port: int) -> list[str]:
    return ["gnmi", "--file", str(notifications), "--device", "leaf1", "--topology", str(TOPOLOGY),
            "--metrics", f"127.0.0.1:{port}", "--data-dir", str(workdir / "data")]


def dashboard_argv(workdir: Path, auth: Path, port: int) -> list[str]:
    return ["dashboard", "--auth", str(auth), "--topology", str(TOPOLOGY), "--port", str(port),
            "--data-dir", str(workdir / "data")]


# -- the valid files pass (else the fuzz tests would only ever see refusals) ----------------------------------
def test_the_valid_files_run_or_stop_where_expected(workdir: Path, taken_port: int) -> None:
    files = {name: workdir / name for name in ("t.yaml", "c.jsonl", "s.yaml", "cfg.yaml", "auth.yaml", "g.jsonl")}
    for path, content in zip(files.values(), (VALID_TOPOLOGY, valid_counters(), VALID_SCENARIO, VALID_CONFIG,
                                              valid_auth(), VALID_GNMI), strict=True):
        path.write_bytes(content)
    assert run_in_process(replay_argv(workdir, files["t.yaml"]))[0] == EXIT_OK
    assert run_in_process(replay_argv(workdir, TOPOLOGY, "--counters", str(files["c.jsonl"])))[0] == EXIT_OK
    assert run_in_process(simulate_argv(workdir, files["s.yaml"]))[0] == EXIT_OK
    code, stderr = run_in_process(gnmi_argv(workdir, files["cfg.yaml"]))
    assert (code, stderr.strip()) == (EXIT_BAD_INPUT, f"fabricscope gnmi: {workdir / 'absent.jsonl'}: no such file")
    code, stderr = run_in_process(dashboard_argv(workdir, files["auth.yaml"], taken_port))
    assert code == EXIT_BAD_INPUT and f"port {taken_port}" in stderr, stderr
    code, stderr = run_in_process(gnmi_file_argv(workdir, files["g.jsonl"], taken_port))
    assert code == EXIT_BAD_INPUT and f"--metrics: cannot listen on 127.0.0.1:{taken_port}" in stderr, stderr


# -- one fuzz test per file type -------------------------------------------------------------------------------
def fuzz(workdir: Path, name: str, content: bytes, argv: Callable[[Path], list[str]],
         also: tuple[str, ...] = ()) -> None:
    path = workdir / name
    path.write_bytes(content)
    code, stderr = run_in_process(argv(path))
    assert_ok_or_one_line(code, stderr, path, also=also)


@FUZZ
@given(content=mutated(VALID_TOPOLOGY, YAML_SWAPS))
def test_fuzz_topology(workdir: Path, content: bytes) -> None:
    fuzz(workdir, "topology.yaml", content, lambda path: replay_argv(workdir, path))


@FUZZ
@given(content=mutated(valid_counters(), JSON_SWAPS))
def test_fuzz_counters(workdir: Path, content: bytes) -> None:
    fuzz(workdir, "counters.jsonl", content, lambda path: replay_argv(workdir, TOPOLOGY, "--counters", str(path)))


@FUZZ
@given(content=mutated(VALID_SCENARIO, YAML_SWAPS))
def test_fuzz_scenario(workdir: Path, content: bytes) -> None:
    fuzz(workdir, "scenario.yaml", content, lambda path: simulate_argv(workdir, path))


@FUZZ
@given(content=mutated(VALID_CONFIG, YAML_SWAPS))
def test_fuzz_config(workdir: Path, content: bytes) -> None:
    fuzz(workdir, "config.yaml", content, lambda path: gnmi_argv(workdir, path),
         also=(str(workdir / "absent.jsonl"),))


@FUZZ
@given(content=mutated(valid_auth(), YAML_SWAPS))
def test_fuzz_auth(workdir: Path, taken_port: int, content: bytes) -> None:
    fuzz(workdir, "auth.yaml", content, lambda path: dashboard_argv(workdir, path, taken_port),
         also=(f"port {taken_port}",))


@FUZZ
@given(content=mutated(VALID_GNMI, JSON_SWAPS))
def test_fuzz_gnmi_notifications(workdir: Path, taken_port: int, content: bytes) -> None:
    fuzz(workdir, "notifications.jsonl", content, lambda path: gnmi_file_argv(workdir, path, taken_port),
         also=(f"127.0.0.1:{taken_port}",))


# -- the console script itself, once per file type -------------------------------------------------------------
def fabricscope(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fabricscope.cli", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("kind", ["topology", "counters", "scenario", "config", "auth", "gnmi"])
def test_a_file_that_is_not_utf8_exits_2_with_one_line(workdir: Path, taken_port: int, kind: str) -> None:
    """Issue 13: a file that was not UTF-8 was a UnicodeDecodeError traceback (exit 1)."""
    valid = {"topology": VALID_TOPOLOGY, "counters": valid_counters(), "scenario": VALID_SCENARIO,
             "config": VALID_CONFIG, "auth": valid_auth(), "gnmi": VALID_GNMI}[kind]
    path = workdir / f"latin1-{kind}"
    path.write_bytes(valid.replace(b"\n", b" \xe9\n", 1))  # the first line ends in a byte that is not UTF-8
    argv = {"topology": lambda: replay_argv(workdir, path),
            "counters": lambda: replay_argv(workdir, TOPOLOGY, "--counters", str(path)),
            "scenario": lambda: simulate_argv(workdir, path),
            "config": lambda: gnmi_argv(workdir, path),
            "auth": lambda: dashboard_argv(workdir, path, taken_port),
            "gnmi": lambda: gnmi_file_argv(workdir, path, taken_port)}[kind]()
    done = fabricscope(*argv)
    assert done.returncode == EXIT_BAD_INPUT, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"{path}:1: not UTF-8 text (byte 0xe9" in done.stderr, done.stderr
