"""Serving the Dash app: a threaded WSGI server that binds on start() and stops on stop().

Binding is where the user learns that a port is taken or that another address needs --auth, so both
become one-line InputErrors here instead of tracebacks from deep in the server.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import threading
from dataclasses import dataclass

from werkzeug.serving import BaseWSGIServer, make_server

from pipeline.errors import InputError
from pipeline.settings import IN_CODE, Origin

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8050
LISTEN_BACKLOG = 128


@dataclass(frozen=True, kw_only=True)
class DashboardConfig:
    """The `dashboard` command's settings (config section `dashboard:`; `demo` serves with them too): where
    it listens, the `auth` file of who may log in (required off loopback), and whether it opens in history
    mode instead of following live data."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    auth: str | None = None
    history: bool = False

    def validate(self, origin: Origin = IN_CODE) -> None:
        if not 0 <= self.port <= 65535:
            raise origin.error("port", f"{self.port} is not a TCP port")
        if not self.host:
            raise origin.error("host", "must name an address to listen on")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, has_auth: bool) -> None:
    """Anything but loopback serves the fabric's traffic to the network: only behind a login."""
    if not is_loopback(host) and not has_auth:
        raise InputError("--host", f"binding {host} exposes the dashboard beyond this machine; "
                         "give --auth FILE (users or tokens) or bind 127.0.0.1")


class DashboardServer:
    """The dashboard's HTTP server; the constructor binds nothing."""

    def __init__(self, wsgi_app: object, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> None:
        self.wsgi_app = wsgi_app
        self.host = host
        self.port = port
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def bind(self) -> None:
        """Listen on host:port; werkzeug is handed the bound socket because it exits the process on a bind
        error, where the command wants a one-line InputError."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self.port))
            listener.listen(LISTEN_BACKLOG)
        except OSError as exc:
            listener.close()
            if exc.errno == errno.EADDRINUSE:
                raise InputError("--port", f"port {self.port} on {self.host} is already in use; "
                                 "choose another --port") from None
            raise InputError("--host", f"cannot listen on {self.host}:{self.port}: {exc.strerror}") from None
        with listener:
            self._server = make_server(self.host, self.port, self.wsgi_app,  # type: ignore[arg-type]
                                       threaded=True, fd=listener.fileno())
        self.port = int(self._server.port)

    def start(self) -> DashboardServer:
        """Bind (unless bind() already did) and serve in a background thread until stop()."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        self._thread = threading.Thread(target=self._server.serve_forever, name="dashboard", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the `dashboard` command), binding first if needed."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def stop(self) -> None:
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join()
            self._server.server_close()
        self._server = self._thread = None
