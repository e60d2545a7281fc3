"""What every long-running service (the live sources, `ingest`, `dashboard`) sets up the same way before it
starts its components: logging to stderr at the configured level, and SIGTERM / SIGINT turned into a stop
event, so each stops its components (start()/stop()) and flushes instead of dying mid-write."""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Mapping

LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


def service_setup(log_level: str, *, quiet: Mapping[str, int] | None = None) -> threading.Event:
    """Configure logging at `log_level` and return the event SIGTERM or SIGINT sets. `quiet` raises the level
    of chatty libraries' loggers (e.g. kafka-python's per-retry lines) unless `log_level` is DEBUG."""
    logging.basicConfig(level=log_level, stream=sys.stderr, format=LOG_FORMAT)
    if log_level != "DEBUG":
        for name, level in (quiet or {}).items():
            logging.getLogger(name).setLevel(level)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
