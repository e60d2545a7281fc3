"""`fabricscope sflow --listen HOST:PORT --topology T`: sFlow v5 from the switches that sample.

Flow samples' packet headers go through the collector scaled by their sampling rate (flows carry
`sampling_rate`); counter samples become `counters` rows (source `sflow`); the link comes from the
topology's `sflow:` entries (agent + ifIndex) unless an ERSPAN session or mirror VLAN says otherwise.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from collectors.sflow_source import SflowConfig
from fabricscope.options import option
from fabricscope.source_service import add_max_flows_argument, add_service_arguments

if TYPE_CHECKING:
    from fabricscope.config import Config

METRICS_PORT = 9711


def add_arguments(parser: argparse.ArgumentParser) -> None:
    option(parser, SflowConfig, "listen", "--listen", metavar="HOST:PORT", help="UDP address the agents send to")
    add_max_flows_argument(parser)
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def run(args: argparse.Namespace, config: Config) -> int:
    from collectors.collector import CollectorConfig
    from collectors.sflow_source import SflowSource
    from fabricscope.source_service import run_source
    from pipeline.topology import load_topology

    source = SflowSource(load_topology(config.required_topology()), config.sflow, exporter=config.service.exporter,
                         collector_config=CollectorConfig(max_flows=config.service.max_flows, job_names=config.jobs))
    return run_source(args, config, source)
