"""The first bytes of many payloads as one matrix, with readers that refuse bytes the capture does not hold.

DPI signatures are evaluated as column comparisons over this matrix instead of a Python loop per packet.
Bytes past a payload's captured length read as 0, so every reader goes with `has(n)`: a signature tests
`has(last byte it reads + 1)` and a payload cut by the snaplen mid-signature simply does not match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collectors.wire import column16, column24, column32

WIDTH = 24  # bytes gathered per payload: the longest fixed-offset signature (ONC RPC call over TCP) reads 24
WORDS = WIDTH // 8

TCP, UDP = 6, 17

# Row k keeps the first k bytes of a head: ANDed in to zero what was not captured.
_PREFIX_MASK = ((np.arange(WIDTH)[None, :] < np.arange(WIDTH + 1)[:, None]) * 0xFF).astype(np.uint8)


@dataclass(frozen=True, slots=True)
class PayloadHead:
    """Rows of payload heads; every column has one entry per gathered payload."""

    byte: np.ndarray  # (WIDTH, m) uint8, byte i of every payload head contiguous in row i; 0 past `caplen`
    words: np.ndarray  # (m, WORDS) little-endian uint64 words of the same heads, for multi-byte literals
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
        """Copy the first WIDTH bytes of each payload `data[offset : offset + caplen]`.

        Rows are copied whole from a sliding-window view of `data` (a 2-D element index is ~50x slower).
        Lengths are clipped to the buffer and a negative offset means no payload, so a bad caplen reads nothing.
        """
        offset = offset.astype(np.int64)
        room = np.where(offset < 0, 0, np.maximum(len(data) - offset, 0))
        caplen = np.clip(caplen.astype(np.int64), 0, room)
        start = np.where(caplen > 0, offset, 0)
        safe = np.minimum(start, max(len(data) - WIDTH, 0))
        if len(data) >= WIDTH:
            head = np.lib.stride_tricks.sliding_window_view(data, WIDTH)[safe]
        else:
            head = np.zeros((len(offset), WIDTH), dtype=np.uint8)
        keep = np.minimum(caplen, WIDTH)
        near_end = np.flatnonzero((start + WIDTH > len(data)) & (keep > 0))
        if len(near_end):
            columns = np.arange(WIDTH, dtype=np.int64)
            head[near_end] = data[np.minimum(start[near_end, None] + columns, len(data) - 1)]
        head &= _PREFIX_MASK[keep]
        return cls(np.ascontiguousarray(head.T), head.view("<u8"), caplen, proto, src_port, dst_port)

    def __len__(self) -> int:
        return len(self.caplen)

    def has(self, n: int) -> np.ndarray:
        """Rows whose first `n` payload bytes were captured."""
        return self.caplen >= n

    def u8(self, i: int) -> np.ndarray:
        return self.byte[i]

    def u16(self, i: int) -> np.ndarray:
        """Big-endian (network order) 16-bit field at byte `i`."""
        return column16(self.byte, i)

    def u24(self, i: int) -> np.ndarray:
        return column24(self.byte, i)

    def u32(self, i: int) -> np.ndarray:
        return column32(self.byte, i)

    def u32le(self, i: int) -> np.ndarray:
        """Little-endian 32-bit field: torch's TCPStore and NVMe/TCP write host-order integers."""
        b = self.byte[i : i + 4].astype(np.uint32)
        return b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)

    def u64le_small(self, i: int) -> np.ndarray:
        """Little-endian 64-bit field at `i` when it fits in 16 bits, else -1: length fields of short strings."""
        value = self.byte[i].astype(np.int64) | (self.byte[i + 1].astype(np.int64) << 8)
        return np.where(self.byte[i + 2 : i + 8].any(axis=0), -1, value)

    def equals(self, i: int, literal: bytes) -> np.ndarray:
        """Rows holding `literal` at byte `i`, fully captured; compared a 64-bit word at a time."""
        pattern = np.zeros(WIDTH, dtype=np.uint8)
        care = np.zeros(WIDTH, dtype=np.uint8)
        pattern[i : i + len(literal)] = np.frombuffer(literal, dtype=np.uint8)
        care[i : i + len(literal)] = 0xFF
        pattern_words, care_words = pattern.view("<u8"), care.view("<u8")
        found = self.has(i + len(literal))
        for word in np.flatnonzero(care_words):
            found &= (self.words[:, word] & care_words[word]) == pattern_words[word]
        return found

    def on_port(self, proto: int, *ports: int) -> np.ndarray:
        """Rows of `proto` whose source or destination port is one of `ports`."""
        found = self.proto == proto
        either = np.zeros(len(self), dtype=bool)
        for port in ports:
            either |= (self.src_port == port) | (self.dst_port == port)
        return found & either


def one_of(*values: int) -> np.ndarray:
    """A 256-entry table, true at `values`: `table[byte_column]` tests set membership in one gather."""
    table = np.zeros(256, dtype=bool)
    table[list(values)] = True
    return table
