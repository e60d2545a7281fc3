"""`fabricscope snmp --target DEVICE=HOST[:PORT]... --topology T`: poll the switches' IF-MIB counters.

Every interval each target's ifTable/ifXTable columns are walked with GETBULK (SNMPv2c), 64-bit counters
where the agent has them; interfaces the topology's `counters:` entries name become `counters` rows
(source `snmp`). Targets come from the flags or, with their own community and timeouts, from the
`snmp.targets` list of the config file.
"""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from collectors.snmp import SnmpConfig
from fabricscope.options import option
from fabricscope.source_service import add_service_arguments
from pipeline.source import Source

if TYPE_CHECKING:
    from fabricscope.config import Config

METRICS_PORT = 9712


def add_arguments(parser: argparse.ArgumentParser) -> None:
    option(parser, SnmpConfig, "targets", "--target", action="append", metavar="DEVICE=HOST[:PORT]",
           help="a switch's agent, repeatable; DEVICE is its name in the topology's counters entries")
    option(parser, SnmpConfig, "community", "--community", default=os.environ.get("FABRICSCOPE_SNMP_COMMUNITY"),
           help="SNMPv2c community (or FABRICSCOPE_SNMP_COMMUNITY)")
    option(parser, SnmpConfig, "interval", "--interval", type=float, metavar="S", help="seconds between polls")
    option(parser, SnmpConfig, "all_interfaces", "--all-interfaces", action="store_true",
           help="also record interfaces the topology does not map (link '')")
    add_service_arguments(parser, metrics_port=METRICS_PORT)


def build_source(config: Config) -> Source:
    """The source the settings describe (nothing connects before it runs)."""
    from collectors.snmp import SnmpSource
    from pipeline.topology import load_topology

    return SnmpSource(load_topology(config.required_topology()), config.snmp)


def run(args: argparse.Namespace, config: Config) -> int:
    from fabricscope.source_service import run_source

    return run_source(args, config, build_source(config))
