"""Flow table on hand-built decoded batches: keys, counters, export intervals, idle expiry, PSN gaps, labels."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import collectors.flows as flows_module
from collectors.flows import BURST_START, FlowTable, FlowTableConfig
from collectors.packets import DecodedPackets
from pipeline.addresses import words_of
from pipeline.labels import APP_CODE
from pipeline.records import column_names
from pipeline.topology import DOWN, UP, Topology, load_topology

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SECOND = 1_000_000_000
T0 = 1_700_000_000 * SECOND  # aligned to the 1 s export intervals

_DEFAULTS: dict[str, tuple[str, Any]] = {
    "ok": ("bool", True), "ts_ns": ("int64", T0), "link": ("int16", 0), "direction": ("int8", UP),
    "erspan_session": ("int16", 11), "wire_len": ("uint32", 1000), "vlan": ("uint16", 0),
    "ethertype": ("uint16", 0x0800), "src_hi": ("uint64", 0), "src_lo": ("uint64", words_of("10.0.1.1")[1]),
    "dst_hi": ("uint64", 0), "dst_lo": ("uint64", words_of("10.0.2.1")[1]), "proto": ("uint8", 17),
    "src_port": ("uint16", 49152), "dst_port": ("uint16", 4791), "dscp": ("uint8", 26), "ecn": ("uint8", 2),
    "tcp_flags": ("uint8", 0), "vni": ("uint32", 0), "vxlan": ("bool", False), "is_roce": ("bool", True),
    "bth_opcode": ("uint8", 0x0A), "dqpn": ("uint32", 7), "psn": ("uint32", 0), "fecn": ("bool", False),
    "becn": ("bool", False),
    "aeth_syndrome": ("uint8", 0xFF), "pfc_enable": ("uint8", 0), "app_proto": ("uint8", 17),
    "app_src_port": ("uint16", 49152), "app_dst_port": ("uint16", 4791), "payload_offset": ("int64", -1),
    "payload_caplen": ("int32", 0), "switch_timed": ("bool", False), "outer_src_hi": ("uint64", 0),
    "outer_src_lo": ("uint64", 0), "outer_dst_hi": ("uint64", 0), "outer_dst_lo": ("uint64", 0),
}


def packets(n: int, **columns: Any) -> DecodedPackets:
    """n decoded RoCE WRITE packets of one flow, with any column overridden by a scalar or a sequence."""
    values: dict[str, np.ndarray] = {}
    for name, (dtype, default) in _DEFAULTS.items():
        values[name] = np.broadcast_to(np.asarray(columns.get(name, default), dtype=dtype), (n,)).copy()
    values["pfc_quanta"] = np.zeros((n, 8), dtype=np.uint16)
    values["capture_ts_ns"] = np.broadcast_to(np.asarray(columns.get("capture_ts_ns", values["ts_ns"]),
                                                         dtype=np.int64), (n,)).copy()
    return DecodedPackets(**values)


def concat(*batches: DecodedPackets) -> DecodedPackets:
    names = [field.name for field in dataclasses.fields(DecodedPackets)]
    return DecodedPackets(**{name: np.concatenate([getattr(b, name) for b in batches]) for name in names})


def rows_of(*results: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Exported rows as dicts, in a stable order; addresses (V16 columns) as bytes."""
    rows = [
        {name: bytes(result[name][i]) if result[name].dtype.kind == "V" else result[name][i] for name in result}
        for result in results for i in range(len(result["packets"]))
    ]
    return sorted(rows, key=lambda r: (r["src_port"], r["dst_port"], r["roce_qp"], r["ts_start"], r["packets"]))


@pytest.fixture(scope="module")
def topology() -> Topology:
    return load_topology(SAMPLES / "topology.yaml")


