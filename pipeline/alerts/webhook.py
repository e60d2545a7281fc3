"""Delivery to one webhook: an ordered queue and a sender thread that retries until the alert is taken.

The detectors never wait on a receiver: alerts are queued (put() never blocks) and one thread per webhook
POSTs the head of its queue, so an incident's open, updates and close arrive in order. A 2xx takes the
alert off the queue. A refused connection, a timeout, a 5xx, 408 or 429 is retried after an exponential
backoff with jitter; an alert still undelivered `retry_window_s` after it was queued, or refused with any
other status (the receiver will not take that body), is dead-lettered: counted, logged once per outage,
and not sent again. A new alert queued behind a long outage still gets its own full window.

For Alertmanager, which resolves an alert its client stops sending, the sender also re-sends the latest
delivered alert of each open incident every `resend_s` while its queue is empty; a failed resend waits for
the next round (the alert itself was delivered).
"""

from __future__ import annotations

import base64
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pipeline.alerts.body import Alert, render
from pipeline.alerts.config import WebhookConfig
from pipeline.errors import FabricscopeError

log = logging.getLogger("fabricscope.alerts")

RETRIABLE_STATUS = frozenset({408, 429})
USER_AGENT = "fabricscope-alerts"
_IDLE_WAIT_S = 0.2


@dataclass(frozen=True)
class WebhookCounts:
    """Alerts delivered by alert state, failed POSTs, alerts dead-lettered, alerts waiting, resends."""

    sent: dict[str, int]
    failed_attempts: int
    dead_letters: int
    queued: int
    resent: int


class RefusedError(FabricscopeError):
    """A POST that did not succeed; `retriable` says whether the same body may succeed later."""

    def __init__(self, reason: str, *, retriable: bool) -> None:
        super().__init__(reason)
        self.retriable = retriable


@dataclass
class _Queued:
    alert: Alert
    ticket: Any  # handed back to on_done: where the alert came from (the notifier's Kafka position)
    deadline: float  # time.monotonic() after which it is dead-lettered


class Webhook:
    """start() → put()… → stop(); `on_done(alert, ticket)` is called from the sender thread once an alert
    leaves the queue (delivered or dead-lettered), in queue order."""

    def __init__(self, config: WebhookConfig, on_done: Callable[[Alert, Any], None]) -> None:
        self.config = config
        self.name = config.label
        self._on_done = on_done
        self._queue: deque[_Queued] = deque()
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._deliver, name=f"fabricscope-alerts-{self.name}", daemon=True)
        self._sent: Counter[str] = Counter()
        self._failed = 0
        self._dead = 0
        self._outage_logged = False
        self._dead_logged = False
        self._firing: dict[str, Alert] = {}  # Alertmanager: the latest alert delivered of each open incident
        self._resent = 0
        self._next_resend = 0.0

    def restore_firing(self, alerts: Iterable[Alert]) -> None:
        """Before start(): the open incidents' latest alerts an earlier run delivered, to keep re-sending."""
        self._firing.update((str(alert.event["event_id"]), alert) for alert in alerts)

    def start(self) -> Webhook:
        self._next_resend = time.monotonic() + self.config.resend_s
        self._thread.start()
        return self

    def put(self, alert: Alert, ticket: Any = None) -> None:
        """Queue an alert behind the others; never blocks."""
        with self._lock:
            self._queue.append(_Queued(alert, ticket, time.monotonic() + self.config.retry_window_s))
            self._lock.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queued alert has left the queue; False if some still wait after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self._queue and time.monotonic() < deadline and self._thread.is_alive():
                self._lock.wait(min(_IDLE_WAIT_S, max(0.0, deadline - time.monotonic())))
            return not self._queue

    def stop(self) -> int:
        """Stop the sender (an attempt in flight ends first); returns the alerts left undelivered."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        self._thread.join()
        with self._lock:
            return len(self._queue)

    def counts(self) -> WebhookCounts:
        with self._lock:
            return WebhookCounts(dict(self._sent), self._failed, self._dead, len(self._queue), self._resent)

    def _head(self) -> _Queued | None:
        with self._lock:
            if not self._queue:
                self._lock.wait(_IDLE_WAIT_S)
            return self._queue[0] if self._queue else None

    def _deliver(self) -> None:
        backoff = self.config.backoff_s
        while not self._stop.is_set():
            head = self._head()
            if head is None:
                self._resend()
                continue
            try:
                self._post(render(head.alert, self.config.format))
            except RefusedError as exc:
                with self._lock:
                    self._failed += 1
                self._log_outage(exc)
                if exc.retriable and time.monotonic() < head.deadline:
                    self._stop.wait(random.uniform(backoff / 2, backoff))
                    backoff = min(backoff * 2, self.config.backoff_max_s)
                    continue
                self._dead_letter(head, exc)
                continue
            backoff = self.config.backoff_s
            self._finish(head, delivered=True)

    def _post(self, body: bytes) -> None:
        headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **self.config.headers}
        if self.config.basic_auth is not None:
            headers["Authorization"] = "Basic " + base64.b64encode(self.config.basic_auth.encode()).decode()
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            status = exc.code
            raise RefusedError(f"HTTP {status}", retriable=status >= 500 or status in RETRIABLE_STATUS) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise RefusedError(str(getattr(exc, "reason", exc)), retriable=True) from exc

    def _resend(self) -> None:
        if self.config.format != "alertmanager" or time.monotonic() < self._next_resend:
            return
        self._next_resend = time.monotonic() + self.config.resend_s
        with self._lock:
            firing = list(self._firing.values())
        for alert in firing:
            with self._lock:
                if self._queue or self._stop.is_set() or alert.event["event_id"] not in self._firing:
                    return  # new alerts go first; the next round resends
            try:
                self._post(render(alert, self.config.format))
            except RefusedError as exc:
                with self._lock:
                    self._failed += 1
                self._log_outage(exc)
                return
            with self._lock:
                self._resent += 1

    def _finish(self, head: _Queued, *, delivered: bool) -> None:
        event_id = str(head.alert.event["event_id"])
        with self._lock:
            self._queue.popleft()
            if head.alert.closes:
                self._firing.pop(event_id, None)
            elif delivered and self.config.format == "alertmanager":
                self._firing[event_id] = head.alert
            if delivered:
                self._sent[head.alert.state] += 1
                if self._outage_logged:
                    log.info("webhook %s: delivering again", self.name)
                self._outage_logged = self._dead_logged = False
            else:
                self._dead += 1
            self._lock.notify_all()
        self._on_done(head.alert, head.ticket)

    def _log_outage(self, exc: RefusedError) -> None:
        if not self._outage_logged:
            self._outage_logged = True
            log.warning("webhook %s failed: %s; retrying with backoff for up to %g s per alert",
                        self.name, exc, self.config.retry_window_s)

    def _dead_letter(self, head: _Queued, exc: RefusedError) -> None:
        if not self._dead_logged:
            self._dead_logged = True
            why = "refused it" if not exc.retriable else f"not taken within {self.config.retry_window_s:g} s"
            log.error("webhook %s: %s alert of incident %s dead-lettered (%s: %s); this outage's dead letters are "
                      "counted in fabricscope_alerts_dead_letter_total", self.name, head.alert.state,
                      head.alert.event["event_id"], why, exc)
        self._finish(head, delivered=False)
