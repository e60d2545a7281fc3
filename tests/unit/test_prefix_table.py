"""PrefixTable against the standard library's `ip in network`, address by address."""

from __future__ import annotations

import ipaddress
import random

import numpy as np

from pipeline.addresses import PrefixTable, words_of

PREFIXES = [
    "10.0.1.0/24", "10.0.2.0/24", "10.0.3.128/25", "10.0.9.7/32", "172.16.0.0/12", "2001:db8:1::/48",
    "2001:db8:2::/64", "2001:db8:3:0:1::/80", "2001:db8:3:0:2::/80", "2001:db8:4::1/128", "fd00::/8",
]


def addresses(rng: random.Random) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses inside, at the edges of and just outside every prefix, and random ones of both families."""
    chosen: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for text in PREFIXES:
        network = ipaddress.ip_network(text)
        chosen += [network.network_address, network.broadcast_address]
        chosen += [network.network_address + rng.randrange(network.num_addresses) for _ in range(5)]
        if int(network.network_address) > 0:
            chosen.append(network.network_address - 1)
        if int(network.broadcast_address) < (1 << network.max_prefixlen) - 1:
            chosen.append(network.broadcast_address + 1)
    chosen += [ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(300)]
    chosen += [ipaddress.IPv6Address(rng.getrandbits(128)) for _ in range(300)]
    return chosen


def test_lookup_matches_the_standard_library() -> None:
    networks = [ipaddress.ip_network(text) for text in PREFIXES]
    table = PrefixTable([(network, 100 + i) for i, network in enumerate(networks)])
    chosen = addresses(random.Random(7))
    words = np.array([words_of(address) for address in chosen], dtype=np.uint64)
    expected = [next((100 + i for i, network in enumerate(networks)
                      if network.version == address.version and address in network), -1) for address in chosen]
    assert table.lookup(words[:, 0], words[:, 1]).tolist() == expected
    assert len(set(expected)) == len(PREFIXES) + 1  # every prefix was hit, and some addresses fell outside all


def test_an_empty_table_finds_nothing() -> None:
    hi, lo = (np.array([value], dtype=np.uint64) for value in words_of("10.0.1.1"))
    assert PrefixTable([]).lookup(hi, lo).tolist() == [-1]
