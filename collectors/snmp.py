"""Switch interface counters polled over SNMPv2c (IF-MIB ifTable + ifXTable, and the PFC counters of
CISCO-PFC-EXT-MIB or IEEE8021-PFC-MIB) as `counters` batches.

Each poll walks the interface columns of every target at once with GETBULK, all targets concurrently.
pysnmp's message codec builds and parses the messages, but the datagrams go through our own asyncio
endpoint: pysnmp's engine silently drops an answer it cannot decode, and the poller has to count, per
target, what answered garbage and what did not answer at all.

Counters are cumulative, as the contract says. 64-bit ifHC* values pass through raw (a 2^64 wrap is for
pipeline.detect.link_health to see); 32-bit ones (devices without ifHC*, and ifIn/OutErrors/Discards,
which IF-MIB only has in 32 bits) are extended here to a 64-bit count that keeps growing across wraps,
so a 10 s poll of a fast port never reads as a reset downstream.

PFC frames per interface come from CISCO-PFC-EXT-MIB's cpfcIfTable (Counter64; what SONiC's agent serves,
also Cisco NX-OS) or else IEEE8021-PFC-MIB's ieee8021PfcIfTable (Counter32, extended like the others); both
are indexed by ifIndex. A "request" is a PFC frame the port sent, an "indication" one it received (IEEE
802.1Qbb's M_CONTROL.request and .indication). No common MIB counts ECN marks: `ecn_marked` stays 0 over
SNMP (gNMI has it).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.proto import api, rfc1905

from pipeline import records
from pipeline.errors import SourceError
from pipeline.settings import IN_CODE, Origin
from pipeline.source import Columns, Step
from pipeline.topology import Topology

Oid = tuple[int, ...]

_IF_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 2, 2, 1)
_IFX_ENTRY: Oid = (1, 3, 6, 1, 2, 1, 31, 1, 1, 1)
_CPFC_IF_ENTRY: Oid = (1, 3, 6, 1, 4, 1, 9, 9, 813, 1, 1, 1)  # CISCO-PFC-EXT-MIB cpfcIfEntry
_IEEE8021_PFC_IF_ENTRY: Oid = (1, 3, 111, 2, 802, 1, 1, 21, 1, 1, 1)  # IEEE8021-PFC-MIB ieee8021PfcIfEntry
SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3)

# IF-MIB column names (RFC 2863) → OID; the spec's names, so a packet capture reads the same.
COLUMNS: dict[str, Oid] = {
    "ifDescr": (*_IF_ENTRY, 2),
    "ifSpeed": (*_IF_ENTRY, 5),
    "ifOperStatus": (*_IF_ENTRY, 8),
    "ifInOctets": (*_IF_ENTRY, 10),
    "ifInUcastPkts": (*_IF_ENTRY, 11),
    "ifInNUcastPkts": (*_IF_ENTRY, 12),
    "ifInDiscards": (*_IF_ENTRY, 13),
    "ifInErrors": (*_IF_ENTRY, 14),
    "ifOutOctets": (*_IF_ENTRY, 16),
    "ifOutUcastPkts": (*_IF_ENTRY, 17),
    "ifOutNUcastPkts": (*_IF_ENTRY, 18),
    "ifOutDiscards": (*_IF_ENTRY, 19),
    "ifOutErrors": (*_IF_ENTRY, 20),
    "ifName": (*_IFX_ENTRY, 1),
    "ifInMulticastPkts": (*_IFX_ENTRY, 2),
    "ifInBroadcastPkts": (*_IFX_ENTRY, 3),
    "ifOutMulticastPkts": (*_IFX_ENTRY, 4),
    "ifOutBroadcastPkts": (*_IFX_ENTRY, 5),
    "ifHCInOctets": (*_IFX_ENTRY, 6),
    "ifHCInUcastPkts": (*_IFX_ENTRY, 7),
    "ifHCInMulticastPkts": (*_IFX_ENTRY, 8),
    "ifHCInBroadcastPkts": (*_IFX_ENTRY, 9),
    "ifHCOutOctets": (*_IFX_ENTRY, 10),
    "ifHCOutUcastPkts": (*_IFX_ENTRY, 11),
    "ifHCOutMulticastPkts": (*_IFX_ENTRY, 12),
    "ifHCOutBroadcastPkts": (*_IFX_ENTRY, 13),
    "ifHighSpeed": (*_IFX_ENTRY, 15),
    "cpfcIfRequests": (*_CPFC_IF_ENTRY, 1),
    "cpfcIfIndications": (*_CPFC_IF_ENTRY, 2),
    "ieee8021PfcRequests": (*_IEEE8021_PFC_IF_ENTRY, 2),
    "ieee8021PfcIndications": (*_IEEE8021_PFC_IF_ENTRY, 3),
}
# 64-bit column → its 32-bit counterpart, read only when the device lacks the first.
HC_FALLBACK: dict[str, str] = {
    "ifHCInOctets": "ifInOctets",
    "ifHCInUcastPkts": "ifInUcastPkts",
    "ifHCInMulticastPkts": "ifInMulticastPkts",
    "ifHCInBroadcastPkts": "ifInBroadcastPkts",
    "ifHCOutOctets": "ifOutOctets",
    "ifHCOutUcastPkts": "ifOutUcastPkts",
    "ifHCOutMulticastPkts": "ifOutMulticastPkts",
    "ifHCOutBroadcastPkts": "ifOutBroadcastPkts",
}
ERROR_COLUMNS: dict[str, str] = {
    "in_errors": "ifInErrors",
    "out_errors": "ifOutErrors",
    "in_discards": "ifInDiscards",
    "out_discards": "ifOutDiscards",
}
# counters column → (64-bit column, 32-bit column read when the device lacks the first)
PFC_COLUMNS: dict[str, tuple[str, str]] = {
    "pfc_tx_pause": ("cpfcIfRequests", "ieee8021PfcRequests"),
    "pfc_rx_pause": ("cpfcIfIndications", "ieee8021PfcIndications"),
}
PFC_WALK = tuple(column for pair in PFC_COLUMNS.values() for column in pair)
MAIN_WALK = ("ifName", "ifOperStatus", "ifHighSpeed", *HC_FALLBACK, *ERROR_COLUMNS.values(), *PFC_WALK)
FALLBACK_WALK = ("ifDescr", "ifSpeed", *HC_FALLBACK.values(), "ifInNUcastPkts", "ifOutNUcastPkts")

OPER_UP = 1
TWO_32 = 2**32
WRAP_LIMIT = 2**31  # a 32-bit drop is a wrap only if the wrapped increase is at most half the range
MAX_WALK_REQUESTS = 1000  # a walk that has not ended after this many GETBULKs is an agent looping
MAX_BACKOFF_CYCLES = 8  # a failing target is retried every 1, 2, 4, then at most 8 poll intervals
DEFAULT_INTERVAL_S = 10.0
DEFAULT_TICK_S = 0.5
DEFAULT_PORT = 161
DEFAULT_COMMUNITY = "public"

_V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


@dataclass(frozen=True)
class SnmpTarget:
    """One switch's SNMP agent. Only SNMPv2c: v1 has no GETBULK and no Counter64."""

    device: str
    host: str
    port: int = DEFAULT_PORT
    community: str = DEFAULT_COMMUNITY
    version: str = "2c"
    timeout_s: float = 1.0
    retries: int = 1
    max_repetitions: int = 10

    def __post_init__(self) -> None:
        if self.version != "2c":
            raise ValueError(f"snmp target {self.device}: version {self.version!r} is not supported, only 2c")


