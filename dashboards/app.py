"""The Dash application: built from an open store and a topology, served by run_dashboard.

The layout is built once per app from the topology only and holds no data; every number comes from the
store through callbacks, per request, so many users can share one process.
"""

from __future__ import annotations

from collections.abc import Callable

import dash
from flask import Response

from dashboards import callbacks
from dashboards.auth import AuthConfig, install_auth
from dashboards.latency import RequestLatency, install_request_timing
from dashboards.layout import layout
from dashboards.packets import PacketSource, install_pcap_route
from dashboards.server import DEFAULT_HOST, DEFAULT_PORT, DashboardServer, check_exposure
from pipeline.store import Store
from pipeline.topology import Topology

METRICS_ROUTE = "/metrics"
# Renders the metrics page: (body, content type); the wiring supplies it, so this package needs no metrics library.
MetricsPage = Callable[[], tuple[bytes, str]]


def create_app(store: Store, topology: Topology, *, auth: AuthConfig | None = None, live: bool = True,
               latency: RequestLatency | None = None, metrics: MetricsPage | None = None,
               packets: PacketSource | None = None) -> dash.Dash:
    """The dashboard for `topology` reading `store` (already open); `live` follows the newest data by default,
    `auth` requires a login on every request, `latency` times every request, `metrics` serves /metrics and
    `packets` the packets view and its pcap download (both behind the same login as the pages)."""
    # update_title "": the tab keeps its title while callbacks run
    app = dash.Dash(__name__, title=f"fabricscope · {topology.fabric}", update_title="")
    app.layout = layout(topology, live)
    callbacks.register(app, store, topology, live=live, packets=packets)
    if packets is not None:
        install_pcap_route(app.server, packets)
    if metrics is not None:
        render = metrics

        def metrics_route() -> Response:
            body, content_type = render()
            return Response(body, content_type=content_type)

        app.server.add_url_rule(METRICS_ROUTE, "metrics", metrics_route)
    if latency is not None:
        install_request_timing(app.server, latency)  # before the login check, so refusals are timed too
    if auth is not None:
        install_auth(app.server, auth)
    return app


def dashboard_server(store: Store, topology: Topology, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                     auth: AuthConfig | None = None, live: bool = True,
                     latency: RequestLatency | None = None, metrics: MetricsPage | None = None,
                     packets: PacketSource | None = None) -> DashboardServer:
    """A server for the dashboard, not yet bound; refuses a non-loopback host without auth."""
    check_exposure(host, auth is not None)
    app = create_app(store, topology, auth=auth, live=live, latency=latency, metrics=metrics, packets=packets)
    return DashboardServer(app.server, host=host, port=port)


def run_dashboard(store: Store, topology: Topology, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                  auth: AuthConfig | None = None, live: bool = True) -> None:
    """Serve the dashboard until interrupted (the `dashboard` command; the demo uses dashboard_server)."""
    server = dashboard_server(store, topology, host=host, port=port, auth=auth, live=live)
    server.bind()
    print(f"fabricscope dashboard on {server.url}", flush=True)
    server.serve_forever()
