"""A component's `run(stop)` loop in a background thread: the start()/stop() half of the lifecycle that the
sink and the detector service share, so both stop, join and re-raise what made them fail the same way."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Background:
    """Runs `run(stop)` in a daemon thread named `name`; `error` holds what ended it, if anything did, and
    `on_error` (e.g. waking waiters) is called then."""

    def __init__(self, name: str, run: Callable[[threading.Event], None], log: logging.Logger,
                 on_error: Callable[[], None] | None = None) -> None:
        self.name = name
        self.error: BaseException | None = None
        self._run = run
        self._log = log
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self._thread.start()

    def _target(self) -> None:
        try:
            self._run(self._stop)
        except BaseException as exc:
            self.error = exc
            self._log.exception("%s stopped on an error", self.name)
            if self._on_error is not None:
                self._on_error()

    def stop(self, timeout_s: float | None = None) -> None:
        """Ask the loop to stop, wait for it, and re-raise what made it fail."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        if self.error is not None:
            raise self.error
