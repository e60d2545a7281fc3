"""Live capture from a Linux interface (mirror port, ERSPAN endpoint) as PacketBatches, through a TPACKET_V3 ring.

The kernel writes received frames into blocks of a memory-mapped ring and hands over a block when it is
full or `timeout_ms` old, so a busy link costs one wake-up per block, not per frame. Each wake-up walks the
ready blocks' frame headers in one compiled pass (the chain is sequential, like a pcap file's), copies the
frames into one buffer and gives the blocks straight back to the kernel: the ring never waits on the
decoder, and the batch outlives the ring. Only frames received on the interface are captured (outgoing
ones are ignored), truncated in the kernel to `snaplen` by a one-instruction BPF program.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import select
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType

import numba
import numpy as np

from collectors.header_table import (
    BLOCK_FIRST_PKT,
    BLOCK_LEN,
    BLOCK_NUM_PKTS,
    BLOCK_STATUS,
    ETH_TYPE,
    PKT_LEN,
    PKT_MAC,
    PKT_NEXT,
    PKT_NSEC,
    PKT_SEC,
    PKT_SNAPLEN,
    PKT_STATUS,
    PKT_VLAN_TCI,
    PKT_VLAN_TPID,
)
from collectors.header_table import VLAN_TAG as VLAN_TAG_BYTES
from collectors.packets import PacketBatch
from collectors.protocols import LINKTYPE_ETHERNET
from pipeline.errors import InputError

DEFAULT_SNAPLEN = 65_535
DEFAULT_BLOCK_BYTES = 4 * 1024 * 1024
DEFAULT_BLOCKS = 32
DEFAULT_TIMEOUT_MS = 100
MAX_SNAPLEN = 262_144

# <linux/if_packet.h>, <linux/if_ether.h>, <asm-generic/socket.h>
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0  # by the kernel's symmetric flow hash: both directions of a flow to one socket
PACKET_FANOUT_FLAG_DEFRAG = 0x8000  # fragments reassembled first, so they hash as their flow
PACKET_FANOUT_FLAG_UNIQUEID = 0x2000  # the kernel picks a group id no socket on the host uses (Linux 4.4+)
NEW_FANOUT_GROUP = -1  # `fanout_group` asking for a new group of the kernel's choosing
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
TPACKET_V3 = 2
SO_ATTACH_FILTER = 26
BPF_RET_K = 0x06  # BPF_RET | BPF_K: accept this many bytes of the packet
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
ETH_P_8021Q = 0x8100
FRAME_BYTES = 2048  # tp_frame_size: V3 packs frames of any size into blocks; the kernel only checks it fits



@dataclass(frozen=True, slots=True)
class RingStats:
    """Cumulative since the ring opened. `packets` counts every frame the kernel handed to the socket,
    dropped ones included; `drops` those lost because the ring was full; `freezes` how often the kernel
    found every block full and stopped filling until one was given back."""

    packets: int
    drops: int
    freezes: int


class _SockFilter(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32))


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter)))


def interface_index(iface: str) -> int:
    """The interface's index; InputError naming it when this namespace has no such interface."""
    try:
        return socket.if_nametoindex(iface)
    except (OSError, ValueError):
        raise InputError(iface, "no such network interface") from None


