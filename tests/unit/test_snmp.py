"""SNMP poller against an in-process v2c agent (a UDP socket answering GETBULK from a table): the walk,
the 64-bit/32-bit choice, 32-bit wrap extension and resets, backoff, and SnmpSource's steps."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1905

from collectors.snmp import (
    COLUMNS,
    SYS_UPTIME,
    TWO_32,
    Counter32Extender,
    SnmpConfig,
    SnmpPoller,
    SnmpSource,
    SnmpTarget,
)
from pipeline import records
from pipeline.topology import Topology, load_topology

V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
TOPOLOGY = """\
fabric: lab
spines: [spine1]
leaves:
  leaf1: {hosts: ["10.0.1.0/24"]}
  leaf2: {hosts: ["10.0.2.0/24"]}
counters:
  - {device: leaf1, ifname: Ethernet49, link: leaf1-spine1}
  - {device: leaf2, ifname: Ethernet49, link: leaf2-spine1}
"""

Table = dict[tuple[int, ...], Any]


class FakeAgent:
    """A v2c agent on 127.0.0.1 serving `table` ({OID: value}) to GETBULK; `max_varbinds` truncates answers
    the way a real agent does when the message would be too big."""

    def __init__(self, table: Table, *, max_varbinds: int = 1000,
                 mangle: Callable[[bytes], bytes] | None = None) -> None:
        self.table = table
        self.max_varbinds = max_varbinds
        self.mangle = mangle
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _next(self, oid: tuple[int, ...]) -> tuple[tuple[int, ...], Any]:
        later = [key for key in self.table if key > oid]
        if not later:
            return oid, rfc1905.endOfMibView
        found = min(later)
        return found, self.table[found]

    def _serve(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.requests += 1
            message, _ = decoder.decode(data, asn1Spec=V2C.Message())
            request = V2C.apiMessage.get_pdu(message)
            oids = [tuple(oid) for oid, _ in V2C.apiPDU.get_varbinds(request)]
            non_repeaters = int(V2C.apiBulkPDU.get_non_repeaters(request))
            repetitions = int(V2C.apiBulkPDU.get_max_repetitions(request))
            answers = [self._next(oid) for oid in oids[:non_repeaters]]
            cursors = oids[non_repeaters:]
            for _ in range(repetitions):
                row = [self._next(oid) for oid in cursors]
                answers.extend(row)
                cursors = [oid for oid, _ in row]
            response = V2C.apiPDU.get_response(request)
            V2C.apiPDU.set_varbinds(response, [(V2C.ObjectIdentifier(oid), value)
                                               for oid, value in answers[: self.max_varbinds]])
            reply = V2C.apiMessage.get_response(message)
            V2C.apiMessage.set_pdu(reply, response)
            answer = encoder.encode(reply)
            try:
                self.sock.sendto(self.mangle(answer) if self.mangle else answer, peer)
            except OSError:  # closed by the test meanwhile
                return

    def close(self) -> None:
        self.sock.close()


def counter32(value: int) -> Any:
    return V2C.Counter32(value)


def interface(index: int, name: str, *, hc: bool = True, octets: int = 0, pkts: int = 0, errors: int = 0) -> Table:
    """One interface's rows: 64-bit counters when `hc`, else only the 32-bit ones (an old agent)."""
    rows: Table = {
        (*COLUMNS["ifOperStatus"], index): V2C.Integer(1),
        (*COLUMNS["ifName"], index): V2C.OctetString(name),
        (*COLUMNS["ifInErrors"], index): counter32(errors),
        (*COLUMNS["ifOutErrors"], index): counter32(0),
        (*COLUMNS["ifInDiscards"], index): counter32(0),
        (*COLUMNS["ifOutDiscards"], index): counter32(0),
    }
    if hc:
        rows[(*COLUMNS["ifHighSpeed"], index)] = V2C.Gauge32(400_000)
        for column in ("ifHCInOctets", "ifHCOutOctets"):
            rows[(*COLUMNS[column], index)] = V2C.Counter64(octets)
        for column in ("ifHCInUcastPkts", "ifHCInMulticastPkts", "ifHCInBroadcastPkts", "ifHCOutUcastPkts"):
            rows[(*COLUMNS[column], index)] = V2C.Counter64(pkts)
    else:
        rows[(*COLUMNS["ifSpeed"], index)] = V2C.Gauge32(100_000_000)
        for column in ("ifInOctets", "ifOutOctets"):
            rows[(*COLUMNS[column], index)] = counter32(octets)
        rows[(*COLUMNS["ifInUcastPkts"], index)] = counter32(pkts)
        rows[(*COLUMNS["ifInNUcastPkts"], index)] = counter32(1)
    return rows