class PollFailed(SourceError):
    """A target's poll gave nothing usable; `reason` is the label its error count is kept under. The next
    poll may succeed, so it is retriable."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason, retriable=True)
        self.reason = reason


class BadAnswer(PollFailed):
    """The agent answered something that is not a usable v2c response (counted as malformed)."""

    def __init__(self, detail: str) -> None:
        super().__init__("malformed", detail)


class _Endpoint(asyncio.DatagramProtocol):
    """Datagrams from one agent (the socket is connected, so the kernel drops anyone else's)."""

    def __init__(self) -> None:
        self.datagrams: asyncio.Queue[bytes] = asyncio.Queue()
        self.refused: OSError | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, OSError):
            self.refused = exc


class _Session:
    """Request/response exchanges with one agent for one poll; counts the datagrams it could not decode."""

    def __init__(self, target: SnmpTarget, transport: asyncio.DatagramTransport, endpoint: _Endpoint) -> None:
        self.target = target
        self.transport = transport
        self.endpoint = endpoint
        self.malformed = 0

    async def request(self, oids: Sequence[Oid], non_repeaters: int) -> list[tuple[Oid, Any]]:
        """One GETBULK, retried on timeout. A datagram that does not decode is counted and waited past (the
        real answer may still come); one answering an earlier request id is a late duplicate, ignored."""
        loop = asyncio.get_running_loop()
        for _attempt in range(self.target.retries + 1):
            request_id = random.randrange(1, 2**31)
            self.transport.sendto(_getbulk(self.target.community, request_id, oids, non_repeaters,
                                           self.target.max_repetitions))
            deadline = loop.time() + self.target.timeout_s
            while (remaining := deadline - loop.time()) > 0:
                try:
                    data = await asyncio.wait_for(self.endpoint.datagrams.get(), remaining)
                except TimeoutError:
                    break
                try:
                    answer_id, status, varbinds = _response(data)
                except BadAnswer:
                    self.malformed += 1
                    continue
                if answer_id != request_id:
                    continue
                if status:
                    raise PollFailed("agent-error", f"error-status {status}")
                return varbinds
        if self.endpoint.refused is not None:
            raise PollFailed("unreachable", str(self.endpoint.refused))
        raise PollFailed("malformed" if self.malformed else "timeout")

    async def walk(self, names: Sequence[str], scalars: Sequence[Oid] = ()) -> tuple[dict[str, dict[int, Any]],
                                                                                     dict[Oid, Any]]:
        """The named IF-MIB columns by ifIndex, walked together (one GETBULK carries every column still
        going), and the GETNEXT of each of `scalars` (e.g. sysUpTime → sysUpTime.0) in the first request."""
        table: dict[str, dict[int, Any]] = {name: {} for name in names}
        cursors = {name: COLUMNS[name] for name in names}
        active = list(names)
        scalar_values: dict[Oid, Any] = {}
        pending_scalars = list(scalars)
        for _request in range(MAX_WALK_REQUESTS):
            if not active:
                return table, scalar_values
            varbinds = await self.request([*pending_scalars, *(cursors[n] for n in active)], len(pending_scalars))
            if len(varbinds) < len(pending_scalars) + 1:
                raise BadAnswer(f"GETBULK answered {len(varbinds)} varbinds")
            for scalar, (oid, value) in zip(pending_scalars, varbinds, strict=False):
                if oid[: len(scalar)] == scalar:
                    scalar_values[scalar] = value
            repeated = varbinds[len(pending_scalars):]
            pending_scalars = []
            going = list(active)
            for position, (oid, value) in enumerate(repeated):
                name = active[position % len(active)]
                column = COLUMNS[name]
                if name not in going:
                    continue
                if value is _END or oid[: len(column)] != column:
                    going.remove(name)
                    continue
                if oid <= cursors[name] or len(oid) != len(column) + 1:
                    raise BadAnswer(f"{name} walk went to {'.'.join(map(str, oid))}")
                table[name][oid[-1]] = value
                cursors[name] = oid
            active = going
        raise BadAnswer(f"walk did not end after {MAX_WALK_REQUESTS} requests")


