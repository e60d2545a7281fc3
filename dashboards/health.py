"""A link's health over the window, derived from what the store returned: one status a map can colour.

Pure functions of DataFrames. The status order is the order an engineer triages in: a down link hides
everything else, a link that failed within the window and is back comes next (every status covers the whole
window, so a 15-minute view never shows a link that failed twice as green), errors come before congestion,
congestion before a merely busy link.
"""

from __future__ import annotations

import pandas as pd

from pipeline.topology import Topology

STATUSES: tuple[str, ...] = ("down", "failed", "errors", "congested", "hot", "ok", "idle")
BIG_FABRIC_LINKS = 64  # above this many links the map draws one trace per status and labels only the worst
HOT_UTILISATION = 0.7
CONGESTED_CE_RATIO = 0.01
DIRECTION_COLUMNS = ("bytes", "packets", "roce_ect", "roce_ce", "cnp", "pfc_pause")


def links_frame(topology: Topology) -> pd.DataFrame:
    """One row per topology link: link, leaf, spine, speed_gbps, parallel (0 for the first link of a pair)."""
    rows = []
    seen: dict[tuple[str, str], int] = {}
    for link in topology.links:
        pair = (link.leaf, link.spine)
        rows.append((link.id, link.leaf, link.spine, link.speed_gbps, seen.get(pair, 0)))
        seen[pair] = seen.get(pair, 0) + 1
    return pd.DataFrame(rows, columns=["link", "leaf", "spine", "speed_gbps", "parallel"])


def leaves_frame(topology: Topology) -> pd.DataFrame:
    """One row per leaf: leaf, prefixes (comma-separated host prefixes)."""
    return pd.DataFrame(
        [(leaf.name, ", ".join(str(net) for net in leaf.hosts)) for leaf in topology.leaves],
        columns=["leaf", "prefixes"],
    )


def link_health(
    links: pd.DataFrame,
    traffic: pd.DataFrame,
    counters: pd.DataFrame,
    events: pd.DataFrame,
    span_s: float,
) -> pd.DataFrame:
    """Per link: up/down bit rates, utilisation, CE ratio, CNP, PFC, errors, down and the resulting status.

    `traffic` has link, direction and DIRECTION_COLUMNS plus first_seen, last_seen; `counters` has link,
    errors, oper_up; `events` has link, last_down, last_up, congestion_events, failures (in the window).
    Missing links count as silent.
    Rates are over the part of the window the store has data for (`span_s` at most), so a window reaching
    past the newest record does not dilute them.
    """
    frame = links.copy()
    span_s = max(min(span_s, observed_span(traffic)), 1e-3)
    for direction in ("up", "down"):
        part = traffic[traffic["direction"] == direction].set_index("link")
        frame[f"{direction}_bps"] = frame["link"].map(part["bytes"]).fillna(0).astype(float) * 8 / span_s
    totals = traffic.groupby("link")[list(DIRECTION_COLUMNS)].sum()
    for column in DIRECTION_COLUMNS:
        frame[column] = frame["link"].map(totals[column]).fillna(0).astype(float)
    frame["last_seen"] = frame["link"].map(traffic.groupby("link")["last_seen"].max())
    frame["util"] = frame[["up_bps", "down_bps"]].max(axis=1) / (frame["speed_gbps"] * 1e9)
    ect = frame["roce_ect"].where(frame["roce_ect"] > 0)
    frame["ce_ratio"] = (frame["roce_ce"] / ect).fillna(0.0)
    by_link = counters.set_index("link")
    frame["errors"] = frame["link"].map(by_link["errors"]).fillna(0).astype(float)
    frame["oper_up"] = frame["link"].map(by_link["oper_up"]).fillna(1).astype(int)
    by_link = events.set_index("link")
    frame["last_down"] = pd.to_datetime(frame["link"].map(by_link["last_down"]))
    frame["last_up"] = pd.to_datetime(frame["link"].map(by_link["last_up"]))
    frame["congestion_events"] = frame["link"].map(by_link["congestion_events"]).fillna(0).astype(int)
    frame["failures"] = frame["link"].map(by_link["failures"]).fillna(0).astype(int)
    frame["down"] = (frame["oper_up"] == 0) | _failed_since(frame)
    frame["status"] = frame.apply(_status, axis=1)
    return frame


def observed_span(traffic: pd.DataFrame) -> float:
    """Seconds from the first to the last traffic any link reported (infinite when none did)."""
    if traffic.empty:
        return float("inf")
    first, last = pd.to_datetime(traffic["first_seen"]).min(), pd.to_datetime(traffic["last_seen"]).max()
    return max((last - first).total_seconds(), 0.0)


def _failed_since(frame: pd.DataFrame) -> pd.Series:
    """A failure event with no traffic nor link_up after it: the link is still down."""
    later = pd.concat([pd.to_datetime(frame["last_seen"]), frame["last_up"]], axis=1).max(axis=1)
    return frame["last_down"].notna() & (later.isna() | (later <= frame["last_down"]))


def _status(row: pd.Series) -> str:
    if row["down"]:
        return "down"
    if row["failures"] > 0:
        return "failed"
    if row["errors"] > 0:
        return "errors"
    if row["ce_ratio"] >= CONGESTED_CE_RATIO or row["pfc_pause"] > 0 or row["congestion_events"] > 0:
        return "congested"
    if row["util"] >= HOT_UTILISATION:
        return "hot"
    return "ok" if row["packets"] > 0 else "idle"


def worst_first(health: pd.DataFrame) -> pd.DataFrame:
    """Links in triage order (STATUSES), then by utilisation: what a big fabric's map labels and its table lists
    first."""
    rank = health["status"].map({status: at for at, status in enumerate(STATUSES)})
    return health.assign(_rank=rank).sort_values(["_rank", "util", "link"], ascending=[True, False, True],
                                                 kind="stable").drop(columns="_rank")


def ecmp_cells(health: pd.DataFrame, metric: str) -> pd.DataFrame:
    """leaf, spine, value for the heatmap; parallel links of a pair are summed.

    util: % of the pair's capacity in its busier direction; share: % of the leaf's bytes through the spine
    (even ECMP gives 100 / spines); ce: % of ECN-capable RoCE packets marked CE; pfc: pause frames.
    """
    pairs = health.groupby(["leaf", "spine"], sort=False).agg(
        up_bps=("up_bps", "sum"), down_bps=("down_bps", "sum"), speed_gbps=("speed_gbps", "sum"),
        bytes=("bytes", "sum"), roce_ect=("roce_ect", "sum"), roce_ce=("roce_ce", "sum"),
        pfc_pause=("pfc_pause", "sum"),
    ).reset_index()
    if metric == "share":
        leaf_bytes = pairs.groupby("leaf")["bytes"].transform("sum")
        value = (pairs["bytes"] / leaf_bytes.where(leaf_bytes > 0) * 100).fillna(0.0)
    elif metric == "ce":
        value = (pairs["roce_ce"] / pairs["roce_ect"].where(pairs["roce_ect"] > 0) * 100).fillna(0.0)
    elif metric == "pfc":
        value = pairs["pfc_pause"].astype(float)
    else:
        value = pairs[["up_bps", "down_bps"]].max(axis=1) / (pairs["speed_gbps"] * 1e9) * 100
    return pairs.assign(value=value)[["leaf", "spine", "value"]]