def uptime(ticks: int) -> Table:
    return {(*SYS_UPTIME, 0): V2C.TimeTicks(ticks)}


@pytest.fixture
def agents() -> Iterator[list[FakeAgent]]:
    started: list[FakeAgent] = []
    yield started
    for agent in started:
        agent.close()


def start(agents: list[FakeAgent], table: Table, **options: Any) -> FakeAgent:
    agent = FakeAgent(table, **options)
    agents.append(agent)
    return agent


def rows_of(batch: dict[str, Any]) -> list[dict[str, Any]]:
    return [{name: batch[name][i] for name in batch} for i in range(len(batch["ts"]))]


def test_extender_wraps_and_resets() -> None:
    extender = Counter32Extender()
    key = ("leaf1", 3, "ifInOctets")
    assert extender.extend(key, TWO_32 - 100) == TWO_32 - 100
    assert extender.extend(key, 50) == TWO_32 + 50  # wrapped: +150
    assert extender.extend(key, 2**31 + 50) == TWO_32 + 2**31 + 50
    assert extender.extend(key, 1000) == 1000  # as a wrap this would be +2^31 + 950, over half the range: reset
    assert extender.extend(("leaf1", 4, "ifInOctets"), 7) == 7  # other interfaces keep their own state
    extender.extend(key, TWO_32 - 10)
    assert not extender.restart_check("leaf1", 5000)
    assert not extender.restart_check("leaf1", 6000)
    assert extender.restart_check("leaf1", 100)  # sysUpTime went back: the agent restarted
    assert extender.extend(key, 20) == 20  # a wrap would explain +30, but the agent restarted: reset


def test_walk_prefers_64_bit_and_maps_links(topology: Topology, agents: list[FakeAgent]) -> None:
    table = {**uptime(100), **interface(1, "lo", octets=5), **interface(49, "Ethernet49", octets=2**64 - 5, pkts=7)}
    table[(*COLUMNS["ifOutErrors"][:-1], 22, 1)] = V2C.ObjectIdentifier((0, 0))  # ifSpecific: where a walk ends
    agent = start(agents, table, max_varbinds=23)  # answers cut mid-row: the walk resumes each column
    poller = SnmpPoller(topology, [SnmpTarget("leaf1", "127.0.0.1", agent.port, max_repetitions=3)])
    batch = asyncio.run(poller.poll())
    assert set(batch) == {column.name for column in records.COUNTERS}
    (row,) = rows_of(batch)  # lo is not a fabric link
    assert (row["device"], row["ifname"], row["link"], row["source"]) == ("leaf1", "Ethernet49", "leaf1-spine1", "snmp")
    assert row["in_octets"] == row["out_octets"] == 2**64 - 5  # 64-bit values pass raw
    assert row["in_pkts"] == 21 and row["out_pkts"] == 7
    assert row["speed_bps"] == 400_000_000_000 and row["oper_up"] == 1
    assert agent.requests > 2
    assert poller.counts() == {"polls": 1, "rows": 1, "errors": 0, "timeouts": 0, "malformed": 0}
    everything = SnmpPoller(topology, [SnmpTarget("leaf1", "127.0.0.1", agent.port)], all_interfaces=True)
    assert [(r["ifname"], r["link"]) for r in rows_of(asyncio.run(everything.poll()))] == [
        ("lo", ""), ("Ethernet49", "leaf1-spine1")]


def test_32_bit_agent_is_extended_across_wraps(topology: Topology, agents: list[FakeAgent]) -> None:
    agent = start(agents, {**uptime(100), **interface(49, "Ethernet49", hc=False, octets=TWO_32 - 1000,
                                                      pkts=10, errors=TWO_32 - 1)})
    poller = SnmpPoller(topology, [SnmpTarget("leaf1", "127.0.0.1", agent.port)])
    first = rows_of(asyncio.run(poller.poll()))[0]
    assert first["in_octets"] == TWO_32 - 1000 and first["speed_bps"] == 100_000_000
    assert first["in_pkts"] == 11  # ucast + the deprecated ifInNUcastPkts when no ifX 32-bit multicast/broadcast
    agent.table.update({**uptime(1100), **interface(49, "Ethernet49", hc=False, octets=3000, pkts=10, errors=4)})
    second = rows_of(asyncio.run(poller.poll()))[0]
    assert second["in_octets"] == TWO_32 + 3000 and second["in_errors"] == TWO_32 + 4
    agent.table.update({**uptime(50), **interface(49, "Ethernet49", hc=False, octets=5000, pkts=1)})
    third = rows_of(asyncio.run(poller.poll()))[0]
    assert third["in_octets"] == 5000 and third["in_pkts"] == 2  # restarted agent: reset, reported raw


