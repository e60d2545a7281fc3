"""The compiled flow key and hash equal numpy's column operations (the code they replaced) on every sample's
packets, a subset of rows in any order, and keys at their dtypes' extremes (negative link and direction)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from collectors import protocols
from collectors.decode import Decoder
from collectors.flow_keys import KEY_FIELDS, flow_hash, packet_keys
from collectors.packets import DecodedPackets
from collectors.replay import replay_batches
from pipeline.topology import load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
MIX = np.uint64(0x9E3779B97F4A7C15)


def numpy_keys(decoded: DecodedPackets, rows: np.ndarray) -> dict[str, np.ndarray]:
    ethertype = decoded.ethertype[rows]
    non_ip = (ethertype != protocols.ETH_IPV4) & (ethertype != protocols.ETH_IPV6)
    keys = {name: getattr(decoded, name)[rows] for name, _ in KEY_FIELDS if name != "roce_qp"}
    keys["src_port"] = np.where(non_ip, 0, decoded.src_port[rows]).astype(np.uint16)
    keys["dst_port"] = np.where(non_ip, ethertype, decoded.dst_port[rows]).astype(np.uint16)
    keys["roce_qp"] = np.where(decoded.is_roce[rows], decoded.dqpn[rows], 0).astype(np.uint32)
    return keys


def numpy_hash(columns: dict[str, np.ndarray]) -> np.ndarray:
    hashes = np.zeros(len(columns["link"]), dtype=np.uint64)
    for name, _ in KEY_FIELDS:
        hashes ^= columns[name].astype(np.uint64)
        hashes *= MIX
        hashes ^= hashes >> np.uint64(31)
    return hashes


def assert_equal(decoded: DecodedPackets, rows: np.ndarray) -> None:
    expected, got = numpy_keys(decoded, rows), packet_keys(decoded, rows)
    for name, dtype in KEY_FIELDS:
        assert got[name].dtype == np.dtype(dtype) and np.array_equal(got[name], expected[name]), name
    assert np.array_equal(flow_hash(got), numpy_hash(expected))


@pytest.mark.parametrize("name", ["mixed", "combo"])
def test_keys_and_hashes_equal_numpys_on_a_sample(name: str) -> None:
    topology = load_topology(SAMPLES / f"{name}.topology.yaml")
    batch = next(iter(replay_batches([SAMPLES / f"{name}.pcap"], progress=False)))
    decoded = Decoder(topology).decode(batch)
    ok = decoded.ok
    assert (ok & (decoded.ethertype != protocols.ETH_IPV4) & (decoded.ethertype != protocols.ETH_IPV6)).any()
    assert decoded.is_roce.any()
    assert_equal(decoded, np.flatnonzero(decoded.ok))
    assert_equal(decoded, np.random.default_rng(5).permutation(len(decoded))[: len(decoded) // 3])
    assert_equal(decoded, np.zeros(0, dtype=np.int64))


def test_extremes_of_every_key_column() -> None:
    n = 4
    fields = {name: np.zeros((n, 8) if name == "pfc_quanta" else n, dtype=np.uint8)
              for name in DecodedPackets.__dataclass_fields__}
    values = {
        "link": np.array([-1, 0, np.iinfo(np.int16).max, np.iinfo(np.int16).min], dtype=np.int16),
        "direction": np.array([-1, 1, -128, 127], dtype=np.int8),
        **{name: np.array([0, 1, 2**63, 2**64 - 1], dtype=np.uint64)
           for name in ("src_hi", "src_lo", "dst_hi", "dst_lo")},
        "src_port": np.array([0, 1, 65_535, 80], dtype=np.uint16),
        "dst_port": np.array([65_535, 4791, 0, 443], dtype=np.uint16),
        "proto": np.array([255, 17, 6, 0], dtype=np.uint8),
        "vlan": np.array([4095, 0, 1, 2], dtype=np.uint16),
        "vni": np.array([2**32 - 1, 0, 1, 2**24], dtype=np.uint32),
        "ethertype": np.array([protocols.ETH_IPV4, protocols.ETH_IPV6, protocols.ETH_MAC_CONTROL, 0xFFFF],
                              dtype=np.uint16),
        "is_roce": np.array([True, False, True, False]),
        "dqpn": np.array([2**24 - 1, 5, 1, 7], dtype=np.uint32),
    }
    decoded = DecodedPackets(**{**fields, **values})
    assert_equal(decoded, np.arange(n))
