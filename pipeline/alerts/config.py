"""The `alerts:` section of the config file: the webhooks incidents are delivered to.

    alerts:
      webhooks:
        - name: pager                         # the `webhook` label of the metrics (default: the URL's host[:port])
          url: http://alertmanager:9093/api/v2/alerts
          format: alertmanager                # or json (the event row)
          kinds: [fast_recovery, link_down]   # default: every kind
          headers: {X-Scope-OrgID: fabric}    # added to every request
          basic_auth: "user:password"         # optional
          timeout_s: 5                        # one request
          backoff_s: 1                        # first retry after ~this, doubling (with jitter) up to backoff_max_s
          backoff_max_s: 60
          retry_window_s: 600                 # an alert undelivered this long after it was queued is dead-lettered
          resend_s: 60                        # alertmanager: open incidents sent again this often (see below)

Alertmanager resolves an alert that is not sent again within its `resolve_timeout` (5 min by default) and
expects its clients to re-send active alerts: for an `alertmanager` webhook, the latest alert of each open
incident is sent again every `resend_s` (same body, same dedupe key) until its close goes out.

A bad section, key or value is an InputError naming the file and line.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import InputError
from pipeline.labels import EVENT_KINDS
from pipeline.yamlfile import LineDict, LineList, line_of

SECTION = "alerts"
FORMATS = ("alertmanager", "json")
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_BACKOFF_S = 1.0
DEFAULT_BACKOFF_MAX_S = 60.0
DEFAULT_RETRY_WINDOW_S = 600.0
DEFAULT_RESEND_S = 60.0
_NUMBERS = ("timeout_s", "backoff_s", "backoff_max_s", "retry_window_s", "resend_s")
MAX_SECONDS = 86_400.0 * 365  # a year; beyond, a timer overflows (Event.wait refuses ~9.2e9 s) or never fires


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    """One receiver of alerts; `kinds` empty: every event kind."""

    url: str
    name: str = ""
    format: str = "json"
    kinds: tuple[str, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    basic_auth: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    backoff_s: float = DEFAULT_BACKOFF_S
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S
    retry_window_s: float = DEFAULT_RETRY_WINDOW_S
    resend_s: float = DEFAULT_RESEND_S

    @property
    def label(self) -> str:
        """What the metrics and the log call this webhook: never the URL itself, which may hold a secret."""
        if self.name:
            return self.name
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)

    def wants(self, kind: str) -> bool:
        return not self.kinds or kind in self.kinds


@dataclass(frozen=True, kw_only=True)
class AlertsConfig:
    """Every webhook; none: no alerts are delivered."""

    webhooks: tuple[WebhookConfig, ...] = ()


def alerts_config(document: LineDict, source: str) -> AlertsConfig:
    """The `alerts:` section of a config file parsed with pipeline.yamlfile (fabricscope.config reads it)."""
    section = document.get(SECTION)
    if section is None:
        return AlertsConfig()
    if not isinstance(section, LineDict):
        raise InputError(source, "alerts: must be a mapping with 'webhooks'", line=line_of(document, SECTION))
    for key in section:
        if key != "webhooks":
            raise InputError(source, f"alerts.{key}: unknown setting (known: webhooks)", line=line_of(section, key))
    items = section.get("webhooks") or LineList()
    if not isinstance(items, LineList):
        raise InputError(source, "alerts.webhooks: expected a list of webhooks", line=line_of(section, "webhooks"))
    webhooks = tuple(_webhook(item, source, f"alerts.webhooks[{index}]", line_of(items, index))
                     for index, item in enumerate(items))
    labels: dict[str, int] = {}
    for index, webhook in enumerate(webhooks):
        if webhook.label in labels:
            raise InputError(source, f"alerts.webhooks[{index}].name: '{webhook.label}' names webhook "
                             f"[{labels[webhook.label]}] too; give each a name of its own", line=line_of(items, index))
        labels[webhook.label] = index
    return AlertsConfig(webhooks=webhooks)


def _webhook(item: Any, source: str, where: str, line: int) -> WebhookConfig:
    if not isinstance(item, LineDict):
        raise InputError(source, f"{where}: expected a mapping with at least 'url'", line=line)
    known = [f.name for f in dataclasses.fields(WebhookConfig)]
    values: dict[str, Any] = {}
    for key, value in item.items():
        at = line_of(item, key)
        if key not in known:
            raise InputError(source, f"{where}.{key}: unknown setting (known: {', '.join(known)})", line=at)
        values[key] = _value(key, value, source, f"{where}.{key}", at)
    if "url" not in values:
        raise InputError(source, f"{where}.url: required", line=line)
    return WebhookConfig(**values)


def _value(key: str, value: Any, source: str, where: str, line: int) -> Any:
    """A webhook setting as its field's type, checked; InputError naming file:line otherwise."""
    if key in _NUMBERS:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= MAX_SECONDS:
            raise InputError(source, f"{where}: expected a positive number of seconds up to {MAX_SECONDS:g}, "
                             f"got {value!r}", line=line)
        return float(value)
    if key == "kinds":
        if not isinstance(value, list) or not all(kind in EVENT_KINDS for kind in value):
            raise InputError(source, f"{where}: expected a list of event kinds ({', '.join(EVENT_KINDS)}), "
                             f"got {value!r}", line=line)
        return tuple(value)
    if key == "headers":
        if not isinstance(value, dict) or not all(isinstance(v, str | int | float) for v in value.values()):
            raise InputError(source, f"{where}: expected a mapping of header name to text", line=line)
        return {str(name): str(text) for name, text in value.items()}
    if not isinstance(value, str) or not value:
        raise InputError(source, f"{where}: expected text, got {value!r}", line=line)
    if key == "url":
        try:
            parts = urlsplit(value)
            _ = parts.port  # parsed now: a port out of range raises here, not when the label is read
        except ValueError as exc:
            raise InputError(source, f"{where}: '{value}' is not a URL ({exc})", line=line) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(source, f"{where}: '{value}' is not an http:// or https:// URL", line=line)
    if key == "format" and value not in FORMATS:
        raise InputError(source, f"{where}: '{value}' is not one of {', '.join(FORMATS)}", line=line)
    if key == "basic_auth" and ":" not in value:
        raise InputError(source, f"{where}: expected 'user:password'", line=line)
    return value
