"""gNMI / OpenConfig notifications → counters rows: both JSON shapes, leaf-per-update and whole-container
values, last-known leaves merged per interface, and bad lines named with file, line and field."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.gnmi import NotificationParser, read_gnmi_file, split_path
from collectors.snmp import counters_batch
from pipeline import codec, records
from pipeline.errors import InputError
from pipeline.topology import Topology

TOPOLOGY = """\
fabric: lab
spines: [spine1, spine2]
leaves:
  leaf1: {hosts: ["10.0.1.0/24"]}
counters:
  - {device: leaf1, ifname: Ethernet1/1, link: leaf1-spine1}
  - {device: leaf1, ifname: Ethernet2, link: leaf1-spine2}
"""
T0 = 1_700_000_000_000_000_000


def pygnmi(timestamp: int, updates: list[dict[str, Any]], prefix: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"timestamp": timestamp, "update": updates}
    if prefix:
        body["prefix"] = prefix
    return {"update": body}


def gnmic(timestamp: int, updates: list[tuple[str, Any]], prefix: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"source": "leaf1:6030", "subscription-name": "counters", "timestamp": timestamp,
                            "time": "2023-11-14T22:13:20Z",
                            "updates": [{"Path": path, "values": {re.sub(r"\[[^\]]*\]", "", path): value}}
                                        for path, value in updates]}
    if prefix:
        item["prefix"] = prefix
    return item


def container(octets: int) -> dict[str, Any]:
    """A JSON_IETF `state` container value: module-qualified keys, uint64 as strings."""
    return {"openconfig-interfaces:oper-status": "UP", "openconfig-interfaces:counters": {
        "in-octets": str(octets), "out-octets": str(2 * octets), "in-unicast-pkts": "10", "in-multicast-pkts": "2",
        "in-broadcast-pkts": "1", "out-unicast-pkts": "20", "in-errors": "3", "out-errors": "4",
        "in-discards": "5", "out-discards": "6", "in-fcs-errors": "7"}}


def test_split_path_keeps_slashes_inside_keys() -> None:
    assert split_path("/openconfig-interfaces:interfaces/interface[name=Ethernet1/1]/state") == [
        ("interfaces", {}), ("interface", {"name": "Ethernet1/1"}), ("state", {})]
    assert split_path("a[x=1][y=2]/b") == [("a", {"x": "1", "y": "2"}), ("b", {})]


def test_container_value_and_separate_leaves_give_the_same_row(topology: Topology) -> None:
    whole = NotificationParser("leaf1", topology).rows(
        pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet1/1]/state", "val": container(1000)}]), 0)
    leaves = [(f"state/counters/{leaf}", value) for leaf, value in container(1000)["openconfig-interfaces:counters"]
              .items()] + [("state/oper-status", "UP")]
    separate = NotificationParser("leaf1", topology).rows(
        gnmic(T0, leaves, prefix="openconfig-interfaces:interfaces/interface[name=Ethernet1/1]"), 0)
    assert whole == separate
    (row,) = whole
    assert row["ts"] == T0 // 1000 and (row["device"], row["ifname"], row["link"]) == ("leaf1", "Ethernet1/1",
                                                                                       "leaf1-spine1")
    assert (row["in_octets"], row["out_octets"], row["in_pkts"], row["out_pkts"]) == (1000, 2000, 13, 20)
    assert (row["in_errors"], row["out_errors"], row["in_discards"], row["out_discards"], row["fcs_errors"]) == (
        3, 4, 5, 6, 7)
    assert row["oper_up"] == 1 and row["source"] == "gnmi"


def test_last_known_leaves_fill_each_row(topology: Topology) -> None:
    parser = NotificationParser("leaf1", topology)
    prefix = "interfaces/interface[name=Ethernet2]"
    assert parser.rows(pygnmi(T0, [{"path": "state/counters/in-octets", "val": 5}], prefix), 0) == []  # half-known
    (first,) = parser.rows(pygnmi(T0 + 1000, [
        {"path": "state/counters/out-octets", "val": 6},
        {"path": "ethernet/state/port-speed", "val": "openconfig-if-ethernet:SPEED_400GB"},
        {"path": "state/oper-status", "val": "UP"}], prefix), 0)
    assert (first["in_octets"], first["out_octets"], first["speed_bps"], first["oper_up"]) == (5, 6, 400 * 10**9, 1)
    (second,) = parser.rows(pygnmi(T0 + 2000, [{"path": "state/oper-status", "val": "DOWN"},
                                               {"path": "state/counters/in-pkts", "val": "9"}], prefix), 0)
    assert (second["in_octets"], second["out_octets"], second["speed_bps"], second["oper_up"]) == (5, 6, 400e9, 0)
    assert second["in_pkts"] == 9  # no per-cast counters: the total leaf


ECN_BY_QUEUE = {"0": 11, "3": 4_000_000_001, "4": 27}
PFC_BY_PRIORITY = {3: (512, 8), 4: (64, 1)}  # dot1p: (pause frames received, sent)


def qos_container() -> dict[str, Any]:
    """openconfig-qos `interface` entry as JSON_IETF: ECN marks per egress queue, and the openconfig-qos-ext PFC
    counters per priority (module-qualified keys, uint64 as strings)."""
    return {"openconfig-qos:interface": [{
        "interface-id": "Ethernet2",
        "output": {"queues": {"queue": [{"name": name, "state": {"name": name, "ecn-marked-pkts": str(marks)}}
                                        for name, marks in ECN_BY_QUEUE.items()]}},
        "openconfig-qos-ext:pfc": {"pfc-priorities": {"pfc-priority": [
            {"dot1p": dot1p, "state": {"dot1p": dot1p, "statistics": {"pause-frames-rx": str(rx),
                                                                      "pause-frames-tx": str(tx)}}}
            for dot1p, (rx, tx) in PFC_BY_PRIORITY.items()]}},
    }]}


def test_pfc_and_ecn_from_openconfig_qos_are_summed_over_queues_and_priorities(topology: Topology) -> None:
    parser = NotificationParser("leaf1", topology)
    parser.rows(pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet2]/state", "val": container(1)}]), 0)
    (whole,) = parser.rows(pygnmi(T0 + 1, [{"path": "openconfig-qos:qos/interfaces", "val": qos_container()}]), 0)
    assert whole["ecn_marked"] == sum(ECN_BY_QUEUE.values())
    assert (whole["pfc_rx_pause"], whole["pfc_tx_pause"]) == tuple(map(sum, zip(*PFC_BY_PRIORITY.values(),
                                                                                  strict=True)))
    assert whole["in_octets"] == 1  # the interface counters stay as last known
    queue = "qos/interfaces/interface[interface-id=Ethernet2]/output/queues/queue[name=3]/state/ecn-marked-pkts"
    (later,) = parser.rows(gnmic(T0 + 2, [(queue, "4000000101")]), 0)
    assert later["ecn_marked"] == whole["ecn_marked"] + 100  # one queue moved; the others are as last known


def test_a_per_interface_ecn_count_is_not_added_to_the_queues(topology: Topology) -> None:
    """NVIDIA Cumulus reports ECN marks per interface; with the per-queue counts too, they would count twice."""
    parser = NotificationParser("leaf1", topology)
    parser.rows(pygnmi(T0, [{"path": "openconfig-qos:qos/interfaces", "val": qos_container()}]), 0)
    state = container(1)
    state["openconfig-interfaces:counters"]["ecn-marked-pkts"] = "99"
    (row,) = parser.rows(pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet2]/state", "val": state}]), 0)
    assert row["ecn_marked"] == 99


def test_unmapped_interfaces_only_with_all_interfaces(topology: Topology) -> None:
    note = pygnmi(T0, [{"path": "interfaces/interface[name=Management1]/state", "val": container(1)}])
    assert NotificationParser("leaf1", topology).rows(note, 0) == []
    (row,) = NotificationParser("leaf1", topology, all_interfaces=True).rows(note, 0)
    assert (row["ifname"], row["link"]) == ("Management1", "")


def test_file_of_both_shapes_reads_as_typed_batches(tmp_path: Path, topology: Topology) -> None:
    lines = [
        json.dumps({"sync-response": True}),
        json.dumps(pygnmi(T0, [{"path": "interfaces", "val": {"openconfig-interfaces:interface": [
            {"name": "Ethernet1/1", "state": container(100)}, {"name": "Ethernet2", "state": container(200)}]}}])),
        "",
        json.dumps(gnmic(T0 + 10**9, [("interfaces/interface[name=Ethernet2]/state/counters/in-octets",
                                       str(2**64 - 1))])),
    ]
    path = tmp_path / "leaf1.gnmi.jsonl"
    path.write_text("\n".join(lines) + "\n")
    (batch,) = read_gnmi_file(path, "leaf1", topology=topology)
    assert set(batch) == {column.name for column in records.COUNTERS}
    assert list(batch["ifname"]) == ["Ethernet1/1", "Ethernet2", "Ethernet2"]
    assert list(batch["link"]) == ["leaf1-spine1", "leaf1-spine2", "leaf1-spine2"]
    assert batch["in_octets"].dtype == np.uint64 and int(batch["in_octets"][2]) == 2**64 - 1
    assert int(batch["out_octets"][2]) == 400  # last known
    assert batch["ts"][2] == np.datetime64(T0 // 1000 + 10**6, "us")
    assert sum(codec.decode("counters", message.value).num_rows for message in codec.encode("counters", batch)) == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"foo": 1}), "no 'update' or 'updates'"),
        (json.dumps(pygnmi(-5, [])), "timestamp: expected nanoseconds"),
        (json.dumps(pygnmi(2**63, [])), "timestamp: expected nanoseconds"),
        (json.dumps({"update": {"update": "nope"}}), "update: expected a list of objects"),
        (json.dumps({"updates": [{"Path": "x", "values": [1]}]}), "updates: values of 'x' is not an object"),
        (json.dumps(pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet2]/state/counters/in-octets",
                                 "val": "-3"}])),
         r"interfaces/interface\[name=Ethernet2\]/state/counters/in-octets: expected a non-negative integer"),
        (json.dumps(pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet2]/state/counters/in-octets",
                                 "val": str(2**64)}])),
         r"interfaces/interface\[name=Ethernet2\]/state/counters/in-octets: expected a non-negative integer"),
        (json.dumps(pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet2]/state",
                                 "val": {"counters": {"out-errors": 1.5}}}])),
         r"interfaces/interface\[name=Ethernet2\]/state/counters/out-errors: expected a non-negative integer"),
        (json.dumps(pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet2]/ethernet/state/port-speed",
                                 "val": "fast"}])),
         r"interfaces/interface\[name=Ethernet2\]/ethernet/state/port-speed: expected a non-negative integer"),
    ],
)
def test_a_bad_line_is_named(tmp_path: Path, line: str, reason: str) -> None:
    path = tmp_path / "leaf1.gnmi.jsonl"
    good = json.dumps(pygnmi(T0, [{"path": "interfaces/interface[name=Ethernet2]/state", "val": container(1)}]))
    path.write_text(good + "\n" + line + "\n")
    with pytest.raises(InputError, match=f"leaf1.gnmi.jsonl:2: {reason}"):
        list(read_gnmi_file(path, "leaf1"))


JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 2**65) | st.text(max_size=12),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=12)
COUNTER = st.sampled_from([2**64 - 1, 2**64, str(2**64)]) | st.integers(-5, 2**65) | st.from_regex(
    r"[0-9]{1,21}", fullmatch=True) | JSON
STATE = st.fixed_dictionaries(
    {"counters": st.fixed_dictionaries({"in-octets": COUNTER, "out-octets": COUNTER},
                                       optional={"in-pkts": COUNTER, "in-errors": COUNTER})},
    optional={"oper-status": JSON, "speed": COUNTER})
SHAPES = st.one_of(
    JSON,
    st.builds(lambda ts, path, val: {"update": {"timestamp": ts, "update": [{"path": path, "val": val}]}},
              st.sampled_from([2**63 - 1, 2**63]) | st.integers(-5, 2**65) | JSON,
              st.just("interfaces/interface[name=E1]/state") | st.sampled_from(["interfaces", "", "x[y"]),
              STATE | JSON),
    st.builds(lambda prefix, values: {"prefix": prefix, "updates": [{"Path": "state", "values": values}]},
              st.sampled_from(["interfaces/interface[name=E1]", ""]) | JSON, st.dictionaries(st.text(), STATE)),
)


@settings(max_examples=500, deadline=None)
@given(SHAPES)
def test_any_json_is_a_row_or_a_value_error(item: Any) -> None:
    """Whatever a switch or a file holds, parsing gives rows or ValueError (the source counts it as
    malformed, the file reader names it), never another exception; rows always fit the columns."""
    parser = NotificationParser("leaf1", all_interfaces=True)
    with contextlib.suppress(ValueError):
        counters_batch(parser.rows(item, 0))


def test_a_missing_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read"):
        list(read_gnmi_file(tmp_path / "absent.jsonl", "leaf1"))
