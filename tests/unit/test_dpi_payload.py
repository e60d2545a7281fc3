"""Payload heads: gathered in one step, zero past the captured bytes, clipped to the buffer."""

from __future__ import annotations

import numpy as np

from collectors.dpi_payload import TCP, UDP, WIDTH, PayloadHead


def head_of(data: bytes, offsets: list[int], caplens: list[int]) -> PayloadHead:
    n = len(offsets)
    return PayloadHead.gather(
        np.frombuffer(data, dtype=np.uint8),
        np.array(offsets, dtype=np.int64),
        np.array(caplens, dtype=np.int32),
        np.full(n, TCP, dtype=np.uint8),
        np.full(n, 40000, dtype=np.uint16),
        np.full(n, 443, dtype=np.uint16),
    )


def test_bytes_past_the_captured_length_read_as_zero_and_are_not_had() -> None:
    head = head_of(b"ABCDEFGH" + bytes(range(1, 41)), [0, 8], [3, 40])
    assert head.byte[:4, 0].tobytes() == b"ABC\x00"
    assert head.byte[:, 1].tobytes() == bytes(range(1, WIDTH + 1))
    assert list(head.has(3)) == [True, True]
    assert list(head.has(4)) == [False, True]
    assert list(head.equals(0, b"ABC")) == [True, False]
    assert list(head.equals(0, b"ABC\x00")) == [False, False]


def test_lengths_past_the_buffer_and_missing_payloads_are_clipped() -> None:
    head = head_of(b"xyz", [1, -1, 10], [50, 5, 5])
    assert list(head.caplen) == [2, 0, 0]
    assert head.byte[:3, 0].tobytes() == b"yz\x00"
    assert not head.byte[:, 1:].any()


def test_field_readers_use_network_order_except_the_little_endian_ones() -> None:
    head = head_of(bytes([0x12, 0x34, 0x56, 0x78, 0x05, 0, 0, 0, 0, 0, 0, 0]), [0], [12])
    assert head.u16(0)[0] == 0x1234
    assert head.u24(0)[0] == 0x123456
    assert head.u32(0)[0] == 0x12345678
    assert head.u32le(0)[0] == 0x78563412
    assert head.u64le_small(4)[0] == 5
    assert head_of(bytes([1, 2, 0, 0, 0, 0, 0, 1]), [0], [8]).u64le_small(0)[0] == -1


def test_port_match_needs_the_protocol() -> None:
    head = head_of(b"", [0], [0])
    assert head.on_port(TCP, 443)[0]
    assert not head.on_port(UDP, 443)[0]
    assert not head.on_port(TCP, 80)[0]


def test_empty_buffer() -> None:
    head = head_of(b"", [-1, -1], [0, 0])
    assert head.byte.shape == (WIDTH, 2)
    assert not head.has(1).any()
