"""Search: a link or switch name, a host address (or its start) or a job name finds the matching links, hosts and
jobs of the window, each a link to the page filtered by it, so nobody has to know which field a name belongs in.

Links match by name from the topology (a leaf or spine name finds all its links) and by address (an IP behind
a leaf finds that leaf's links); hosts and jobs come from the flows of the window (`queries.search`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass

import pandas as pd

from dashboards.state import ViewState, state_link
from pipeline.topology import Topology
from pipeline.units import si_bytes

MIN_TEXT = 2  # one character matches half the fabric
MAX_TEXT = 64
MAX_MATCHES = 8  # hosts and jobs, each
MAX_LINK_MATCHES = 32  # every uplink of a leaf on the widest fabric (32 spines)
KINDS = ("link", "host", "job")  # each the ViewState field a match of that kind sets


@dataclass(frozen=True, slots=True)
class Match:
    """One search result: what it is, the value it filters by, and a few words on why it matched."""

    kind: str
    value: str
    note: str = ""


def search_text(value: object) -> str:
    """What the user typed, stripped and bounded; '' when too short to search for (or not text)."""
    if not isinstance(value, str):
        return ""
    text = "".join(ch for ch in value if ch.isprintable()).strip()[:MAX_TEXT]
    return text if len(text) >= MIN_TEXT else ""


def link_matches(text: str, topology: Topology) -> list[Match]:
    """Links whose name holds `text` (any case), or, for an address, the links of the leaf it sits behind."""
    wanted = text.lower()
    named = [Match("link", link) for link in topology.link_ids() if wanted in link.lower()]
    if named:
        return named[:MAX_LINK_MATCHES]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return []
    leaves = {leaf.name for leaf in topology.leaves
              if any(address.version == net.version and address in net for net in leaf.hosts)}
    return [Match("link", link.id, f"{text} is behind {link.leaf}") for link in topology.links
            if link.leaf in leaves][:MAX_LINK_MATCHES]


def flow_matches(found: pd.DataFrame) -> list[Match]:
    """Hosts and jobs from `queries.search`, with the bytes they moved in the window."""
    return [Match(str(row.kind), str(row.value), si_bytes(float(row.bytes)))
            for row in found.itertuples(index=False)]


def results_markdown(matches: list[Match], state: ViewState, text: str) -> str:
    """One line per kind: each match a link to the page as it is, filtered by that match."""
    if not text:
        return ""
    if not matches:
        return f"Nothing in this window matches “{text}” (links, hosts or jobs)."
    lines = []
    for kind in KINDS:
        links = [_result_link(match, state) for match in matches if match.kind == kind]
        if links:
            lines.append(f"**{kind}s**: " + " · ".join(links))
    return "  \n".join(lines)


def _result_link(match: Match, state: ViewState) -> str:
    if match.kind == "link":
        filtered = dataclasses.replace(state, link=match.value)
    elif match.kind == "host":
        filtered = dataclasses.replace(state, host=match.value)
    else:
        filtered = dataclasses.replace(state, job=match.value)
    return state_link(match.value, filtered) + (f" ({match.note})" if match.note else "")
