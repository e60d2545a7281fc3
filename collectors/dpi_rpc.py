"""ONC RPC (RFC 5531) of the NFS family: calls named by their program, and the ports the portmapper hands out.

NFSv3 needs more than port 2049: mountd, the lock manager (nlm) and the status monitor listen on whatever
port rpcbind gave them. A call names its program, so calls are labelled wherever they go; replies and the
middle of TCP streams name none. As other DPI engines do, the collector therefore learns from the
portmapper's answers (GETPORT, version 2; GETADDR, rpcbind versions 3 and 4) which (server, port, protocol)
serves which program, and labels later packets to or from it. Both tables are small and bounded: the oldest
entry goes first.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from collectors.dpi_payload import TCP, UDP, PayloadHead
from collectors.packets import DecodedPackets
from pipeline.addresses import words_of
from pipeline.labels import APP_CODE

PORTMAPPER = 100000
PORTMAPPER_PORT = 111
# program: (name, lowest version, highest version); the name is the app_detail of the `nfs` label.
PROGRAMS: dict[int, tuple[str, int, int]] = {
    PORTMAPPER: ("portmapper", 2, 4),
    100003: ("nfs", 2, 4),
    100005: ("mountd", 1, 3),
    100011: ("rquotad", 1, 2),
    100021: ("nlm", 1, 4),
    100024: ("status", 1, 1),
    100227: ("nfs_acl", 2, 3),
}
_PROGRAM_NUMBERS = np.array(list(PROGRAMS), dtype=np.uint32)
_PROGRAM_NAMES = np.array([name if program != 100003 else "" for program, (name, _, _) in PROGRAMS.items()],
                          dtype=object)
GETPORT = 3  # PMAPPROC_GETPORT (version 2) and RPCBPROC_GETADDR (versions 3, 4) are both procedure 3
CALL, REPLY = 0, 1
NETIDS = {b"tcp": TCP, b"tcp6": TCP, b"udp": UDP, b"udp6": UDP}
DEFAULT_MAX_PORTS = 4096  # learned (server, port, protocol) entries; a fabric's NFS servers need a few each
DEFAULT_MAX_PENDING = 4096  # GETPORT calls waiting for their reply


def _program_index(p: PayloadHead, base: int) -> np.ndarray:
    """Index into PROGRAMS of a call's program whose version is one it has, -1 otherwise."""
    program, version = p.u32(base + 12), p.u32(base + 16)
    index = np.full(len(p), -1, dtype=np.int64)
    for position, (low, high) in enumerate((low, high) for _, low, high in PROGRAMS.values()):
        index[(program == _PROGRAM_NUMBERS[position]) & (version >= low) & (version <= high)] = position
    return index


def _call_index(p: PayloadHead) -> np.ndarray:
    """Program index of an RPC CALL (xid, msg_type 0, rpcvers 2) over UDP or, after its record marker, TCP."""
    tcp = p.proto == TCP
    over_tcp = tcp & _record_marker(p) & _call_header(p, 4)
    over_udp = (p.proto == UDP) & _call_header(p, 0)
    index = np.where(tcp, _program_index(p, 4), _program_index(p, 0))
    return np.where(over_tcp | over_udp, index, -1)


def _record_marker(p: PayloadHead) -> np.ndarray:
    """RFC 5531 11: the TCP record marker's fragment length covers at least an RPC header."""
    return p.has(4) & ((p.u32(0) & 0x7FFFFFFF) >= 12)


def _call_header(p: PayloadHead, base: int) -> np.ndarray:
    return p.has(base + 20) & (p.u32(base + 4) == CALL) & (p.u32(base + 8) == 2)


def rpc_call(p: PayloadHead) -> np.ndarray:
    """A call to a program of the NFS family at a version it has."""
    return _call_index(p) >= 0


def rpc_program_names(p: PayloadHead) -> np.ndarray:
    """The called program's name ('' for NFS itself, the label says it), as a detail column."""
    index = _call_index(p)
    return np.where(index >= 0, _PROGRAM_NAMES[np.maximum(index, 0)], "")


def _rpc_reply(p: PayloadHead, base: int) -> np.ndarray:
    """msg_type REPLY with reply_stat MSG_ACCEPTED or MSG_DENIED."""
    return p.has(base + 12) & (p.u32(base + 4) == REPLY) & (p.u32(base + 8) <= 1)


def rpc_reply(p: PayloadHead) -> np.ndarray:
    """A reply from NFS's or the portmapper's well-known port (elsewhere a reply names no program)."""
    over_tcp = p.on_port(TCP, 2049, PORTMAPPER_PORT) & _record_marker(p) & _rpc_reply(p, 4)
    over_udp = p.on_port(UDP, 2049, PORTMAPPER_PORT) & _rpc_reply(p, 0)
    return over_tcp | over_udp


