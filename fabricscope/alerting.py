"""The alert notifier as the commands run it: from the config's `alerts:` section, only when it names webhooks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fabricscope.config import Config
    from pipeline.alerts.notifier import Notifier
    from pipeline.bus import BusConfig


def build_notifier(config: Config, bus: BusConfig, group: str, ledger: Path | None = None) -> Notifier | None:
    """A notifier (not started) for the config's webhooks, None when there are none. `ledger` None for an
    embedded run (`replay`, a `demo` cycle), whose broker and offsets end with it."""
    if not config.alerts.webhooks:
        return None
    from pipeline.alerts.notifier import Notifier, NotifierConfig

    return Notifier(config.alerts, NotifierConfig(group=group, ledger=ledger), bus=bus)


def alerts_summary(notifier: Notifier | None) -> str:
    """`; alerts: N sent, M dead-lettered` for a run's summary line ('' without webhooks)."""
    if notifier is None:
        return ""
    counts = notifier.counts().values()
    sent = sum(sum(count.sent.values()) for count in counts)
    dead = sum(count.dead_letters for count in counts)
    return f"; alerts: {sent} sent, {dead} dead-lettered"
