"""Scenario in, four files out: PCAP, PCAP-stem.counters.jsonl, .truth.json and .topology.yaml."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from simulator import faults
from simulator.apps import AppTraffic
from simulator.context import Context, Stretch
from simulator.control import ControlTraffic
from simulator.counters import write_counters
from simulator.emissions import Emissions
from simulator.fabric import Fabric
from simulator.imbalance import ImbalanceRule
from simulator.pcap import PcapWriter
from simulator.rdma import RdmaGroup
from simulator.routing import Ecmp, Records, Router, link_downs
from simulator.scenario import APP_KINDS, CONTROL_KINDS, Scenario
from simulator.templates import TemplateTable
from simulator.truth import Capture, ground_truth


@dataclass(frozen=True, slots=True)
class Outputs:
    pcap: Path
    counters: Path
    truth: Path
    topology: Path
    packets: int

    @staticmethod
    def beside(pcap: Path, packets: int = 0) -> Outputs:
        stem = pcap.with_suffix("")
        return Outputs(pcap, Path(f"{stem}.counters.jsonl"), Path(f"{stem}.truth.json"),
                       Path(f"{stem}.topology.yaml"), packets)


def generate(scenario: Scenario, pcap: Path, seed: int | None = None, *, imbalance: ImbalanceRule,
             progress: bool = False) -> Outputs:
    """Generate the capture; same scenario and seed give byte-identical files. `imbalance`: the ECMP
    detector's parameters, which its truth applies (pipeline.detect.ecmp.EcmpConfig() by default)."""
    seed = scenario.seed if seed is None else seed
    rng = np.random.default_rng(seed)
    fabric = Fabric(scenario.fabric)
    ctx = Context(scenario, fabric, rng)
    table = TemplateTable()
    models: list[RdmaGroup | AppTraffic | ControlTraffic] = []
    for item in scenario.traffic:
        if item.kind in APP_KINDS:
            models.append(AppTraffic(item, ctx, table))
        elif item.kind in CONTROL_KINDS:
            models.append(ControlTraffic(item, ctx, table))
        else:
            models.append(RdmaGroup(item, ctx, table))
    episodes = faults.episodes(ctx, table)
    downs = link_downs(fabric, scenario.faults, scenario.start_ns)
    router = Router(fabric, ctx.flows, Ecmp(fabric, scenario.faults, seed), downs)
    stretch = Stretch(ctx, router, scenario.faults)
    for model in models:
        model.emit(ctx, stretch)
    base = ctx.emissions.build()
    templates = table.arrays()
    records, delivered = router.route(base, rng)
    marks = faults.mark(records, base, templates, episodes, rng)
    cnps, cnp_episode = faults.notifications(ctx, records, marks, base, delivered, rng)
    cnp_records, _ = router.route(cnps, rng, first_packet=len(base))
    pauses = faults.pauses(episodes)
    pause_records, _ = router.route(pauses, rng, first_packet=len(base) + len(cnps))
    emissions = Emissions.concat([base, cnps, pauses])
    merged = Records.concat([records, cnp_records, pause_records])
    order = merged.time_order()
    extra = len(cnp_records) + len(pause_records)
    marks = faults.Marks(
        ce=np.concatenate([marks.ce, np.zeros(extra, bool)])[order],
        marked_here=np.concatenate([marks.marked_here, np.zeros(extra, bool)])[order],
        episode=np.concatenate([marks.episode, np.full(extra, -1, np.int16)])[order],
    )
    merged = merged.take(order)
    outputs = Outputs.beside(pcap, len(merged))
    written = PcapWriter(fabric, scenario.capture, templates).write(pcap, merged, emissions, marks.ce,
                                                                    progress=progress)
    topology = fabric.write_topology(outputs.topology)
    is_pause = np.isin(emissions.flow[merged.packet], [ep.pfc_flow for ep in episodes])
    write_counters(outputs.counters, fabric, scenario.start_ns, scenario.end_ns, merged, written, is_pause,
                   marks.marked_here, downs, rng, on_change=scenario.capture.oper_on_change)
    all_cnp_episode = np.concatenate([np.full(len(base), -1, np.int16), cnp_episode,
                                      np.full(len(pauses), -1, np.int16)])
    truth = ground_truth(Capture(
        scenario=scenario, seed=seed, fabric=fabric, topology=topology, flows=ctx.flows, emissions=emissions,
        templates=templates, records=merged, written=written, marks=marks, cnp_episode=all_cnp_episode,
        downs=downs, episodes=episodes, jobs=ctx.jobs,
    ), imbalance)
    outputs.truth.write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    return outputs
