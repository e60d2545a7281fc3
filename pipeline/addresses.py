"""IP addresses as numpy columns: every address is IPv6 (IPv4 v4-mapped) held as two uint64 words.

`hi` holds bytes 0-7 and `lo` bytes 8-15 of the 16-byte address, both big-endian, so an IPv4 address
a.b.c.d is hi=0, lo=0x0000ffff_aabbccdd. Comparisons and prefix matches are then plain integer ops.
"""

from __future__ import annotations

import ipaddress

import numpy as np

V4_MAPPED_LO = np.uint64(0x0000FFFF00000000)
_V4_MAPPED_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)
_OCTETS = [str(octet) for octet in range(256)]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def words_of(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    """(hi, lo) words of one address."""
    ip = ipaddress.ip_address(address)
    value = int(ipaddress.IPv6Address(f"::ffff:{ip}")) if ip.version == 4 else int(ip)
    return value >> 64, value & 0xFFFF_FFFF_FFFF_FFFF


def v4_words(v4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) columns for IPv4 addresses given as host-order uint32."""
    lo = v4.astype(np.uint64) | V4_MAPPED_LO
    return np.zeros(len(v4), dtype=np.uint64), lo


def v6_words(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) columns from an (n, 16) uint8 array of network-order IPv6 addresses."""
    words = np.ascontiguousarray(raw, dtype=np.uint8).view(">u8").reshape(-1, 2)
    return words[:, 0].astype(np.uint64), words[:, 1].astype(np.uint64)


def network_mask(network: IPNetwork) -> tuple[int, int, int, int]:
    """(hi, lo, mask_hi, mask_lo) of a prefix in the v4-mapped IPv6 space."""
    if network.version == 4:
        base = int(ipaddress.IPv6Address(f"::ffff:{network.network_address}"))
        prefixlen = 96 + network.prefixlen
    else:
        base = int(network.network_address)
        prefixlen = network.prefixlen
    mask = ((1 << prefixlen) - 1) << (128 - prefixlen) if prefixlen else 0
    full = 0xFFFF_FFFF_FFFF_FFFF
    return base >> 64, base & full, mask >> 64, mask & full


class PrefixTable:
    """Which of several disjoint prefixes holds each address, and the value given for it (-1 for none).

    Prefixes of one length are looked up together: an address is masked once per length and found by a
    binary search among that length's networks (pipeline.prefix_search), so the work grows with the prefix
    lengths, not the prefixes. Below a /64 the search runs on the high word alone; from /64 on, on the low
    word among the networks that share a high word.
    """

    def __init__(self, prefixes: list[tuple[IPNetwork, int]]) -> None:
        groups: dict[tuple[int, int, int], list[tuple[int, int]]] = {}
        for network, value in prefixes:
            net_hi, net_lo, mask_hi, mask_lo = network_mask(network)
            fixed_hi = net_hi if mask_lo else 0
            groups.setdefault((mask_hi, mask_lo, fixed_hi), []).append((net_lo if mask_lo else net_hi, value))
        entries = [sorted(members) for members in groups.values()]
        self._mask_hi = np.array([mask_hi for mask_hi, _, _ in groups], dtype=np.uint64)
        self._mask_lo = np.array([mask_lo for _, mask_lo, _ in groups], dtype=np.uint64)
        self._fixed_hi = np.array([fixed_hi for _, _, fixed_hi in groups], dtype=np.uint64)
        self._starts = np.cumsum([0, *map(len, entries)], dtype=np.int64)
        self._keys = np.array([key for members in entries for key, _ in members], dtype=np.uint64)
        self._values = np.array([value for members in entries for _, value in members], dtype=np.int64)

    def lookup(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """int64 column: the value of the prefix holding each address, -1 where none does."""
        from pipeline import prefix_search  # numba: only the processes that decode packets search

        result = np.empty(len(hi), dtype=np.int64)
        mask_hi, mask_lo, fixed_hi, starts, keys, values = self.tables
        prefix_search.lookup(np.ascontiguousarray(hi, dtype=np.uint64), np.ascontiguousarray(lo, dtype=np.uint64),
                             mask_hi, mask_lo, fixed_hi, starts, keys, values, result)
        return result

    @property
    def tables(self) -> tuple[np.ndarray, ...]:
        """The search's arrays, in pipeline.prefix_search's order: mask_hi, mask_lo, fixed_hi, starts, keys,
        values."""
        return self._mask_hi, self._mask_lo, self._fixed_hi, self._starts, self._keys, self._values


def to_texts(raw: np.ndarray) -> list[str]:
    """Text form of (n, 16) uint8 network-order addresses: IPv4 as ::ffff:a.b.c.d, as ClickHouse's IPv6 type
    prints it (Python 3.11's `ipaddress` writes ::ffff:a00:10b). IPv4-mapped and unspecified addresses, nearly
    every row, come from a table of octets; the others from `ipaddress`."""
    mapped = (raw[:, :12] == _V4_MAPPED_PREFIX).all(axis=1)
    texts = [f"::ffff:{_OCTETS[a]}.{_OCTETS[b]}.{_OCTETS[c]}.{_OCTETS[d]}" if is_mapped else "::"
             for is_mapped, (a, b, c, d) in zip(mapped.tolist(), raw[:, 12:].tolist(), strict=True)]
    for index in np.flatnonzero(~mapped & raw.any(axis=1)).tolist():
        texts[index] = str(ipaddress.IPv6Address(raw[index].tobytes()))
    return texts


def fixed16(column: np.ndarray) -> np.ndarray:
    """16-byte addresses as contiguous V16 values, whether they came as V16 values (the collector's rows) or as
    bytes objects (rows decoded from Kafka)."""
    if column.dtype.kind == "V":
        return np.ascontiguousarray(column)
    return np.ascontiguousarray(column, dtype="S16").view("V16")


def to_bytes16(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """(n, 16) uint8 network-order addresses, the layout ClickHouse's IPv6 type stores."""
    words = np.empty((len(hi), 2), dtype=">u8")
    words[:, 0] = hi
    words[:, 1] = lo
    return words.view(np.uint8).reshape(-1, 16)
