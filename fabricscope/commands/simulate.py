"""`fabricscope simulate`: a synthetic fabric capture, its counters and ground truth from a scenario."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabricscope.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", required=True, metavar="FILE", help="scenario YAML (see samples/)")
    parser.add_argument("--out", required=True, metavar="PCAP",
                        help="pcap to write; PCAP-stem.counters.jsonl, .truth.json and .topology.yaml go beside it")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the scenario's)")


def run(args: argparse.Namespace, config: Config) -> int:
    del config  # no component of this command is configured in --config
    from pipeline.detect.ecmp import EcmpConfig
    from simulator.generator import generate
    from simulator.scenario import load_scenario

    scenario = load_scenario(args.scenario)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    outputs = generate(scenario, out, args.seed, progress=sys.stderr.isatty(), imbalance=EcmpConfig())
    elapsed = time.perf_counter() - began
    print(f"{outputs.pcap}: {outputs.packets} packets in {elapsed:.2f} s "
          f"({outputs.packets / max(elapsed, 1e-9):,.0f} pkts/s); {outputs.counters}, {outputs.truth}, "
          f"{outputs.topology}")
    return 0