def test_wrong_value_types_are_malformed_not_raised(topology: Topology, agents: list[FakeAgent]) -> None:
    table = interface(49, "Ethernet49")
    table[(*COLUMNS["ifHCInOctets"], 49)] = V2C.OctetString("lots")
    agent = start(agents, table)
    poller = SnmpPoller(topology, [SnmpTarget("leaf1", "127.0.0.1", agent.port)])
    assert len(asyncio.run(poller.poll())["ts"]) == 0
    assert poller.counts()["malformed"] == 1 and poller.errors_by_target == {("leaf1", "malformed"): 1}


def test_silent_target_times_out_and_backs_off(topology: Topology, agents: list[FakeAgent]) -> None:
    good = start(agents, interface(49, "Ethernet49", octets=9))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        targets = [SnmpTarget("leaf1", "127.0.0.1", good.port),
                   SnmpTarget("leaf2", "127.0.0.1", silent.getsockname()[1], timeout_s=0.1, retries=1)]
        poller = SnmpPoller(topology, targets)
        polled = []
        for _cycle in range(8):
            before = poller.counts()["polls"]
            assert len(asyncio.run(poller.poll())["ts"]) == 1  # the good target's row every cycle
            polled.append(poller.counts()["polls"] - before)
    assert polled == [2, 2, 1, 2, 1, 1, 1, 2]  # the silent one: next interval, then after 2, then 4
    assert poller.errors_by_target == {("leaf2", "timeout"): 4}
    assert poller.counts()["timeouts"] == poller.counts()["errors"] == 4


def test_source_steps_poll_every_interval_and_stop(topology: Topology, agents: list[FakeAgent]) -> None:
    agent = start(agents, interface(49, "Ethernet49", octets=9))
    source = SnmpSource(topology, SnmpConfig(targets=(SnmpTarget("leaf1", "127.0.0.1", agent.port),), interval=0.2,
                                         tick_s=0.05))
    stop = threading.Event()
    batches = []
    empty = 0
    for step in source.steps(stop):
        if step:
            ((table, batch),) = step
            assert table == "counters"
            batches.append(batch)
        else:
            empty += 1
        if len(batches) == 3:
            stop.set()
    assert len(batches) == 3 and empty > 0
    assert source.name == "snmp" and source.counts()["polls"] == 3 and source.counts()["rows"] == 3


@settings(max_examples=100, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 255)), min_size=1, max_size=4),
       cut=st.none() | st.integers(0, 10_000))
def test_damaged_answers_are_counted_never_raised(flips: list[tuple[int, int]], cut: int | None) -> None:
    """Real answers with bytes flipped or cut: the poll ends, never raises, and a failure has a reason of
    its own (no 'internal' catch-all). A flip that still decodes may rename the interface or move an OID
    out of its column (the column then reads as ended), so rows are not promised."""

    def mangle(answer: bytes) -> bytes:
        damaged = bytearray(answer)
        for position, mask in flips:
            damaged[position % len(damaged)] ^= mask
        return bytes(damaged[:cut] if cut is not None else damaged)

    agent = FakeAgent({**uptime(100), **interface(49, "Ethernet49", octets=5)}, mangle=mangle)
    try:
        topology = load_topology(Path(__file__).parents[2] / "samples" / "topology.yaml")
        poller = SnmpPoller(topology, [SnmpTarget("leaf1", "127.0.0.1", agent.port, timeout_s=0.05, retries=0)],
                            all_interfaces=True)
        batch = asyncio.run(poller.poll())
    finally:
        agent.close()
    counts = poller.counts()
    assert counts["polls"] == 1 and counts["errors"] <= 1
    assert set(batch) == {column.name for column in records.COUNTERS}
    assert all(not reason.startswith("internal") for _device, reason in poller.errors_by_target)


def test_source_stops_in_the_middle_of_a_poll(topology: Topology) -> None:
    """A poll waiting on a silent agent (here up to 40 s) is abandoned at stop, not waited out or counted."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        target = SnmpTarget("leaf1", "127.0.0.1", silent.getsockname()[1], timeout_s=10, retries=3)
        source = SnmpSource(topology, SnmpConfig(targets=(target,), interval=60, tick_s=0.05))
        stop = threading.Event()
        steps = list(_until_stopped(source, stop, after=3))
    assert steps == [[], [], []]
    assert source.counts()["polls"] == 1 and source.counts()["errors"] == 0


def _until_stopped(source: SnmpSource, stop: threading.Event, *, after: int) -> Iterator[Any]:
    for count, step in enumerate(source.steps(stop), start=1):
        yield step
        if count == after:
            stop.set()
