"""`fabricscope dashboard [--host 127.0.0.1] [--port 8050] [--auth FILE] [--topology FILE]`: serve the web view.

It only reads the store (every query runs with readonly=1). Listening on anything but loopback shows the
fabric's traffic to the network, so it is refused unless --auth names who may log in.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from dashboards.server import DashboardConfig
from fabricscope.options import option
from pipeline.errors import InputError

if TYPE_CHECKING:
    from fabricscope.config import Config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_listen_arguments(parser)
    option(parser, DashboardConfig, "auth", "--auth", metavar="FILE", default=os.environ.get("FABRICSCOPE_AUTH"),
           help="YAML of users (password hashes) and/or tokens; required off loopback")
    parser.add_argument("--topology", metavar="FILE", default=os.environ.get("FABRICSCOPE_TOPOLOGY"),
                        help="topology YAML the map is drawn from (or FABRICSCOPE_TOPOLOGY)")
    option(parser, DashboardConfig, "history", "--history", action="store_true",
           help="open in history mode instead of following live data")


def add_listen_arguments(parser: argparse.ArgumentParser) -> None:
    """--host and --port (also the demo's)."""
    option(parser, DashboardConfig, "host", "--host", help="address to listen on")
    option(parser, DashboardConfig, "port", "--port", type=int, help="port to listen on")


def run(args: argparse.Namespace, config: Config) -> int:
    import logging

    from dashboards.app import dashboard_server
    from dashboards.auth import load_auth
    from dashboards.latency import RequestLatency
    from fabricscope.lifecycle import service_setup
    from fabricscope.metrics import DashboardMetrics, metrics_page, registry_of
    from fabricscope.packet_source import StorePackets
    from pipeline.store import Store, StoreConfig, embedded_dsn
    from pipeline.topology import load_topology

    if not config.topology:
        raise InputError("--topology", "the map needs the topology file: --topology FILE or FABRICSCOPE_TOPOLOGY")
    settings = config.dashboard
    topology = load_topology(config.topology)
    auth = load_auth(settings.auth) if settings.auth else None
    store = Store(StoreConfig(dsn=args.clickhouse or embedded_dsn(args.data_dir)))
    latency = RequestLatency()
    registry = registry_of(DashboardMetrics(latency))  # on the dashboard's own /metrics, behind --auth
    server = dashboard_server(store, topology, host=settings.host, port=settings.port, auth=auth,
                              live=not settings.history, latency=latency, metrics=lambda: metrics_page(registry),
                              packets=StorePackets(store, topology, args.data_dir))
    server.bind()  # a taken port is reported before anything else starts
    try:
        # werkzeug logs a line per request, several per second when live
        stop = service_setup(config.service.log_level, quiet={"werkzeug": logging.WARNING})
        with store:
            server.start()
            print(f"fabricscope dashboard on {server.url} (reading {store.config.location})", file=sys.stderr,
                  flush=True)
            while not stop.wait(1.0):
                pass
    finally:
        server.stop()
    return 0
