"""The first bytes of many payloads as one matrix, with readers that refuse bytes the capture does not hold.

DPI signatures are evaluated as column comparisons over this matrix instead of a Python loop per packet.
Bytes past a payload's captured length read as 0, so every reader goes with `has(n)`: a signature tests
`has(last byte it reads + 1)` and a payload cut by the snaplen mid-signature simply does not match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDTH = 24  # bytes gathered per payload: the longest fixed-offset signature (ONC RPC call over TCP) reads 24

TCP, UDP = 6, 17


@dataclass(frozen=True, slots=True)
class PayloadHead:
    """Rows of payload heads; every column has one entry per gathered payload."""

    head: np.ndarray  # (m, WIDTH) uint8, first payload bytes, 0 past `caplen`
    caplen: np.ndarray  # (m,) int64, payload bytes captured (may exceed WIDTH)
    proto: np.ndarray  # (m,) uint8, innermost IP protocol
    src_port: np.ndarray  # (m,) uint16, innermost L4 ports
    dst_port: np.ndarray  # (m,) uint16

    @classmethod
    def gather(
        cls,
        data: np.ndarray,
        offset: np.ndarray,
        caplen: np.ndarray,
        proto: np.ndarray,
        src_port: np.ndarray,
        dst_port: np.ndarray,
    ) -> PayloadHead:
        """Copy the first WIDTH bytes of each payload `data[offset : offset + caplen]` in one fancy-index step.

        Lengths are clipped to the buffer and a negative offset means no payload, so a bad caplen reads nothing.
        """
        offset = offset.astype(np.int64)
        room = np.where(offset < 0, 0, np.maximum(len(data) - offset, 0))
        caplen = np.clip(caplen.astype(np.int64), 0, room)
        columns = np.arange(WIDTH, dtype=np.int64)
        valid = columns < caplen[:, None]
        index = np.where(valid, offset[:, None] + columns, 0)
        head = data[index] if len(data) else np.zeros(index.shape, dtype=np.uint8)
        head[~valid] = 0
        return cls(head, caplen, proto, src_port, dst_port)

    def __len__(self) -> int:
        return len(self.caplen)

    def has(self, n: int) -> np.ndarray:
        """Rows whose first `n` payload bytes were captured."""
        return self.caplen >= n

    def u8(self, i: int) -> np.ndarray:
        return self.head[:, i]

    def u16(self, i: int) -> np.ndarray:
        """Big-endian (network order) 16-bit field at byte `i`."""
        return (self.head[:, i].astype(np.uint32) << 8) | self.head[:, i + 1]

    def u24(self, i: int) -> np.ndarray:
        return (self.u16(i) << 8) | self.head[:, i + 2]

    def u32(self, i: int) -> np.ndarray:
        return (self.u16(i) << 16) | self.u16(i + 2)

    def u32le(self, i: int) -> np.ndarray:
        """Little-endian 32-bit field: torch's TCPStore and NVMe/TCP write host-order integers."""
        b = self.head[:, i : i + 4].astype(np.uint32)
        return b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16) | (b[:, 3] << 24)

    def u64le_small(self, i: int) -> np.ndarray:
        """Little-endian 64-bit field at `i` when it fits in 16 bits, else -1: length fields of short strings."""
        b = self.head[:, i : i + 8].astype(np.int64)
        value = b[:, 0] | (b[:, 1] << 8)
        return np.where(b[:, 2:].any(axis=1), -1, value)

    def equals(self, i: int, literal: bytes) -> np.ndarray:
        """Rows holding `literal` at byte `i`, fully captured."""
        expected = np.frombuffer(literal, dtype=np.uint8)
        return self.has(i + len(literal)) & (self.head[:, i : i + len(literal)] == expected).all(axis=1)

    def on_port(self, proto: int, *ports: int) -> np.ndarray:
        """Rows of `proto` whose source or destination port is one of `ports`."""
        wanted = np.asarray(ports, dtype=np.uint16)
        either = np.isin(self.src_port, wanted) | np.isin(self.dst_port, wanted)
        return (self.proto == proto) & either