class PacketRing:
    """An AF_PACKET socket bound to one interface with a TPACKET_V3 receive ring (`blocks` x `block_bytes`),
    the interface in promiscuous mode while it is open (unless `promiscuous` is False). Sockets opened with the
    same `fanout_group` on one interface share its frames by flow (PACKET_FANOUT_HASH): one per worker. The
    first opens with NEW_FANOUT_GROUP and the kernel's id is then in `fanout_group`: an id chosen here could
    be another capture's on the same interface, which would silently take a share of this one's frames."""

    def __init__(
        self,
        iface: str,
        *,
        snaplen: int = DEFAULT_SNAPLEN,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
        blocks: int = DEFAULT_BLOCKS,
        timeout_ms: int = DEFAULT_TIMEOUT_MS,
        promiscuous: bool = True,
        fanout_group: int | None = None,
    ) -> None:
        if not 0 < snaplen <= MAX_SNAPLEN:
            raise InputError(iface, f"snaplen {snaplen} outside 1..{MAX_SNAPLEN}")
        if block_bytes <= 0 or block_bytes % mmap.PAGESIZE or block_bytes % FRAME_BYTES:
            raise InputError(iface, f"ring block size {block_bytes} is not a positive multiple of the page size")
        if blocks <= 0 or timeout_ms <= 0:
            raise InputError(iface, f"ring needs at least one block and a positive timeout, got {blocks}, {timeout_ms}")
        self.iface = iface
        self.snaplen = snaplen
        self.block_bytes = block_bytes
        self.blocks = blocks
        self.timeout_ms = timeout_ms
        self.promiscuous = promiscuous
        self.fanout_group = fanout_group
        self._totals = [0, 0, 0]
        self._stats_lock = threading.Lock()
        self._closed = False
        self._next_block = 0
        self._index = interface_index(iface)
        self._socket = self._open_socket(self._index)
        try:
            self._map = mmap.mmap(self._socket.fileno(), block_bytes * blocks, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            self._socket.close()
            raise InputError(iface, f"cannot map the capture ring: {exc.strerror or exc}") from None
        self._ring = np.frombuffer(self._map, dtype=np.uint8)
        self._words = self._ring.view(np.uint32)
        self._halves = self._ring.view(np.uint16)
        self._status_word = (np.arange(blocks, dtype=np.int64) * block_bytes + BLOCK_STATUS) // 4

    def _open_socket(self, index: int) -> socket.socket:
        """Protocol 0 until the ring is ready: the socket receives nothing (from no interface) before `bind`."""
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        except PermissionError:
            raise InputError(self.iface, "permission denied: live capture needs root or CAP_NET_RAW") from None
        except OSError as exc:
            raise InputError(self.iface, f"cannot open a packet socket: {exc.strerror or exc}") from None
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
            if self.promiscuous:  # a mirror port's frames are addressed to other hosts; ends with the socket
                membership = struct.pack("iHH8s", index, PACKET_MR_PROMISC, 0, b"")  # struct packet_mreq
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, membership)
            self._attach_snaplen(sock)
            request = struct.pack(
                "7I", self.block_bytes, self.blocks, FRAME_BYTES, self.block_bytes // FRAME_BYTES * self.blocks,
                self.timeout_ms, 0, 0,
            )
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            sock.bind((self.iface, ETH_P_ALL))
            if self.fanout_group is not None:  # after bind: the group is per interface and protocol
                self.fanout_group = self._join_fanout(sock, self.fanout_group)
        except OSError as exc:
            sock.close()
            if exc.errno in (errno.ENODEV, errno.ENXIO):
                raise InputError(self.iface, "no such network interface") from None
            if exc.errno == errno.ENOMEM:
                reason = f"cannot allocate the capture ring ({self.blocks} blocks of {self.block_bytes} bytes)"
                raise InputError(self.iface, reason) from None
            raise InputError(self.iface, f"cannot capture: {exc.strerror or exc}") from None
        return sock

    @staticmethod
    def _join_fanout(sock: socket.socket, group: int) -> int:
        """Join fanout `group`, or make a new one (NEW_FANOUT_GROUP); the group's id."""
        mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
        if group == NEW_FANOUT_GROUP:
            mode, group = mode | PACKET_FANOUT_FLAG_UNIQUEID, 0
        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", (mode << 16) | (group & 0xFFFF)))
        return int(sock.getsockopt(SOL_PACKET, PACKET_FANOUT)) & 0xFFFF

    def _attach_snaplen(self, sock: socket.socket) -> None:
        """`ret #snaplen`: the kernel copies at most snaplen bytes of each frame into the ring."""
        program = (_SockFilter * 1)(_SockFilter(BPF_RET_K, 0, 0, self.snaplen))
        fprog = _SockFprog(1, ctypes.cast(program, ctypes.POINTER(_SockFilter)))
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(memoryview(fprog)))

    def batches(self, stop: threading.Event) -> Iterator[PacketBatch]:
        """Frames of every block the kernel has retired, one batch per wake-up; an empty batch when nothing
        arrived within the timeout. Once `stop` is set, the blocks already retired, then return."""
        poller = select.poll()
        poller.register(self._socket.fileno(), select.POLLIN | select.POLLERR)
        while not stop.is_set():
            if not self._ready_blocks():
                if any(event & select.POLLERR for _, event in poller.poll(self.timeout_ms)):
                    self._socket.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # clears it (below)
                if not self._ready_blocks():
                    self._check_interface()
            yield self._take()
        last = self._take()
        if len(last):
            yield last

    def _check_interface(self) -> None:
        """After a quiet wait, make sure the interface still exists. When it goes down the kernel flags the
        socket (ENETDOWN) and poll returns at once until the flag is read, as `batches` does; capture then
        resumes by itself when the link comes back. A removed interface leaves the socket unbound for good."""
        try:
            present = socket.if_nametoindex(self.iface) == self._index
        except OSError:
            present = False
        if not present:
            raise InputError(self.iface, "interface removed while capturing")

    def _ready_blocks(self) -> list[int]:
        """Indexes of the blocks the kernel has handed over, in ring order from the next one to read."""
        ready: list[int] = []
        index = self._next_block
        while len(ready) < self.blocks and self._words[self._status_word[index]] & TP_STATUS_USER:
            ready.append(index)
            index = (index + 1) % self.blocks
        return ready

    def _take(self) -> PacketBatch:
        """Copy the ready blocks' frames into one batch and give the blocks back to the kernel."""
        ready = self._ready_blocks()
        starts = np.array(ready, dtype=np.int64) * self.block_bytes
        packets = int(self._words[(starts + BLOCK_NUM_PKTS) // 4].sum())
        room = int(self._words[(starts + BLOCK_LEN) // 4].sum()) + VLAN_TAG_BYTES * packets
        data = np.empty(room, dtype=np.uint8)
        offset = np.empty(packets, dtype=np.int64)
        caplen = np.empty(packets, dtype=np.uint32)
        wirelen = np.empty(packets, dtype=np.uint32)
        ts_ns = np.empty(packets, dtype=np.int64)
        n, used = _copy_frames(
            self._ring, self._words, self._halves, starts, self.snaplen, data, offset, caplen, wirelen, ts_ns
        )
        self._words[self._status_word[ready]] = TP_STATUS_KERNEL
        if ready:
            self._next_block = (ready[-1] + 1) % self.blocks
        return PacketBatch(
            data=data[:used],
            offset=offset[:n],
            caplen=caplen[:n],
            wirelen=wirelen[:n],
            ts_ns=ts_ns[:n],
            interface=np.zeros(n, dtype=np.uint16),
            interfaces=(self.iface,),
            linktype=LINKTYPE_ETHERNET,
        )

    def kernel_stats(self) -> RingStats:
        """Totals since open (after close: the totals at close). The kernel zeroes its counters on every
        read, so each read is added here; safe to call from another thread while `batches` runs."""
        with self._stats_lock:
            if not self._closed:
                raw = self._socket.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
                for i, value in enumerate(struct.unpack("3I", raw)):
                    self._totals[i] += value
            return RingStats(*self._totals)

    def close(self) -> None:
        """Take the last statistics, close the socket and unmap the ring (batches own their data)."""
        self.kernel_stats()
        with self._stats_lock:
            if self._closed:
                return
            self._closed = True
            self._socket.close()
        self._ring = self._words = self._halves = np.empty(0, dtype=np.uint8)
        self._map.close()

    def __enter__(self) -> PacketRing:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()


_COPY_SIGNATURE = numba.types.UniTuple(numba.int64, 2)(
    numba.uint8[::1], numba.uint32[::1], numba.uint16[::1], numba.int64[::1], numba.int64,
    numba.uint8[::1], numba.int64[::1], numba.uint32[::1], numba.uint32[::1], numba.int64[::1],
)


# Compiled at import: compiling lazily on the first call kept a reference to that call's ring array, and
# the ring could then never be unmapped.
@numba.njit(_COPY_SIGNATURE, cache=True)
def _copy_frames(
    ring: np.ndarray,
    words: np.ndarray,
    halves: np.ndarray,
    starts: np.ndarray,
    snaplen: int,
    data: np.ndarray,
    offset: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts_ns: np.ndarray,
) -> tuple[int, int]:
    """Walk each block's tpacket3_hdr chain, copying frames to `data`; return (frames, bytes used).

    The kernel moves an 802.1Q tag out of the frame into the header (tp_vlan_tci) before truncating; it is
    put back, so the decoder sees the frame as it was on the wire, and the frame cut to `snaplen` again.
    """
    n = 0
    at = 0
    for block in starts:
        pos = block + words[(block + BLOCK_FIRST_PKT) >> 2]
        for _ in range(words[(block + BLOCK_NUM_PKTS) >> 2]):
            status = words[(pos + PKT_STATUS) >> 2]
            length = int(np.int64(words[(pos + PKT_SNAPLEN) >> 2]))  # int64 in numba, as in offsets._u32
            wire = int(np.int64(words[(pos + PKT_LEN) >> 2]))
            src = pos + halves[(pos + PKT_MAC) >> 1]
            offset[n] = at
            if status & TP_STATUS_VLAN_VALID and length >= ETH_TYPE:
                tpid = halves[(pos + PKT_VLAN_TPID) >> 1] if status & TP_STATUS_VLAN_TPID_VALID else ETH_P_8021Q
                tci = words[(pos + PKT_VLAN_TCI) >> 2] & 0xFFFF
                tag = at + ETH_TYPE
                data[at:tag] = ring[src : src + ETH_TYPE]
                data[tag], data[tag + 1], data[tag + 2], data[tag + 3] = tpid >> 8, tpid & 0xFF, tci >> 8, tci & 0xFF
                rest = length - ETH_TYPE
                data[tag + VLAN_TAG_BYTES : tag + VLAN_TAG_BYTES + rest] = ring[src + ETH_TYPE : src + length]
                length += VLAN_TAG_BYTES
                wire += VLAN_TAG_BYTES
            else:
                data[at : at + length] = ring[src : src + length]
            length = min(length, snaplen)
            caplen[n] = length
            wirelen[n] = wire
            ts_ns[n] = np.int64(words[(pos + PKT_SEC) >> 2]) * 1_000_000_000 + words[(pos + PKT_NSEC) >> 2]
            at += length
            n += 1
            pos += words[(pos + PKT_NEXT) >> 2]
    return n, at
