"""`fabricscope sflow --listen HOST:PORT --topology T`: sFlow v5 from the switches that sample.

Flow samples' packet headers go through the collector scaled by their sampling rate (flows carry
`sampling_rate`); counter samples become `counters` rows (source `sflow`); the link comes from the
topology's `sflow:` entries (agent + ifIndex) unless an ERSPAN session or mirror VLAN says otherwise.
"""

from __future__ import annotations

import argparse

from fabricscope.source_service import add_service_arguments, settle

METRICS_PORT = 9711
DEFAULTS = {"listen": "0.0.0.0:6343"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--listen", metavar="HOST:PORT", help="UDP address the agents send to (default: 0.0.0.0:6343)")
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def run(args: argparse.Namespace) -> int:
    from collectors.sflow_source import SflowSource
    from fabricscope.metrics import parse_listen
    from fabricscope.source_service import run_source
    from pipeline.topology import load_topology

    settle(args, "sflow", DEFAULTS)
    host, port = parse_listen(str(args.listen), "--listen")
    source = SflowSource(load_topology(args.topology), host, port, exporter=args.exporter)
    return run_source(args, source)