_END = object()  # endOfMibView / noSuchObject / noSuchInstance: the column (or MIB) ends here


def _getbulk(community: str, request_id: int, oids: Sequence[Oid], non_repeaters: int, repetitions: int) -> bytes:
    pdu = _V2C.GetBulkRequestPDU()
    _V2C.apiBulkPDU.set_defaults(pdu)
    _V2C.apiBulkPDU.set_request_id(pdu, request_id)
    _V2C.apiBulkPDU.set_non_repeaters(pdu, non_repeaters)
    _V2C.apiBulkPDU.set_max_repetitions(pdu, repetitions)
    _V2C.apiBulkPDU.set_varbinds(pdu, [(_V2C.ObjectIdentifier(oid), _V2C.null) for oid in oids])
    message = _V2C.Message()
    _V2C.apiMessage.set_defaults(message)
    _V2C.apiMessage.set_community(message, community)
    _V2C.apiMessage.set_pdu(message, pdu)
    return bytes(encoder.encode(message))


def _response(data: bytes) -> tuple[int, int, list[tuple[Oid, Any]]]:
    """(request-id, error-status, varbinds as (OID, int | str | _END)) of a v2c Response, else BadAnswer."""
    try:
        message, rest = decoder.decode(data, asn1Spec=_V2C.Message())
        pdu = _V2C.apiMessage.get_pdu(message)
        if rest or int(_V2C.apiMessage.get_version(message)) != api.SNMP_VERSION_2C:
            raise BadAnswer("trailing bytes or not SNMPv2c")
        if not isinstance(pdu, rfc1905.ResponsePDU):
            raise BadAnswer(f"not a Response PDU: {type(pdu).__name__}")
        varbinds = [(tuple(oid), _value(value)) for oid, value in _V2C.apiPDU.get_varbinds(pdu)]
        return int(_V2C.apiPDU.get_request_id(pdu)), int(_V2C.apiPDU.get_error_status(pdu)), varbinds
    except (PyAsn1Error, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise BadAnswer(str(exc)) from exc


def _value(value: Any) -> Any:
    """int for the integer types (counters, gauges, timeticks), str for octet strings, _END at an end of the
    view; anything else (an OID-valued column a walk ran into past its own) as its text."""
    if isinstance(value, rfc1905.EndOfMibView | rfc1905.NoSuchObject | rfc1905.NoSuchInstance):
        return _END
    if isinstance(value, univ.Integer):
        return int(value)
    if isinstance(value, univ.OctetString):
        return value.asOctets().decode("utf-8", errors="replace")
    return value.prettyPrint()


class Counter32Extender:
    """32-bit counters made monotonic 64-bit counts, per (device, ifIndex, column) across polls.

    A drop is a wrap when the wrapped increase is at most half the 32-bit range; a bigger drop, or the
    device's sysUpTime going back (the agent restarted), is a reset, reported as the new raw value (what
    the counter gathered since the restart), as pipeline.detect.link_health expects of a reset.
    """

    def __init__(self) -> None:
        self._last: dict[tuple[str, int, str], tuple[int, int]] = {}
        self._uptime: dict[str, int] = {}

    def restart_check(self, device: str, uptime: int | None) -> bool:
        """Forget the device's counters when its sysUpTime went back; True if it did."""
        if uptime is None:
            return False
        before = self._uptime.get(device)
        self._uptime[device] = uptime
        if before is None or uptime >= before:
            return False
        for key in [key for key in self._last if key[0] == device]:
            del self._last[key]
        return True

    def extend(self, key: tuple[str, int, str], raw: int) -> int:
        last = self._last.get(key)
        if last is None:
            total = raw
        else:
            last_raw, last_total = last
            if raw >= last_raw:
                total = last_total + raw - last_raw
            elif raw + TWO_32 - last_raw <= WRAP_LIMIT:
                total = last_total + raw + TWO_32 - last_raw
            else:
                total = raw
        self._last[key] = (raw, total)
        return total


def counters_batch(rows: Sequence[Mapping[str, Any]]) -> Columns:
    """`counters` columns (records.COUNTERS dtypes) from row dicts with `ts` in epoch microseconds."""
    batch: Columns = {}
    for column in records.COUNTERS:
        values = [row[column.name] for row in rows]
        if column.numpy == "datetime64[us]":
            batch[column.name] = np.array(values, dtype=np.int64).astype("datetime64[us]")
        else:
            batch[column.name] = np.array(values, dtype=column.numpy)
    return batch


@dataclass
class _TargetState:
    target: SnmpTarget
    failures: int = 0
    skip: int = 0  # poll cycles still to skip (backoff after failures)


class SnmpPoller:
    """Polls every due target once per `poll()`; failures are counted, never raised, and back off.

    A row's `ts` is when its target's poll started. Only interfaces the topology's `counters:` entries map
    are kept, unless `all_interfaces` (then unmapped ones come with link '').
    """

    def __init__(self, topology: Topology, targets: Sequence[SnmpTarget], *, all_interfaces: bool = False) -> None:
        self.topology = topology
        self.all_interfaces = all_interfaces
        self.extender = Counter32Extender()
        self._targets = [_TargetState(target) for target in targets]
        self.totals: Counter[str] = Counter(polls=0, rows=0, errors=0, timeouts=0, malformed=0)
        self.errors_by_target: Counter[tuple[str, str]] = Counter()  # (device, reason) → failed polls

    async def poll(self) -> Columns:
        """One cycle: every target not backing off, concurrently; rows of those that answered."""
        due = []
        for state in self._targets:
            if state.skip:
                state.skip -= 1
            else:
                due.append(state)
        results = await asyncio.gather(*(self._poll_counted(state) for state in due))
        rows = [row for result in results for row in result]
        self.totals["rows"] += len(rows)
        return counters_batch(rows)

    async def _poll_counted(self, state: _TargetState) -> list[dict[str, Any]]:
        self.totals["polls"] += 1
        try:
            rows = await self._poll_target(state.target)
        except BadAnswer:
            self.totals["malformed"] += 1
            self._failed(state, "malformed")
            return []
        except PollFailed as failed:
            self._failed(state, failed.reason)
            return []
        except OSError as exc:
            self._failed(state, f"os-error {exc.errno}")
            return []
        except Exception as exc:  # one target's surprise must not stop the other targets' polls
            self._failed(state, f"internal {type(exc).__name__}")
            return []
        state.failures = 0
        return rows

    def _failed(self, state: _TargetState, reason: str) -> None:
        self.totals["errors"] += 1
        if reason == "timeout":
            self.totals["timeouts"] += 1
        self.errors_by_target[(state.target.device, reason)] += 1
        state.failures += 1
        state.skip = min(2 ** (state.failures - 1), MAX_BACKOFF_CYCLES) - 1

    async def _poll_target(self, target: SnmpTarget) -> list[dict[str, Any]]:
        ts_us = time.time_ns() // 1000
        loop = asyncio.get_running_loop()
        transport, endpoint = await loop.create_datagram_endpoint(_Endpoint, remote_addr=(target.host, target.port))
        session = _Session(target, transport, endpoint)
        try:
            table, scalars = await session.walk(MAIN_WALK, (SYS_UPTIME,))
            if _needs_fallback(table):
                fallback, _ = await session.walk(FALLBACK_WALK)
                table.update(fallback)
        finally:
            transport.close()
            self.totals["malformed"] += session.malformed
        uptime = scalars.get(SYS_UPTIME)
        self.extender.restart_check(target.device, uptime if isinstance(uptime, int) else None)
        return self._rows(target.device, ts_us, table)

    def _rows(self, device: str, ts_us: int, table: dict[str, dict[int, Any]]) -> list[dict[str, Any]]:
        rows = []
        for index in sorted(set(table["ifOperStatus"]) | set(table["ifName"])):
            name = table["ifName"].get(index) or table.get("ifDescr", {}).get(index)
            if not isinstance(name, str) or not name:
                continue
            link = self.topology.link_for_counter(device, name)
            if link is None and not self.all_interfaces:
                continue
            counter = _Reader(self.extender, device, index, table)
            rows.append({
                "ts": ts_us, "device": device, "ifname": name, "link": link or "",
                "oper_up": int(counter.integer("ifOperStatus") == OPER_UP),
                "speed_bps": counter.speed_bps(),
                "in_octets": counter.wide("ifHCInOctets"),
                "out_octets": counter.wide("ifHCOutOctets"),
                "in_pkts": counter.packets("In"),
                "out_pkts": counter.packets("Out"),
                **{field_name: counter.extended(column) for field_name, column in ERROR_COLUMNS.items()},
                **{field_name: counter.either(*pair) for field_name, pair in PFC_COLUMNS.items()},
                "fcs_errors": 0, "ecn_marked": 0, "source": "snmp",
            })
        return rows

    def counts(self) -> dict[str, int]:
        return dict(self.totals)


def _needs_fallback(table: dict[str, dict[int, Any]]) -> bool:
    """Whether some interface lacks ifName, ifHighSpeed or a 64-bit counter (then walk the 32-bit columns)."""
    indexes = set(table["ifOperStatus"]) | set(table["ifName"])
    return any(
        index not in table[name] for index in indexes for name in ("ifName", "ifHighSpeed", *HC_FALLBACK)
    ) or any(not table["ifName"].get(index) for index in indexes)


@dataclass
class _Reader:
    """One interface's values from a walked table; what a column lacks is 0 (the agent does not count it)."""

    extender: Counter32Extender
    device: str
    index: int
    table: dict[str, dict[int, Any]]

    def integer(self, name: str) -> int | None:
        value = self.table.get(name, {}).get(self.index)
        if value is None:
            return None
        if not isinstance(value, int) or value < 0:
            raise BadAnswer(f"{name}.{self.index} is {value!r}, not a counter")
        return value

    def extended(self, name: str) -> int:
        raw = self.integer(name)
        return 0 if raw is None else self.extender.extend((self.device, self.index, name), raw)

    def wide(self, name: str) -> int:
        """The 64-bit column raw, else its 32-bit counterpart extended."""
        raw = self.integer(name)
        return self.extended(HC_FALLBACK[name]) if raw is None else raw

    def either(self, wide: str, narrow: str) -> int:
        """The 64-bit column raw, else the 32-bit one extended, else 0."""
        raw = self.integer(wide)
        return self.extended(narrow) if raw is None else raw

    def packets(self, direction: str) -> int:
        total = sum(self.wide(f"ifHC{direction}{kind}Pkts") for kind in ("Ucast", "Multicast", "Broadcast"))
        if self.integer(f"ifHC{direction}UcastPkts") is None and all(
            self.integer(f"if{direction}{kind}Pkts") is None for kind in ("Multicast", "Broadcast")
        ):
            total += self.extended(f"if{direction}NUcastPkts")
        return total

    def speed_bps(self) -> int:
        high = self.integer("ifHighSpeed")
        if high:
            return high * 1_000_000
        return self.integer("ifSpeed") or 0


@dataclass(frozen=True, kw_only=True)
class SnmpConfig:
    """The `snmp` command's settings (config section `snmp:`): the agents, the community of the targets
    that name none, and the polling period."""

    targets: tuple[SnmpTarget, ...] = ()
    community: str = DEFAULT_COMMUNITY
    interval: float = DEFAULT_INTERVAL_S
    all_interfaces: bool = False
    tick_s: float = DEFAULT_TICK_S

    def validate(self, origin: Origin = IN_CODE) -> None:
        if not self.targets:
            raise origin.error("targets", "at least one DEVICE=HOST[:PORT] (or snmp.targets in --config)")
        if self.interval <= 0:
            raise origin.error("interval", "must be positive")
        if self.tick_s <= 0:
            raise origin.error("tick_s", "must be positive")


class SnmpSource:
    """pipeline.source.Source over SnmpPoller: a poll every `config.interval` seconds, a step at least every
    `tick_s`. Sockets open when `steps` runs (a poll's transport), never in the constructor."""

    name = "snmp"

    def __init__(self, topology: Topology, config: SnmpConfig) -> None:
        self.config = config
        self.poller = SnmpPoller(topology, config.targets, all_interfaces=config.all_interfaces)
        self.interval_s = config.interval
        self.tick_s = config.tick_s

    def start(self) -> SnmpSource:
        """Nothing to open ahead: each poll opens its transports (and closes them)."""
        return self

    def stop(self) -> None:
        """Nothing held between polls."""

    def steps(self, stop: threading.Event) -> Iterator[Step]:
        loop = asyncio.new_event_loop()
        try:
            next_poll = time.monotonic()
            while not stop.is_set():
                wait = next_poll - time.monotonic()
                if wait > 0:
                    stop.wait(min(self.tick_s, wait))
                    yield []
                    continue
                poll = loop.create_task(self.poller.poll())
                while not poll.done():
                    loop.run_until_complete(asyncio.wait({poll}, timeout=self.tick_s))
                    if not poll.done():
                        if stop.is_set():
                            return
                        yield []
                next_poll = max(next_poll + self.interval_s, time.monotonic())
                batch = poll.result()
                yield [("counters", batch)] if len(batch["ts"]) else []
        finally:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    def counts(self) -> Mapping[str, int]:
        return self.poller.counts()

    def errors_by_target(self) -> Mapping[tuple[str, str], int]:
        """Failed polls by (device, reason): timeout, malformed, unreachable, agent-error, os-error N."""
        return dict(self.poller.errors_by_target)
