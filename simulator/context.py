"""What traffic models share while they build: fabric, flow and template tables, the packet columns
being collected, the seeded random generator, and host placement."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from simulator.emissions import EmissionsBuilder
from simulator.fabric import Fabric, Host
from simulator.flows import FlowTable
from simulator.routing import Router
from simulator.scenario import Item, Scenario


@dataclass
class Job:
    name: str
    hosts: list[Host]
    period_ms: float
    flows: list[int] = field(default_factory=list)


@dataclass
class Context:
    scenario: Scenario
    fabric: Fabric
    rng: np.random.Generator
    flows: FlowTable = field(default_factory=FlowTable)
    emissions: EmissionsBuilder = field(default_factory=EmissionsBuilder)
    cnp_of: dict[int, tuple[int, int]] = field(default_factory=dict)  # RoCE data flow -> (CNP flow, template)
    jobs: dict[str, Job] = field(default_factory=dict)
    _next_host: int = 0

    def ms(self, value: float) -> int:
        """Scenario time in ms -> absolute ns."""
        return self.scenario.start_ns + round(value * 1e6)

    def until(self, item: Item) -> int:
        """Absolute ns at which a traffic item stops starting anything new: its `end_ms`, or the end of the
        capture when it has none (-1)."""
        end_ms = item.params.get("end_ms", -1.0)
        return self.scenario.end_ns if end_ms < 0 else min(self.ms(end_ms), self.scenario.end_ns)

    def spread_hosts(self, count: int) -> list[Host]:
        """`count` hosts taken round-robin across leaves, so ring neighbours sit behind different leaves."""
        leaves = self.fabric.spec.leaves
        per_leaf = self.fabric.spec.hosts_per_leaf
        chosen = []
        for _ in range(count):
            slot = self._next_host % (leaves * per_leaf)
            chosen.append(self.fabric.hosts[(slot % leaves) * per_leaf + slot // leaves])
            self._next_host += 1
        return chosen

    def host_pair(self) -> tuple[Host, Host]:
        """A random client and server behind different leaves (when there are two leaves)."""
        hosts = self.fabric.hosts
        client = hosts[int(self.rng.integers(len(hosts)))]
        others = [h for h in hosts if h.leaf != client.leaf] or [h for h in hosts if h != client] or hosts
        return client, others[int(self.rng.integers(len(others)))]


class Stretch:
    """How much congestion slows a group of flows at a time: the largest `stretch` of the congestion
    episodes active then on a link and direction one of the flows crosses."""

    def __init__(self, ctx: Context, router: Router, faults: tuple[Item, ...]) -> None:
        self.router = router
        self.episodes: list[tuple[int, int, int, bool, float]] = []  # start, end, link, up, stretch
        for fault in faults:
            if fault.kind != "congestion":
                continue
            p = fault.params
            link = next(link.index for link in ctx.fabric.links if link.id == p["link"])
            self.episodes.append((ctx.ms(p["start_ms"]), ctx.ms(p["end_ms"]), link, p["direction"] == "up",
                                  p["stretch"]))

    def factor(self, flows: list[int], t_ns: int) -> float:
        factor = 1.0
        for start, end, link, up, stretch in self.episodes:
            if start <= t_ns < end and any(self.router.crosses(flow, link, up) for flow in flows):
                factor = max(factor, stretch)
        return factor
