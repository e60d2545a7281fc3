"""Topology file: the contract of DESIGN.md section 4, good and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.addresses import words_of
from pipeline.errors import TopologyError
from pipeline.topology import DOWN, UNKNOWN, UP, load_topology

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "topology.yaml"

MINIMAL = """\
fabric: pod1
speed_gbps: 400
spines: [spine1, spine2]
leaves:
  leaf1: {hosts: ["10.0.1.0/24"]}
  leaf2: {hosts: ["10.0.2.0/24", "fd00:0:0:2::/64"]}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    return path


def test_sample_topology_links_and_mirrors() -> None:
    topo = load_topology(SAMPLE)
    assert topo.fabric == "pod1"
    assert len(topo.links) == 8
    assert topo.link_for_erspan(32) == "leaf3-spine2"
    assert topo.link_for_sflow("192.0.2.4", 50) == "leaf4-spine2"
    assert topo.link_for_counter("spine1", "Ethernet2") == "leaf2-spine1"
    assert topo.link_for_counter("leaf2", "Ethernet49") == "leaf2-spine1"
    assert topo.link("leaf2-spine1").leaf_port == "Ethernet49"


def test_default_links_are_every_leaf_spine_pair(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, MINIMAL))
    assert topo.link_ids() == ["leaf1-spine1", "leaf1-spine2", "leaf2-spine1", "leaf2-spine2"]
    assert all(link.speed_gbps == 400 for link in topo.links)


def test_parallel_links_are_numbered(tmp_path: Path) -> None:
    text = MINIMAL + (
        "links:\n"
        "  - {leaf: leaf1, spine: spine1, leaf_port: Ethernet49, spine_port: Ethernet1}\n"
        "  - {leaf: leaf1, spine: spine1, leaf_port: Ethernet50, spine_port: Ethernet2, speed_gbps: 100}\n"
    )
    topo = load_topology(write(tmp_path, text))
    assert topo.link_ids() == ["leaf1-spine1", "leaf1-spine1#2"]
    assert topo.link("leaf1-spine1#2").speed_gbps == 100


def test_a_link_line_written_twice_is_an_error_not_a_parallel_link(tmp_path: Path) -> None:
    """Issue 13: the same link line twice became `leaf1-spine1#2`; it names both lines now."""
    line = "  - {leaf: leaf1, spine: spine1, leaf_port: Ethernet49, spine_port: Ethernet1}\n"
    path = write(tmp_path, MINIMAL + "links:\n" + line + "  - {leaf: leaf2, spine: spine1}\n" + line)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.line == 10
    assert "link leaf1-spine1 is listed twice (lines 8 and 10)" in caught.value.reason


def test_a_port_cabled_to_two_links_is_an_error(tmp_path: Path) -> None:
    text = MINIMAL + (
        "links:\n"
        "  - {leaf: leaf1, spine: spine1, leaf_port: Ethernet49}\n"
        "  - {leaf: leaf1, spine: spine2, leaf_port: Ethernet49}\n"
    )
    with pytest.raises(TopologyError) as caught:
        load_topology(write(tmp_path, text))
    assert caught.value.line == 9
    assert caught.value.reason == "leaf1 Ethernet49 is already the port of link leaf1-spine1 (line 8)"


def test_mirror_kinds_resolve(tmp_path: Path) -> None:
    text = MINIMAL + (
        "mirrors:\n"
        "  - {erspan_session: 11, link: leaf1-spine1}\n"
        "  - {vlan: 3011, link: leaf1-spine2}\n"
        "  - {interface: tap-l2s1, link: leaf2-spine1}\n"
    )
    topo = load_topology(write(tmp_path, text))
    assert topo.link_for_erspan(11) == "leaf1-spine1"
    assert topo.link_for_vlan(3011) == "leaf1-spine2"
    assert topo.link_for_interface("tap-l2s1") == "leaf2-spine1"
    assert topo.erspan_table()[11] == 0 and topo.erspan_table()[12] == -1
    assert topo.vlan_table()[3011] == 1


def test_direction_scalar(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, MINIMAL))
    assert topo.direction("leaf1-spine1", "10.0.2.5", "10.0.1.9") == "down"
    assert topo.direction("leaf1-spine1", "10.0.1.9", "10.0.2.5") == "up"
    assert topo.direction("leaf1-spine1", "192.0.2.1", "192.0.2.2") == "unknown"
    assert topo.direction("leaf2-spine2", "10.0.1.1", "fd00:0:0:2::7") == "down"


