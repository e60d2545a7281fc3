"""`fabricscope dashboard [--host 127.0.0.1] [--port 8050] [--auth FILE] [--topology FILE]`: serve the web view.

It only reads the store (every query runs with readonly=1). Listening on anything but loopback shows the
fabric's traffic to the network, so it is refused unless --auth names who may log in.
"""

from __future__ import annotations

import argparse
import os
import sys

from pipeline.errors import InputError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on (default: %(default)s)")
    parser.add_argument("--auth", metavar="FILE", default=os.environ.get("FABRICSCOPE_AUTH"),
                        help="YAML of users (password hashes) and/or tokens; required off loopback")
    parser.add_argument("--topology", metavar="FILE", default=os.environ.get("FABRICSCOPE_TOPOLOGY"),
                        help="topology YAML the map is drawn from (or FABRICSCOPE_TOPOLOGY)")
    parser.add_argument("--history", action="store_true", help="open in history mode instead of following live data")


def run(args: argparse.Namespace) -> int:
    import logging

    from dashboards.app import dashboard_server
    from dashboards.auth import load_auth
    from dashboards.latency import RequestLatency
    from fabricscope.metrics import DashboardMetrics, metrics_page, registry_of
    from pipeline.store import Store, StoreConfig, embedded_dsn
    from pipeline.topology import load_topology

    if not args.topology:
        raise InputError("--topology", "the map needs the topology file: --topology FILE or FABRICSCOPE_TOPOLOGY")
    if not 0 <= args.port <= 65535:
        raise InputError("--port", f"{args.port} is not a TCP port")
    topology = load_topology(args.topology)
    auth = load_auth(args.auth) if args.auth else None
    store = Store(StoreConfig(dsn=args.clickhouse or embedded_dsn(args.data_dir)))
    latency = RequestLatency()
    registry = registry_of(DashboardMetrics(latency))  # on the dashboard's own /metrics, behind --auth
    server = dashboard_server(store, topology, host=args.host, port=args.port, auth=auth, live=not args.history,
                              latency=latency, metrics=lambda: metrics_page(registry))
    server.bind()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request, several per second when live
    with store:
        print(f"fabricscope dashboard on {server.url} (reading {store.config.location})", file=sys.stderr, flush=True)
        server.serve_forever()
    return 0