def rpc_reply_names(p: PayloadHead) -> np.ndarray:
    """'portmapper' for replies from port 111, '' for NFS's."""
    from_portmapper = p.src_port == PORTMAPPER_PORT
    return np.where(from_portmapper, "portmapper", "")


class _Truncated(Exception):
    """The message runs past the captured bytes."""


class _Xdr:
    """XDR (RFC 4506) reads that stop at the end of the captured payload."""

    def __init__(self, payload: bytes, position: int) -> None:
        self.payload = payload
        self.position = position

    def uint(self) -> int:
        return int.from_bytes(self.opaque_fixed(4), "big")

    def opaque_fixed(self, n: int) -> bytes:
        end = self.position + n
        if end > len(self.payload):
            raise _Truncated
        chunk = self.payload[self.position : end]
        self.position = end + (-n % 4)
        return chunk

    def opaque(self) -> bytes:
        return self.opaque_fixed(self.uint())

    def skip_auth(self) -> None:
        """opaque_auth: a flavor and up to 400 bytes of body."""
        self.uint()
        self.opaque()


@dataclass(frozen=True, slots=True)
class PortQuery:
    """A GETPORT/GETADDR call: which program the client asked for, over which protocol, in which version."""

    xid: int
    version: int
    program: int
    proto: int


def port_query(payload: bytes, over_tcp: bool) -> PortQuery | None:
    """The question of a portmapper call for a program of the NFS family, None for anything else or cut."""
    message = _Xdr(payload, 4 if over_tcp else 0)
    try:
        xid, msg_type, rpcvers, program, version, procedure = (message.uint() for _ in range(6))
        if (msg_type, rpcvers, program, procedure) != (CALL, 2, PORTMAPPER, GETPORT) or not 2 <= version <= 4:
            return None
        message.skip_auth()  # credentials
        message.skip_auth()  # verifier
        asked, _ = message.uint(), message.uint()
        proto = message.uint() if version == 2 else NETIDS.get(message.opaque(), 0)
    except _Truncated:
        return None
    return PortQuery(xid, version, asked, proto) if asked in PROGRAMS and proto in (TCP, UDP) else None


def port_answer(payload: bytes, over_tcp: bool, version: int) -> tuple[int, str | None] | None:
    """(port, address the answer names or None) of a successful portmapper reply; None if it is not one.

    Version 2 answers a port number; versions 3 and 4 a universal address "h1.h2.h3.h4.p1.p2" (RFC 5665 5.2.3,
    IPv6 likewise) whose port is p1 * 256 + p2. Port 0 means the program is not registered."""
    message = _Xdr(payload, 4 if over_tcp else 0)
    try:
        _xid, msg_type, reply_stat = message.uint(), message.uint(), message.uint()
        if (msg_type, reply_stat) != (REPLY, 0):
            return None
        message.skip_auth()  # verifier
        if message.uint() != 0:  # accept_stat SUCCESS
            return None
        if version == 2:
            port, address = message.uint(), None
        else:
            port, address = _universal_address(message.opaque())
    except (_Truncated, ValueError):
        return None
    return (port, address) if 0 < port < 65536 else None


def _universal_address(uaddr: bytes) -> tuple[int, str | None]:
    host, high, low = uaddr.decode("ascii").rsplit(".", 2)
    address = ipaddress.ip_address(host)
    return int(high) * 256 + int(low), None if address.is_unspecified else str(address)