def test_rows_have_the_flows_columns_and_counters(topology: Topology) -> None:
    table = FlowTable(topology, FlowTableConfig(exporter="c1"))
    batch = packets(
        6,
        ts_ns=[T0 + 10, T0 + 20, T0 + 30, T0 + 40, T0 + 50, T0 + 60],
        bth_opcode=[0x0A, 0x06, 0x81, 0x04, 0x11, 0x10],
        ecn=[2, 3, 0, 3, 1, 2],
        dscp=[26, 0, 0, 0, 0, 0],
        aeth_syndrome=[0xFF, 0xFF, 0xFF, 0xFF, 0x61, 0x1F],
        psn=[5, 6, 0, 7, 9, 8],
        wire_len=[100, 200, 300, 400, 500, 600],
    )
    assert table.update(batch)["packets"].size == 0
    result = table.flush()
    assert list(result) == [*column_names("flows"), BURST_START]
    (row,) = rows_of(result)
    assert row["exporter"] == "c1" and row["link"] == "leaf1-spine1" and row["direction"] == "up"
    assert (row["leaf"], row["spine"]) == ("leaf1", "spine1")
    assert row["src_ip"] == b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 1, 1])
    assert (row["src_port"], row["dst_port"], row["proto"], row["roce_qp"]) == (49152, 4791, 17, 7)
    assert row["ts_start"] == np.datetime64(T0 // 1000, "us") and row["ts_end"] == np.datetime64(T0 // 1000, "us")
    expected = {"packets": 6, "bytes": 2100, "ecn_ect": 5, "ecn_ce": 2, "cnp": 1, "roce_write": 2,
                "roce_read": 1, "roce_send": 1, "roce_ack": 1, "naks": 1, "psn_gaps": 0, "dscp": 26,
                "psn_first": 5, "psn_last": 8, "sampling_rate": 1}
    assert {name: int(row[name]) for name in expected} == expected
    assert row["ts_tail"] == np.datetime64((T0 + 40) // 1000, "us")
    labels = (row["app"], row["app_detail"], row["traffic_class"], row["job"], row["confidence"])
    assert labels == ("unknown", "", "", "", 0)


def test_rows_keep_tunnel_endpoints_and_say_whose_clock_timed_them(topology: Topology) -> None:
    table = FlowTable(topology)
    (outer_src_hi, outer_src_lo), (outer_dst_hi, outer_dst_lo) = words_of("192.0.2.1"), words_of("192.0.2.99")
    tunnelled = packets(3, ts_ns=[T0 + 10, T0 + 20, T0 + 30], capture_ts_ns=[T0 + 4010, T0 + 6020, T0 + 8030],
                        switch_timed=True, outer_src_hi=outer_src_hi, outer_src_lo=outer_src_lo,
                        outer_dst_hi=outer_dst_hi, outer_dst_lo=outer_dst_lo)
    plain = packets(2, ts_ns=[T0 + 40, T0 + 50], src_port=49153)
    table.update(tunnelled)
    table.update(plain)
    first, second = rows_of(table.flush())
    assert first["outer_src_ip"] == b"\0" * 10 + b"\xff\xff" + bytes([192, 0, 2, 1])
    assert first["outer_dst_ip"] == b"\0" * 10 + b"\xff\xff" + bytes([192, 0, 2, 99])
    assert (first["time_source"], first["mirror_delay_us"]) == ("switch", 6.0)  # (4 + 6 + 8) µs / 3
    assert second["outer_src_ip"] == second["outer_dst_ip"] == b"\0" * 16
    assert (second["time_source"], second["mirror_delay_us"]) == ("capture", 0.0)


def test_flow_key_fields_separate_flows() -> None:
    table = FlowTable()
    base = dict(n=1)
    variants = [
        {}, {"link": 1}, {"direction": DOWN}, {"src_lo": 1}, {"dst_hi": 1}, {"src_port": 1}, {"dst_port": 2},
        {"proto": 6, "is_roce": False}, {"vlan": 5}, {"vni": 9}, {"dqpn": 8},
    ]
    table.update(concat(*(packets(base["n"], **v) for v in variants)))
    assert len(table) == len(variants)
    assert len(rows_of(table.flush())) == len(variants)


def test_non_ip_frames_key_on_ethertype_and_arp_on_addresses() -> None:
    table = FlowTable()
    lldp = packets(2, ethertype=0x88CC, src_lo=0, dst_lo=0, proto=0, src_port=0, dst_port=0, is_roce=False)
    arp = packets(1, ethertype=0x0806, proto=0, src_port=0, dst_port=0, is_roce=False)
    table.update(concat(lldp, arp))
    rows = rows_of(table.flush())
    assert [(r["dst_port"], r["packets"], r["roce_qp"]) for r in rows] == [(0x0806, 1, 0), (0x88CC, 2, 0)]
    assert rows[0]["src_ip"][-4:] == bytes([10, 0, 1, 1]) and rows[1]["src_ip"] == b"\0" * 16


def test_malformed_packets_are_ignored() -> None:
    table = FlowTable()
    table.update(packets(3, ok=[True, False, True]))
    (row,) = rows_of(table.flush())
    assert row["packets"] == 2


def test_active_timeout_cuts_epoch_aligned_rows_as_time_passes() -> None:
    table = FlowTable(config=FlowTableConfig(active_timeout_s=0.5))
    first = table.update(packets(3, ts_ns=[T0 + 1, T0 + SECOND // 4, T0 + SECOND * 6 // 10]))
    assert [int(p) for p in first["packets"]] == [2]  # interval [0, 0.5) closed by the packet at 0.6 s
    assert first["ts_end"][0] == np.datetime64((T0 + SECOND // 4) // 1000, "us")
    assert table.update(packets(1, ts_ns=T0 + SECOND * 7 // 10))["packets"].size == 0
    later = table.update(packets(1, ts_ns=T0 + 3 * SECOND, src_port=1))  # another flow moves time on
    assert [int(p) for p in later["packets"]] == [2]
    assert int(table.flush()["packets"].sum()) == 1


def test_rows_do_not_depend_on_batch_boundaries() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    batch = packets(
        n, ts_ns=np.sort(T0 + rng.integers(0, 5 * SECOND, n)), src_port=rng.integers(0, 30, n),
        psn=rng.integers(0, 50, n), ecn=rng.integers(0, 4, n), wire_len=rng.integers(64, 9000, n),
    )
    whole = FlowTable()
    together = rows_of(whole.update(batch), whole.flush())
    split = FlowTable()
    parts = [split.update(DecodedPackets(**{
        field.name: getattr(batch, field.name)[start:start + 333] for field in dataclasses.fields(batch)
    })) for start in range(0, n, 333)]
    apart = rows_of(*parts, split.flush())
    assert len(together) == len(apart)
    for a, b in zip(together, apart, strict=True):
        assert {k: (a[k] == b[k]) for k in a} == dict.fromkeys(a, True)
    assert sum(int(r["packets"]) for r in together) == n


def test_psn_gaps_across_batches_with_wrap() -> None:
    table = FlowTable()
    table.update(packets(3, psn=[0xFFFFFC, 0xFFFFFD, 0xFFFFFE], ts_ns=T0 + np.arange(3)))
    table.update(packets(2, psn=[0x000001, 0x000002], ts_ns=T0 + 10 + np.arange(2)))  # skips FFFFFF and 0
    table.update(packets(3, psn=[0x000005, 0x000003, 0x000003], ts_ns=T0 + 20 + np.arange(3)))  # 2 lost, go-back
    table.update(packets(1, psn=0x000009, bth_opcode=0x11, ts_ns=T0 + 30))  # an ACK is not in the sequence
    table.update(packets(1, psn=0x000004, ts_ns=T0 + 40))
    (row,) = rows_of(table.flush())
    assert row["psn_gaps"] == 4
    assert (row["psn_first"], row["psn_last"]) == (0xFFFFFC, 4)


def test_idle_flows_are_forgotten() -> None:
    table = FlowTable(config=FlowTableConfig(idle_timeout_s=2))
    results = [table.update(packets(1, psn=10, ts_ns=T0))]
    results.append(table.update(packets(1, psn=0, src_port=1, ts_ns=T0 + 5 * SECOND)))
    assert len(table) == 1
    results.append(table.update(packets(1, psn=20, ts_ns=T0 + 6 * SECOND)))  # old PSN forgotten: no gap
    rows = rows_of(*results, table.flush())
    assert sum(int(r["psn_gaps"]) for r in rows) == 0 and len(rows) == 3


def test_ts_tail_is_the_third_to_last_packet_so_far() -> None:
    table = FlowTable()
    table.update(packets(2, ts_ns=[T0 + 1000, T0 + 2000]))
    first = rows_of(table.update(packets(1, ts_ns=T0 + SECOND + 5000)))
    assert first[0]["ts_tail"] == np.datetime64(0, "us")  # only 2 packets when the row closed
    table.update(packets(1, ts_ns=T0 + SECOND + 9000))
    (row,) = rows_of(table.flush())
    assert row["ts_tail"] == np.datetime64((T0 + 2000) // 1000, "us")


def test_rows_share_one_str_object_per_distinct_value(topology: Topology) -> None:
    """Every row's str is one of a few shared objects: a new str per row (np.full and np.where make them) cost
    ~60 bytes per value in every process, queue and pickle a flood of rows passes through."""
    table = FlowTable(topology, FlowTableConfig(exporter="c1"))
    switch = packets(500, ts_ns=T0 + np.arange(500), src_port=1000 + np.arange(500), switch_timed=True)
    capture = packets(500, ts_ns=T0 + np.arange(500), src_port=2000 + np.arange(500))
    table.update(concat(switch, capture), app=np.full(1000, APP_CODE["rocev2"]),
                 confidence=np.where(np.arange(1000) % 2 == 0, 0.9, 0.0).astype(np.float32))
    result = table.flush()
    for name, values in result.items():
        if values.dtype == object:
            assert len({id(value) for value in values}) == len(set(values)), name
    assert set(result["app"]) == {"rocev2", "unknown"}
    assert set(result["time_source"]) == {"switch", "capture"}


def test_label_hook_keeps_the_most_confident_label() -> None:
    table = FlowTable()
    app = np.array([APP_CODE["unknown"], APP_CODE["rocev2"], APP_CODE["tls"]])
    table.update(packets(3, ts_ns=T0 + np.arange(3)), app=app, confidence=np.array([0.0, 0.9, 0.5]))
    table.update(packets(1, ts_ns=T0 + 5), app=np.array([APP_CODE["http"]]), confidence=np.array([0.6]))
    (row,) = rows_of(table.flush())
    assert (row["app"], row["confidence"]) == ("rocev2", np.float32(0.9))


def test_label_hook_carries_the_detail_of_the_best_packet_and_unlabelled_flows_are_unknown() -> None:
    table = FlowTable()
    app = np.array([APP_CODE["tls"], APP_CODE["tls"], APP_CODE["unknown"]])
    detail = np.array(["", "sni=store.example", ""], dtype=object)
    labelled = packets(3, ts_ns=T0 + np.arange(3))
    unlabelled = packets(1, src_port=7, ts_ns=T0)
    table.update(concat(labelled, unlabelled), app=np.append(app, APP_CODE["unknown"]),
                 confidence=np.array([0.5, 0.9, 0.0, 0.0]), detail=np.append(detail, ""))
    rows = rows_of(table.flush())
    assert [(r["app"], r["app_detail"]) for r in rows] == [("unknown", ""), ("tls", "sni=store.example")]


def test_rows_are_cut_at_pauses_and_exported_at_once() -> None:
    table = FlowTable()
    burst = 10 * np.arange(20)  # 20 packets 10 ns apart
    first = table.update(packets(20, ts_ns=T0 + burst))
    second = table.update(packets(40, ts_ns=np.concatenate([T0 + 5_000_000 + burst, T0 + 9_000_000 + burst])))
    assert first["packets"].size == 0
    assert [int(p) for p in second["packets"]] == [20, 20]  # the first burst, closed by the 5 ms pause; the second
    assert second["ts_end"][0] == np.datetime64((T0 + 190) // 1000, "us")
    assert second["ts_tail"][1] == np.datetime64((T0 + 5_000_170) // 1000, "us")
    assert second[BURST_START].tolist() == [True, True]
    across = table.update(packets(5, ts_ns=T0 + SECOND - 20 + 10 * np.arange(5)))  # runs across the interval end
    rows = rows_of(across) + rows_of(table.flush())
    # the second burst, closed by the pause; the third burst's part before the interval end (a burst start);
    # its part after (which continues that burst)
    assert [(int(r["packets"]), bool(r[BURST_START])) for r in rows] == [(20, True), (2, True), (3, False)]


def test_a_flow_that_falls_silent_is_exported_once_packet_time_passes_its_pause() -> None:
    table = FlowTable()
    burst = 10 * np.arange(20)  # 20 packets 10 ns apart: the pause is pause_min_ms (1 ms) after the last
    assert table.update(packets(20, ts_ns=T0 + burst))["packets"].size == 0
    other = {"src_port": 1}  # another flow moves packet time on; the silent flow has no next packet
    assert table.update(packets(1, ts_ns=T0 + 190 + 1_000_000, **other))["packets"].size == 0
    rows = table.update(packets(1, ts_ns=T0 + 190 + 1_000_001, **other))
    assert [(int(r["packets"]), int(r["src_port"]), bool(r[BURST_START])) for r in rows_of(rows)] == [
        (20, 49152, True)]
    assert rows["ts_end"][0] == np.datetime64((T0 + 190) // 1000, "us")
    resumed = table.update(packets(3, ts_ns=T0 + 3_000_000 + burst[:3]))  # resumes in a new row; the other flow
    assert [(int(r["packets"]), int(r["src_port"])) for r in rows_of(resumed)] == [(2, 1)]  # has paused by now
    resumed = [r for r in rows_of(table.flush()) if r["src_port"] == 49152]
    assert [(int(r["packets"]), bool(r[BURST_START])) for r in resumed] == [(3, True)]


def test_sparse_periodic_flows_are_not_cut_at_every_packet() -> None:
    rng = np.random.default_rng(5)
    ts = T0 + np.cumsum(rng.integers(20_000_000, 50_000_000, 30))  # BFD-like: every 20-50 ms
    table = FlowTable()
    rows = rows_of(table.update(packets(len(ts), ts_ns=ts[ts < T0 + SECOND])), table.flush())
    per_interval = {int(r["ts_start"].astype(np.int64)) // 1_000_000 for r in rows}
    assert len(rows) == len(per_interval)


def test_pause_rule_is_validated() -> None:
    with pytest.raises(ValueError, match="pause"):
        FlowTableConfig(pause_factor=0.5)


def test_label_hook_needs_both_arrays() -> None:
    with pytest.raises(ValueError, match="both"):
        FlowTable().update(packets(1), app=np.array([APP_CODE["rocev2"]]))


def test_sampling_rate_scales_counts() -> None:
    table = FlowTable(config=FlowTableConfig(sampling_rate=100))
    table.update(packets(2, ecn=3))
    (row,) = rows_of(table.flush())
    assert (row["packets"], row["bytes"], row["ecn_ce"], row["sampling_rate"]) == (200, 200_000, 200, 100)


def test_hash_collisions_keep_flows_apart(monkeypatch: pytest.MonkeyPatch) -> None:
    batch = packets(60, src_port=np.arange(60) % 7, psn=np.arange(60), ts_ns=T0 + np.arange(60))
    normal = FlowTable()
    normal.update(batch)
    expected = rows_of(normal.flush())
    monkeypatch.setattr(flows_module, "flow_hash", lambda keys: np.zeros(len(keys["link"]), dtype=np.uint64))
    colliding = FlowTable()
    colliding.update(DecodedPackets(**{f.name: getattr(batch, f.name)[:30] for f in dataclasses.fields(batch)}))
    colliding.update(DecodedPackets(**{f.name: getattr(batch, f.name)[30:] for f in dataclasses.fields(batch)}))
    got = rows_of(colliding.flush())
    assert [(r["src_port"], r["packets"], r["psn_gaps"]) for r in got] == [
        (r["src_port"], r["packets"], r["psn_gaps"]) for r in expected]


def test_many_flows_stay_small() -> None:
    table = FlowTable()
    n = 200_000
    for start in range(0, n, 50_000):
        index = np.arange(start, start + 50_000)
        table.update(packets(len(index), src_lo=index, dqpn=index, ts_ns=T0 + index))
    assert len(table) == n
    assert table.nbytes / n < 400  # 1M active flows stay well under 1 GB
    assert int(table.flush()["packets"].sum()) == n


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="active_timeout_s"):
        FlowTableConfig(active_timeout_s=2)
    with pytest.raises(ValueError, match="idle_timeout_s"):
        FlowTableConfig(active_timeout_s=1, idle_timeout_s=0.5)


def test_batch_spanning_months_still_groups_by_flow_and_interval() -> None:
    day = 86_400 * SECOND
    batch = packets(6, ts_ns=[T0, T0 + 1, T0 + 200 * day, T0 + 200 * day + 1, T0 + 2, T0 + 200 * day + 2],
                    src_port=[1, 2, 1, 2, 1, 2], psn=[0, 0, 1, 1, 1, 2])
    table = FlowTable()
    rows = rows_of(table.update(batch), table.flush())
    assert [(r["src_port"], r["packets"], r["psn_gaps"]) for r in rows] == [(1, 2, 0), (1, 1, 0), (2, 1, 0),
                                                                              (2, 2, 0)]


def test_a_full_table_exports_the_idlest_flows_early_and_keeps_every_total() -> None:
    bound, flows, count = 1000, 5000, 40_000
    rng = np.random.default_rng(13)
    flow = rng.integers(0, flows, count)
    wire_len = rng.integers(60, 9000, count)
    ts = T0 + np.sort(rng.integers(0, SECOND // 2, count))  # all in one export interval: only the bound exports
    table = FlowTable(config=FlowTableConfig(max_flows=bound, pause_min_ms=SECOND))  # no pause cuts rows either
    results = []
    for start in range(0, count, 500):
        batch = slice(start, start + 500)
        results.append(table.update(packets(500, dqpn=flow[batch], wire_len=wire_len[batch], ts_ns=ts[batch])))
        assert len(table) <= bound
    exported_before_flush = sum(len(result["packets"]) for result in results)
    results.append(table.flush())
    assert table.early_exports == exported_before_flush > 0
    qp = np.concatenate([result["roce_qp"] for result in results]).astype(np.int64)
    packets_per_flow = np.bincount(qp, weights=np.concatenate([r["packets"] for r in results]), minlength=flows)
    bytes_per_flow = np.bincount(qp, weights=np.concatenate([r["bytes"] for r in results]), minlength=flows)
    assert np.array_equal(packets_per_flow, np.bincount(flow, minlength=flows))
    assert np.array_equal(bytes_per_flow, np.bincount(flow, weights=wire_len, minlength=flows))
