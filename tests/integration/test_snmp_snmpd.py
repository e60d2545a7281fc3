"""The SNMP poller against Debian's snmpd in a leaf namespace (issue 7).

A namespace plays the leaf: its port Ethernet49 is one end of a veth whose other end is in this test's
namespace, and snmpd answers on the leaf's address. What we record is checked against snmpget and against
the kernel's own /proc/net/dev inside the leaf. Devices whose counters need scripting (32-bit only and
wrapping, 64-bit near 2^64, and the PFC MIBs net-snmp does not implement) are snmpd too, serving those
columns through `pass_persist`.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collectors.snmp import COLUMNS, SYS_UPTIME, TWO_32, SnmpPoller, SnmpTarget
from pipeline.detect.link_health import counter_rates
from pipeline.topology import Topology
from tests.netns import NetLab, ip, needs_netns
from tests.requirements import requires

pytestmark = [
    pytest.mark.netns,
    needs_netns,
    requires(shutil.which("snmpd") is not None and shutil.which("snmpget") is not None,
             "Debian snmpd and snmp (snmpget) are not installed (make test installs them)"),
]

TOPOLOGY = """\
fabric: lab
spines: [spine1]
leaves:
  leaf1: {hosts: ["10.0.1.0/24"]}
  leaf2: {hosts: ["10.0.2.0/24"]}
  leaf3: {hosts: ["10.0.3.0/24"]}
counters:
  - {device: leaf1, ifname: Ethernet49, link: leaf1-spine1}
  - {device: leaf2, ifname: Ethernet1, link: leaf2-spine1}
  - {device: leaf3, ifname: Ethernet1, link: leaf3-spine1}
"""
SNMPD_PORT = 1161
PAYLOAD = 1000
FRAME = PAYLOAD + 8 + 20 + 14  # UDP, IPv4 and Ethernet headers: what the port counts per datagram
DATAGRAMS = 3000

# snmpd's pass_persist protocol (snmpd.conf(5)): PING/PONG, then "get"/"getnext" and an OID on stdin,
# answered with OID, type and value lines, or NONE. The table is re-read per request so the test can
# change the counters between polls.
PASS_PERSIST = """\
import json, sys
def key(oid): return tuple(int(x) for x in oid.strip().strip(".").split("."))
while line := sys.stdin.readline():
    command = line.strip()
    if command == "PING":
        print("PONG", flush=True)
        continue
    if command not in ("get", "getnext"):
        continue
    oid = key(sys.stdin.readline())
    with open(sys.argv[1]) as handle:
        table = {key(k): v for k, v in json.load(handle).items()}
    found = (oid if oid in table else None) if command == "get" else min((k for k in table if k > oid), default=None)
    if found is None:
        print("NONE", flush=True)
    else:
        print("." + ".".join(map(str, found)), *table[found], sep="\\n", flush=True)
