"""Search over the sample topology: what a name or address finds, and the links it offers."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qs

import pandas as pd

from dashboards.search import Match, flow_matches, link_matches, results_markdown, search_text
from dashboards.state import ViewState
from pipeline.topology import load_topology

TOPOLOGY = load_topology(Path(__file__).resolve().parents[2] / "samples" / "topology.yaml")


def test_a_switch_name_finds_its_links_and_an_address_the_links_of_its_leaf() -> None:
    assert [m.value for m in link_matches("leaf3", TOPOLOGY)] == ["leaf3-spine1", "leaf3-spine2"]
    assert [m.value for m in link_matches("SPINE2", TOPOLOGY)] == [f"leaf{n}-spine2" for n in range(1, 5)]
    behind = link_matches("fd00:0:0:2::7", TOPOLOGY)
    assert [m.value for m in behind] == ["leaf2-spine1", "leaf2-spine2"]
    assert behind[0].note == "fd00:0:0:2::7 is behind leaf2"
    assert link_matches("10.9.9.9", TOPOLOGY) == [] and link_matches("llama", TOPOLOGY) == []


def test_what_is_searched_for_is_bounded_printable_text() -> None:
    assert search_text("  llama\x00-70b \n") == "llama-70b"
    assert search_text("l") == "" and search_text(None) == "" and search_text(["leaf1"]) == ""
    assert len(search_text("x" * 500)) == 64


def test_each_match_links_to_the_page_filtered_by_it() -> None:
    found = pd.DataFrame([("host", "10.0.1.10", 2_000_000), ("job", "llama-70b", 5_000)],
                         columns=["kind", "value", "bytes"])
    matches = [Match("link", "leaf1-spine1"), *flow_matches(found)]
    state = ViewState(live=False, range="15m", app="rocev2")
    text = results_markdown(matches, state, "1")
    lines = text.split("  \n")
    assert lines[0] == "**links**: [leaf1-spine1](?live=0&range=15m&link=leaf1-spine1&app=rocev2)"
    assert lines[1] == "**hosts**: [10.0.1.10](?live=0&range=15m&app=rocev2&host=10.0.1.10) (2.00 MB)"
    job_query = lines[2].split("(?", 1)[1].split(")", 1)[0]
    assert parse_qs(job_query)["job"] == ["llama-70b"] and lines[2].endswith("(5.00 kB)")
    assert results_markdown([], state, "zz") == "Nothing in this window matches “zz” (links, hosts or jobs)."
    assert results_markdown(matches, state, "") == ""
    hostile = results_markdown([Match("job", "a](javascript:x)")], state, "a]")
    assert "](javascript" not in hostile