def _key_hash(hi: np.ndarray, lo: np.ndarray, port: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """One uint64 per (address, port, protocol), to test membership of many rows at once."""
    mixed = hi.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    mixed ^= lo.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
    return mixed ^ ((port.astype(np.uint64) << np.uint64(8)) | proto.astype(np.uint64))


class RpcPorts:
    """What the portmapper told clients, per collector: (server address, port, protocol) → program."""

    def __init__(self, max_ports: int = DEFAULT_MAX_PORTS, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.max_ports = max_ports
        self.max_pending = max_pending
        self._pending: OrderedDict[tuple[int, int, int, int], PortQuery] = OrderedDict()
        self._ports: OrderedDict[tuple[int, int, int, int], int] = OrderedDict()
        self._lookup: tuple[np.ndarray, np.ndarray] | None = None  # sorted hashes, and the keys in that order

    def __len__(self) -> int:
        return len(self._ports)

    def learn(self, data: np.ndarray, decoded: DecodedPackets) -> None:
        """Read the portmapper calls and replies of a batch, in order (port 111, in a tunnel's inner flow too)."""
        rows = np.flatnonzero(
            decoded.ok
            & keyed_by_payload(decoded)
            & ((decoded.proto == TCP) | (decoded.proto == UDP))
            & ((decoded.dst_port == PORTMAPPER_PORT) | (decoded.src_port == PORTMAPPER_PORT))
            & (decoded.payload_caplen > 0)
        )
        for row in rows.tolist():
            start = int(decoded.payload_offset[row])
            payload = data[start : start + int(decoded.payload_caplen[row])].tobytes()
            over_tcp = int(decoded.proto[row]) == TCP
            if int(decoded.dst_port[row]) == PORTMAPPER_PORT:
                self._learn_query(decoded, row, payload, over_tcp)
            else:
                self._learn_answer(decoded, row, payload, over_tcp)

    def _learn_query(self, decoded: DecodedPackets, row: int, payload: bytes, over_tcp: bool) -> None:
        query = port_query(payload, over_tcp)
        if query is None:
            return
        client = (int(decoded.src_hi[row]), int(decoded.src_lo[row]), int(decoded.src_port[row]), query.xid)
        self._pending[client] = query
        self._pending.move_to_end(client)
        while len(self._pending) > self.max_pending:
            self._pending.popitem(last=False)

    def _learn_answer(self, decoded: DecodedPackets, row: int, payload: bytes, over_tcp: bool) -> None:
        xid = int.from_bytes(payload[4:8] if over_tcp else payload[:4], "big")
        client = (int(decoded.dst_hi[row]), int(decoded.dst_lo[row]), int(decoded.dst_port[row]), xid)
        query = self._pending.get(client)
        if query is None:
            return
        answer = port_answer(payload, over_tcp, query.version)
        if answer is None:
            return
        del self._pending[client]
        port, address = answer
        hi, lo = words_of(address) if address else (int(decoded.src_hi[row]), int(decoded.src_lo[row]))
        server = (hi, lo, port, query.proto)
        self._ports[server] = query.program
        self._ports.move_to_end(server)
        while len(self._ports) > self.max_ports:
            self._ports.popitem(last=False)
        self._lookup = None

    def label(self, decoded: DecodedPackets, app: np.ndarray, confidence: np.ndarray, detail: np.ndarray,
              at: np.float32) -> None:
        """Label `nfs` (detail: the program) the rows to or from a learned server port that no stronger
        evidence labelled; their confidence becomes `at`."""
        if not self._ports:
            return
        rows = np.flatnonzero(
            decoded.ok & (confidence < at) & keyed_by_payload(decoded)
            & ((decoded.proto == TCP) | (decoded.proto == UDP))
        )
        if not len(rows):
            return
        hashes, keys = self._sorted()
        program = np.full(len(rows), -1, dtype=np.int64)
        for side in ("dst", "src"):
            hi, lo = getattr(decoded, f"{side}_hi")[rows], getattr(decoded, f"{side}_lo")[rows]
            port, proto = getattr(decoded, f"{side}_port")[rows], decoded.proto[rows]
            found = np.minimum(np.searchsorted(hashes, _key_hash(hi, lo, port, proto)), len(hashes) - 1)
            key = keys[found]
            same = (key["hi"] == hi) & (key["lo"] == lo) & (key["port"] == port) & (key["proto"] == proto)
            program = np.where((program < 0) & same, key["index"], program)
        hit = program >= 0
        app[rows[hit]] = APP_CODE["nfs"]
        confidence[rows[hit]] = at
        detail[rows[hit]] = _PROGRAM_NAMES[program[hit]]

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """The learned ports as a structured array sorted by key hash (rebuilt after the table changed)."""
        if self._lookup is None:
            keys = np.array(
                [(hi, lo, port, proto, list(PROGRAMS).index(program))
                 for (hi, lo, port, proto), program in self._ports.items()],
                dtype=[("hi", "u8"), ("lo", "u8"), ("port", "u2"), ("proto", "u1"), ("index", "i8")],
            )
            hashes = _key_hash(keys["hi"], keys["lo"], keys["port"], keys["proto"])
            order = np.argsort(hashes)
            self._lookup = hashes[order], keys[order]
        return self._lookup


def keyed_by_payload(decoded: DecodedPackets) -> np.ndarray:
    """Packets whose flow key's ports are those of the payload DPI reads: a tunnel's inner flow is the flow, so
    it qualifies, unless it is not IP (ARP inside VXLAN), which leaves the outer flow as the key."""
    return (decoded.src_port == decoded.app_src_port) & (decoded.dst_port == decoded.app_dst_port) \
        & (decoded.proto == decoded.app_proto)