def test_direction_vectorised_matches_scalar(tmp_path: Path) -> None:
    topo = load_topology(write(tmp_path, MINIMAL))
    cases = [
        ("leaf1-spine1", "10.0.2.5", "10.0.1.9"),
        ("leaf1-spine1", "10.0.1.9", "10.0.2.5"),
        ("leaf2-spine1", "10.0.1.9", "10.0.2.5"),
        ("leaf2-spine2", "fd00:0:0:2::1", "8.8.8.8"),
        ("leaf1-spine2", "192.0.2.1", "192.0.2.2"),
    ]
    link_index = np.array([topo.link(c[0]).index for c in cases] + [-1], dtype=np.int16)
    src = np.array([words_of(c[1]) for c in cases] + [words_of("10.0.1.1")], dtype=np.uint64)
    dst = np.array([words_of(c[2]) for c in cases] + [words_of("10.0.2.1")], dtype=np.uint64)
    codes = topo.directions(link_index, src[:, 0], src[:, 1], dst[:, 0], dst[:, 1])
    names = {UNKNOWN: "unknown", UP: "up", DOWN: "down"}
    assert [names[int(c)] for c in codes] == [topo.direction(*c) for c in cases] + ["unknown"]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        (MINIMAL.replace("fabric: pod1", "fabric: ''"), 1, "'fabric'"),
        (MINIMAL.replace("spines: [spine1, spine2]", "spines: [spine1, spine1]"), 3, "listed twice"),
        (MINIMAL.replace('"10.0.2.0/24"', '"10.0.2.0/33"'), 6, "not an IP prefix"),
        (MINIMAL.replace('"10.0.2.0/24"', '"10.0.1.128/25"'), 6, "overlaps"),
        (MINIMAL + "links:\n  - {leaf: leaf9, spine: spine1}\n", 8, "leaf 'leaf9'"),
        (MINIMAL + "mirrors:\n  - {erspan_session: 11, link: leaf1-spine7}\n", 8, "link 'leaf1-spine7'"),
        (MINIMAL + "mirrors:\n  - {erspan_session: 11, link: [leaf1-spine1]}\n", 8, "link '['leaf1-spine1']'"),
        (MINIMAL + "mirrors:\n  - {erspan_session: 4000, link: leaf1-spine1}\n", 8, "0..1023"),
        (
            MINIMAL + "mirrors:\n  - {vlan: 10, link: leaf1-spine1}\n  - {vlan: 10, link: leaf2-spine1}\n",
            9,
            "already mapped",
        ),
        (MINIMAL + "sflow:\n  - {agent: not-an-ip, ifindex: 1, link: leaf1-spine1}\n", 8, "not an IP address"),
        (MINIMAL + "spinez: []\n", 7, "unknown key 'spinez'"),
        (MINIMAL + "  leaf3: {hosts: [10.0.3.0/24]\n", 8, "invalid YAML"),
        (MINIMAL.replace("speed_gbps: 400", "speed_gbps: -1"), 2, "positive"),
        (MINIMAL.replace("speed_gbps: 400", "speed_gbps: .nan"), 2, "positive"),
        (MINIMAL.replace("speed_gbps: 400", "speed_gbps: 1.0e+400"), 2, "positive"),
        (MINIMAL + "links:\n  - {leaf: leaf1, spine: spine1, leaf_port: [1]}\n", 8, "'leaf_port'"),
        (MINIMAL.replace("fabric: pod1", "fabric: 2026-02-30"), 1, "invalid timestamp value"),
        (MINIMAL + "counters:\n  - {device: 'a\x01', ifname: b, link: leaf1-spine1}\n", 8, "#x0001"),
    ],
)
def test_bad_files_name_file_line_and_reason(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert caught.value.source == str(path)
    assert caught.value.line == line, str(caught.value)
    assert fragment in caught.value.reason
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert "\n" not in str(caught.value)


def test_not_utf8_is_named_with_its_line(tmp_path: Path) -> None:
    """Issue 13: a topology that is not UTF-8 was a UnicodeDecodeError traceback."""
    path = tmp_path / "topology.yaml"
    path.write_bytes(MINIMAL.encode().replace(b"spine2]", b"spine\xe92]"))
    with pytest.raises(TopologyError) as caught:
        load_topology(path)
    assert (caught.value.line, caught.value.reason) == (3, "not UTF-8 text (byte 0xe9)")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(tmp_path / "absent.yaml")