"""


@dataclass
class Leaf:
    lab: NetLab
    namespace: str
    address: str  # the management port's, where snmpd listens
    data_address: str  # Ethernet49's
    peer_address: str  # the far end of Ethernet49
    port_name: str


@pytest.fixture
def leaf() -> Iterator[Leaf]:
    """A leaf namespace with a fabric port, Ethernet49, and a management port, both veth-joined to this
    namespace. SNMP goes over the management port, as on a switch, so Ethernet49 carries only the test's
    traffic; IPv6 is off on both so neither sends anything of its own."""
    with NetLab() as lab:
        namespace = lab.namespace("leaf")
        subnet = f"10.{random.randrange(64, 250)}.{random.randrange(0, 250)}"
        for name, suffix, first in (("Ethernet49", "e", 0), ("Management1", "m", 4)):
            inside, outside = f"fs{lab.tag}{suffix}", f"fs{lab.tag}{suffix}r"
            lab.veth(inside, outside, ns_a=namespace)
            ip("link", "set", inside, "down", namespace=namespace)
            ip("link", "set", inside, "name", name, namespace=namespace)
            ip("link", "set", name, "up", namespace=namespace)
            lab.address(name, f"{subnet}.{first + 1}/30", namespace=namespace)
            lab.address(outside, f"{subnet}.{first + 2}/30")
            lab.run(namespace, ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"])
            lab.run(None, ["sysctl", "-qw", f"net.ipv6.conf.{outside}.disable_ipv6=1"])
        yield Leaf(lab, namespace, f"{subnet}.5", f"{subnet}.1", f"{subnet}.2", "Ethernet49")


@pytest.fixture
def snmpd(leaf: Leaf, tmp_path: Path) -> Iterator[Any]:
    """Start snmpd instances in the leaf (conf lines after agentAddress/rocommunity); all stopped at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(port: int, *conf: str) -> str:
        run = tmp_path / f"snmpd{port}"
        run.mkdir()
        (run / "snmpd.conf").write_text("\n".join([f"agentAddress udp:{leaf.address}:{port}",
                                                   "rocommunity public", *conf]) + "\n")
        with (run / "log").open("w") as log:
            process = leaf.lab.popen(leaf.namespace, [
                "snmpd", "-f", "-Lo", "-C", "-M", "/nonexistent", "-c", str(run / "snmpd.conf"),
                "-p", str(run / "pid")], stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "SNMP_PERSISTENT_DIR": str(run / "state")})
        started.append(process)
        for _attempt in range(100):
            if snmpget(f"{leaf.address}:{port}", (*SYS_UPTIME, 0), check=False) is not None:
                return f"{leaf.address}:{port}"
            if process.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"snmpd did not start: {(run / 'log').read_text()[-2000:]}")

    yield start
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def snmpget(agent: str, *oids: tuple[int, ...], check: bool = True) -> list[str] | None:
    """Values of `oids` by Net-SNMP's snmpget (the reference client), or None if it got no answer."""
    done = subprocess.run(["snmpget", "-M", "/nonexistent", "-v2c", "-c", "public", "-On", "-Oqv", "-t", "1",
                           "-r", "1", agent, *(".".join(map(str, oid)) for oid in oids)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if check:
            raise AssertionError(f"snmpget failed: {done.stderr.strip()[-500:]}")
        return None
    return done.stdout.split("\n")[: len(oids)]


def proc_net_dev(leaf: Leaf) -> dict[str, int]:
    """The kernel's counters of the leaf's port, read inside its namespace."""
    text = leaf.lab.run(leaf.namespace, ["cat", "/proc/net/dev"]).stdout
    line = next(line for line in text.splitlines() if line.strip().startswith(f"{leaf.port_name}:"))
    fields = [int(value) for value in line.split(":", 1)[1].split()]
    names = ["rx_bytes", "rx_packets", "rx_errs", "rx_drop", "rx_fifo", "rx_frame", "rx_compressed", "rx_multicast",
             "tx_bytes", "tx_packets", "tx_errs", "tx_drop", "tx_fifo", "tx_colls", "tx_carrier", "tx_compressed"]
    return dict(zip(names, fields, strict=True))


def push_in(leaf: Leaf) -> None:
    """DATAGRAMS datagrams of PAYLOAD bytes into the leaf's port, paced so no queue on the way drops any."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for sent in range(DATAGRAMS):
            sender.sendto(b"x" * PAYLOAD, (leaf.data_address, 9))
            if sent % 100 == 99:
                time.sleep(0.002)


def push_out(leaf: Leaf) -> None:
    """The same from a socket inside the leaf, out of its port."""
    script = (f"import socket, time\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
              f"for i in range({DATAGRAMS}):\n    s.sendto(b'y' * {PAYLOAD}, ('{leaf.peer_address}', 9))\n"
              f"    if i % 100 == 99: time.sleep(0.002)\n")
    done = leaf.lab.run(leaf.namespace, [sys.executable, "-c", script])
    assert done.returncode == 0, done.stderr


def row_of(batch: dict[str, np.ndarray], device: str, ifname: str) -> dict[str, Any]:
    (index,) = np.flatnonzero((batch["device"] == device) & (batch["ifname"] == ifname))
    return {name: batch[name][index] for name in batch}


def poll(poller: SnmpPoller) -> dict[str, np.ndarray]:
    return asyncio.run(poller.poll())


def test_counters_equal_snmpget_and_the_kernel(leaf: Leaf, snmpd: Any, topology: Topology) -> None:
    agent = snmpd(SNMPD_PORT)
    host, port = agent.split(":")
    poller = SnmpPoller(topology, [SnmpTarget("leaf1", host, int(port))])
    before = poll(poller)
    assert list(before["ifname"]) == ["Ethernet49"]  # lo and Management1 are in the agent, not in the topology
    start = row_of(before, "leaf1", "Ethernet49")
    assert start["link"] == "leaf1-spine1" and start["oper_up"] == 1 and start["speed_bps"] == 10_000_000_000

    push_in(leaf)
    push_out(leaf)
    kernel = proc_net_dev(leaf)
    # snmpd caches interface statistics for a few seconds: poll until its answer is the kernel's now.
    for _attempt in range(60):
        row = row_of(poll(poller), "leaf1", "Ethernet49")
        if row["in_octets"] == kernel["rx_bytes"] and row["out_octets"] == kernel["tx_bytes"]:
            break
        time.sleep(0.5)
        kernel = proc_net_dev(leaf)
    index = int(leaf.lab.run(leaf.namespace, ["cat", "/sys/class/net/Ethernet49/ifindex"]).stdout)
    names = ("ifName", "ifHCInOctets", "ifHCOutOctets", "ifHCInUcastPkts", "ifHCOutUcastPkts", "ifInErrors",
             "ifInDiscards", "ifOutErrors", "ifOutDiscards")
    reference = dict(zip(names, snmpget(agent, *((*COLUMNS[name], index) for name in names)) or [], strict=True))
    kernel_after = proc_net_dev(leaf)

    assert reference["ifName"].strip('"') == "Ethernet49"
    assert row["in_octets"] == int(reference["ifHCInOctets"]) == kernel["rx_bytes"] == kernel_after["rx_bytes"]
    assert row["out_octets"] == int(reference["ifHCOutOctets"]) == kernel["tx_bytes"] == kernel_after["tx_bytes"]
    assert row["in_pkts"] >= int(reference["ifHCInUcastPkts"])
    assert row["in_pkts"] == kernel["rx_packets"] and row["out_pkts"] == kernel["tx_packets"]
    assert (row["in_errors"], row["in_discards"]) == (int(reference["ifInErrors"]), int(reference["ifInDiscards"]))
    assert (row["in_errors"], row["in_discards"]) == (kernel["rx_errs"], kernel["rx_drop"])
    assert (row["out_errors"], row["out_discards"]) == (kernel["tx_errs"], kernel["tx_drop"])
    assert row["in_octets"] - start["in_octets"] >= DATAGRAMS * FRAME
    assert row["out_octets"] - start["out_octets"] >= DATAGRAMS * FRAME
    assert poller.counts()["errors"] == 0


def scripted_agent(snmpd: Any, tmp_path: Path, port: int, *columns: str) -> tuple[str, Path]:
    """snmpd whose sysUpTime, ifTable and ifXTable (and the tables of `columns`) come from a JSON table file
    the test rewrites."""
    script, table = tmp_path / "pass_persist.py", tmp_path / f"table{port}.json"
    script.write_text(PASS_PERSIST)
    table.write_text("{}")
    program = f"{sys.executable} {script} {table}"
    tables = (SYS_UPTIME, COLUMNS["ifDescr"][:-1], COLUMNS["ifName"][:-1], *(COLUMNS[name][:-1] for name in columns))
    agent = snmpd(port, *(f"pass_persist -p 1 .{'.'.join(map(str, oid))} {program}" for oid in tables))
    return agent, table


def write_table(path: Path, ticks: int, values: dict[str, tuple[str, int | str]], index: int = 7) -> None:
    rows = {".".join(map(str, (*SYS_UPTIME, 0))): ["timeticks", ticks]}
    rows.update({".".join(map(str, (*COLUMNS[name], index))): list(value) for name, value in values.items()})
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(rows))
    temporary.replace(path)


def old_device(ticks: int, in_octets: int, in_errors: int) -> dict[str, tuple[str, int | str]]:
    """An interface of a device without ifHC* counters or ifHighSpeed."""
    return {"ifName": ("string", "Ethernet1"), "ifOperStatus": ("integer", 1), "ifSpeed": ("gauge", 100_000_000),
            "ifInOctets": ("counter", in_octets), "ifOutOctets": ("counter", 5), "ifInUcastPkts": ("counter", 1),
            "ifOutUcastPkts": ("counter", 1), "ifInErrors": ("counter", in_errors), "ifOutErrors": ("counter", 0),
            "ifInDiscards": ("counter", 0), "ifOutDiscards": ("counter", 0)}


def test_32_bit_counters_stay_continuous_across_wraps(leaf: Leaf, snmpd: Any, topology: Topology,
                                                      tmp_path: Path) -> None:
    agent, table = scripted_agent(snmpd, tmp_path, SNMPD_PORT + 1)
    host, port = agent.split(":")
    poller = SnmpPoller(topology, [SnmpTarget("leaf2", host, int(port))])
    phases = [  # (sysUpTime, ifInOctets, ifInErrors) → (in_octets, in_errors) we must record
        (1000, TWO_32 - 3000, TWO_32 - 2, (TWO_32 - 3000, TWO_32 - 2)),
        (2000, 2000, 3, (TWO_32 + 2000, TWO_32 + 3)),  # both wrapped
        (3000, TWO_32 - 100, 3, (2 * TWO_32 - 100, TWO_32 + 3)),
        (4000, 400, 3, (2 * TWO_32 + 400, TWO_32 + 3)),  # wrapped again
        (100, 50, 0, (50, 0)),  # the agent restarted (sysUpTime went back): a reset, reported raw
    ]
    recorded = []
    for ticks, in_octets, in_errors, _expected in phases:
        write_table(table, ticks, old_device(ticks, in_octets, in_errors))
        row = row_of(poll(poller), "leaf2", "Ethernet1")
        recorded.append((int(row["in_octets"]), int(row["in_errors"])))
        assert row["link"] == "leaf2-spine1" and row["speed_bps"] == 100_000_000
    assert recorded == [expected for *_, expected in phases]
    assert poller.counts()["errors"] == 0


def test_64_bit_wrap_passes_raw_and_link_health_rates_across_it(leaf: Leaf, snmpd: Any, topology: Topology,
                                                                tmp_path: Path) -> None:
    agent, table = scripted_agent(snmpd, tmp_path, SNMPD_PORT + 2)
    host, port = agent.split(":")
    poller = SnmpPoller(topology, [SnmpTarget("leaf3", host, int(port))])
    base = {"ifName": ("string", "Ethernet1"), "ifOperStatus": ("integer", 1), "ifHighSpeed": ("gauge", 400_000),
            **{name: ("counter64", 0) for name in ("ifHCInUcastPkts", "ifHCOutUcastPkts")},
            **{name: ("counter", 0) for name in ("ifInErrors", "ifOutErrors", "ifInDiscards", "ifOutDiscards")}}
    rows = []
    for in_octets in (2**64 - 1000, 500):
        write_table(table, 1000 + len(rows), {**base, "ifHCInOctets": ("counter64", in_octets),
                                              "ifHCOutOctets": ("counter64", 7)})
        rows.append(poll(poller))
    batch = {name: np.concatenate([rows[0][name], rows[1][name]]) for name in rows[0]}
    assert [int(value) for value in batch["in_octets"]] == [2**64 - 1000, 500]  # raw, wrap and all
    rates = counter_rates(batch, topology)
    elapsed = (batch["ts"][1] - batch["ts"][0]) / np.timedelta64(1, "s")
    inbound = np.flatnonzero(rates["direction"] == "down")  # into the leaf's port: the link's down direction
    assert rates["bps"][inbound][0] == pytest.approx(1500 * 8 / elapsed)


def test_pfc_frames_from_either_pfc_mib_equal_snmpget(leaf: Leaf, snmpd: Any, topology: Topology,
                                                     tmp_path: Path) -> None:
    """leaf2 serves CISCO-PFC-EXT-MIB (Counter64, as SONiC's agent does), leaf3 only IEEE8021-PFC-MIB
    (Counter32, which wraps); requests are PFC frames sent, indications received."""
    cisco, cisco_table = scripted_agent(snmpd, tmp_path, SNMPD_PORT + 5, "cpfcIfRequests")
    ieee, ieee_table = scripted_agent(snmpd, tmp_path, SNMPD_PORT + 6, "ieee8021PfcRequests")
    poller = SnmpPoller(topology, [SnmpTarget(device, agent.split(":")[0], int(agent.split(":")[1]))
                                   for device, agent in (("leaf2", cisco), ("leaf3", ieee))])
    base = {"ifName": ("string", "Ethernet1"), "ifOperStatus": ("integer", 1), "ifHighSpeed": ("gauge", 400_000),
            **{name: ("counter64", 0) for name in ("ifHCInOctets", "ifHCOutOctets", "ifHCInUcastPkts",
                                                   "ifHCOutUcastPkts")}}
    phases = [  # (cpfcIfRequests, cpfcIfIndications, ieee8021PfcRequests, ieee8021PfcIndications)
        (2**40 + 5, 123_456, TWO_32 - 10, 77),
        (2**40 + 905, 123_457, 20, 78),  # the 32-bit request count wrapped
    ]
    recorded = []
    for ticks, (cisco_tx, cisco_rx, ieee_tx, ieee_rx) in enumerate(phases, start=1000):
        write_table(cisco_table, ticks, {**base, "cpfcIfRequests": ("counter64", cisco_tx),
                                         "cpfcIfIndications": ("counter64", cisco_rx)})
        write_table(ieee_table, ticks, {**base, "ieee8021PfcRequests": ("counter", ieee_tx),
                                        "ieee8021PfcIndications": ("counter", ieee_rx)})
        batch = poll(poller)
        for device, agent, columns in (("leaf2", cisco, ("cpfcIfRequests", "cpfcIfIndications")),
                                       ("leaf3", ieee, ("ieee8021PfcRequests", "ieee8021PfcIndications"))):
            row = row_of(batch, device, "Ethernet1")
            recorded.append((device, int(row["pfc_tx_pause"]), int(row["pfc_rx_pause"]), int(row["ecn_marked"])))
            reference = snmpget(agent, *((*COLUMNS[name], 7) for name in columns))
            assert reference is not None and [int(value) for value in reference] == (
                [cisco_tx, cisco_rx] if device == "leaf2" else [ieee_tx, ieee_rx])
    assert recorded == [("leaf2", 2**40 + 5, 123_456, 0), ("leaf3", TWO_32 - 10, 77, 0),
                        ("leaf2", 2**40 + 905, 123_457, 0), ("leaf3", TWO_32 + 20, 78, 0)]
    assert poller.counts()["errors"] == 0


class Corrupter:
    """Answers each request with garbage made from snmpd's real answer to it (the request is relayed to the
    real agent first): random bytes, the answer truncated, or the answer to the previous request (stale)."""

    def __init__(self, agent: str, mode: str) -> None:
        self.agent = (agent.split(":")[0], int(agent.split(":")[1]))
        self.mode = mode
        self.answered = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        previous: bytes | None = None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as relay:
            relay.settimeout(2)
            while True:
                try:
                    request, peer = self.sock.recvfrom(65535)
                    relay.sendto(request, self.agent)
                    real = relay.recv(65535)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if self.mode == "random":
                    answer: bytes | None = random.randbytes(random.randrange(1, 200))
                elif self.mode == "truncated":
                    answer = real[: random.randrange(1, len(real))]
                else:
                    answer, previous = previous, real
                if answer is not None:
                    self.sock.sendto(answer, peer)
                    self.answered += 1

    def close(self) -> None:
        self.sock.close()


def test_garbage_answers_are_counted_and_the_good_target_still_polled(leaf: Leaf, snmpd: Any,
                                                                      topology: Topology) -> None:
    agent = snmpd(SNMPD_PORT)
    host, port = agent.split(":")
    corrupters = {mode: Corrupter(agent, mode) for mode in ("random", "truncated", "stale")}
    try:
        targets = [SnmpTarget("leaf1", host, int(port))] + [
            SnmpTarget(f"bad-{mode}", "127.0.0.1", corrupter.port, timeout_s=0.5, retries=1)
            for mode, corrupter in corrupters.items()]
        poller = SnmpPoller(topology, targets)
        cycles = [poll(poller) for _cycle in range(3)]
    finally:
        for corrupter in corrupters.values():
            corrupter.close()
    for batch in cycles:  # the good target's row every cycle, the bad ones never raise
        assert list(batch["ifname"]) == ["Ethernet49"] and list(batch["device"]) == ["leaf1"]
    counts = poller.counts()
    assert counts["polls"] == 4 + 4 + 1  # in cycle 3 the three failing targets back off
    assert poller.errors_by_target == {("bad-random", "malformed"): 2, ("bad-truncated", "malformed"): 2,
                                       ("bad-stale", "timeout"): 2}
    assert counts["errors"] == 6 and counts["timeouts"] == 2
    assert corrupters["stale"].answered > 0  # answers to an earlier request id were waited past, not taken
    assert counts["malformed"] == corrupters["random"].answered + corrupters["truncated"].answered
