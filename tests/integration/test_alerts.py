"""Alerts through real parts: the real detector path (a sample capture through the collector, the embedded
broker, the detectors and the sink into the store) or event rows on the real broker, the notifier as a
consumer group, and a real HTTP receiver on 127.0.0.1 that answers 2xx, fails with 503, or is down.

Every wait polls for the expected state under a generous bound; nothing asserts how long anything took.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
import urllib.request
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from alert_receiver import Receiver, wait_for

from collectors.collector import Collector
from collectors.replay import replay_batches
from fabricscope.metrics import AlertMetrics, registry_of, serve_registry
from pipeline.alerts.config import AlertsConfig, WebhookConfig
from pipeline.alerts.notifier import Notifier, NotifierConfig
from pipeline.bus import BusConfig, Producer
from pipeline.counterfile import read_counters
from pipeline.detect.engine import DetectorSet, event_columns
from pipeline.detect.events import Event, event_us, iso, make_event, revised
from pipeline.detect.link_status import LinkStatus
from pipeline.sink import SinkConfig
from pipeline.store import Store
from pipeline.streaming import TimedBatches, stream_to_store
from pipeline.topology import load_topology

pytestmark = pytest.mark.integration

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T0 = 1_780_000_000_000_000  # µs since the epoch
# retries come quickly; the windows stay generous; no resend unless a test asks for it
FAST = {"backoff_s": 0.05, "backoff_max_s": 0.2, "retry_window_s": 120.0, "resend_s": 3600.0}
_groups = itertools.count()


def group() -> str:
    return f"alerts-test-{next(_groups)}"


def webhook(receiver: Receiver, name: str, **settings: Any) -> WebhookConfig:
    return WebhookConfig(name=name, url=receiver.url, **{**FAST, **settings})


def congestion(state: str, updated_ms: int) -> Event:
    return make_event("congestion", ts=T0, ts_end=T0 + updated_ms * 1000, severity="warning", link="leaf1-spine1",
                      direction="down", summary=f"congestion {state} at {updated_ms} ms", value=0.4, state=state,
                      updated=T0 + updated_ms * 1000)


def link_down() -> Event:
    return make_event("link_down", ts=T0 + 5_000, ts_end=T0 + 5_000, severity="critical", link="leaf2-spine1",
                      device="leaf2", summary="leaf2-spine1 down")


def produce(bus: BusConfig, *events: Event) -> None:
    """Each row in a message of its own, as the detectors emit them over time."""
    producer = Producer(bus).start()
    try:
        for event in events:
            producer.send_batch("events", event_columns([event]))
        producer.flush()
    finally:
        producer.stop()


def streams(bodies: list[Any]) -> dict[str, list[str]]:
    """Each incident's alert steps in arrival order, from generic JSON bodies."""
    steps: dict[str, list[str]] = defaultdict(list)
    for body in bodies:
        steps[body["event_id"]].append(body["alert"])
    return dict(steps)


def keys(bodies: list[Any]) -> list[str]:
    return [body["dedupe_key"] for body in bodies]


def micros(text: str) -> int:
    """An ISO 8601 time of a body as µs since the epoch."""
    return int(np.datetime64(text.removesuffix("Z"), "us").astype(np.int64))


def retimed_link_down() -> tuple[Event, Event]:
    """The link status detector's rows of one outage: the counters' oper-down at +77 ms, written at once and
    closed, then the same incident rewritten at the traffic's earlier failure time (+0 ms)."""
    status = LinkStatus()
    (first,) = status.merge([make_event("link_down", ts=T0 + 77_000, ts_end=T0 + 77_000, severity="critical",
                                        link="leaf2-spine1", device="leaf2", summary="leaf2-spine1 down")])
    traffic = status.merge([make_event("fast_recovery", ts=T0, ts_end=T0, severity="warning", link="leaf2-spine1",
                                       device="leaf2", summary="failed", flows_affected=2,
                                       details={"link_back_us": None})])
    (rewrite,) = [event for event in traffic if event["kind"] == "link_down"]
    return first, rewrite


def rfc3339(text: str) -> datetime:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", text), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_a_replayed_sample_gives_each_incident_one_open_one_close_and_its_latest_row(
        bus_config: BusConfig, clean_topics: list[str], store: Store) -> None:
    manager, generic = Receiver().start(), Receiver().start()
    alerts = AlertsConfig(webhooks=(webhook(manager, "alertmanager", format="alertmanager"),
                                    webhook(generic, "json", format="json")))
    notifier = Notifier(alerts, NotifierConfig(group=group()), bus=bus_config)
    topology = load_topology(SAMPLES / "combo.topology.yaml")
    batches = replay_batches([SAMPLES / "combo.pcap"], progress=False)
    try:
        counters = TimedBatches("counters", read_counters(SAMPLES / "combo.counters.jsonl"))
        summary = stream_to_store((step.tables() for step in Collector(topology).run(batches)), bus=bus_config,
                                  store=store, detectors=DetectorSet(topology), side_sources=[counters],
                                  sink_config=SinkConfig(group=group()), progress=False, notifier=notifier)
    finally:
        manager.stop()
        generic.stop()
    latest = store.query("SELECT event_id, kind, toUnixTimestamp64Micro(ts), toUnixTimestamp64Micro(ts_end), "
                         "convergence_ms FROM incidents WHERE state = 'closed'").rows
    incidents = {event_id: kind for event_id, kind, *_ in latest}
    assert summary.events > len(incidents) >= 10  # some incidents have an open row before their close
    assert store.query("SELECT count() FROM incidents WHERE state = 'open'").rows == [(0,)]

    steps = streams(generic.bodies())
    assert set(steps) == set(incidents)
    for states in steps.values():
        closed_at = states.index("close")
        assert states[0] == "open" and set(states[1:closed_at]) | set(states[closed_at + 1 :]) <= {"update"}
    assert any(states[-1] == "update" for states in steps.values())  # the sample's link_down and link_up retimed
    last = {body["event_id"]: body for body in generic.bodies()}  # each incident's page ends on its latest row
    assert {event_id: (micros(last[event_id]["ts"]), micros(last[event_id]["ts_end"]),
                       last[event_id]["convergence_ms"]) for event_id in incidents} == {
        event_id: (ts, ts_end, convergence) for event_id, _, ts, ts_end, convergence in latest}
    assert len(keys(generic.bodies())) == len(set(keys(generic.bodies())))
    for body in generic.bodies():
        assert body["kind"] == incidents[body["event_id"]] and body["state"] in ("open", "closed")
        assert isinstance(body["details"], dict)
        assert rfc3339(body["ts"]) <= rfc3339(body["ts_end"]) <= rfc3339(body["updated"])

    posted = manager.bodies()
    assert all(isinstance(body, list) and len(body) == 1 for body in posted)
    by_incident: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for (alert,) in posted:
        assert set(alert) <= {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        for label_set in (alert["labels"], alert["annotations"]):
            assert all(isinstance(key, str) and isinstance(value, str) for key, value in label_set.items())
        assert alert["labels"]["alertname"] == incidents[alert["labels"]["event_id"]]
        rfc3339(alert["startsAt"])
        by_incident[alert["labels"]["event_id"]].append(alert)
    assert by_incident.keys() == incidents.keys()
    for stream in by_incident.values():
        states = [a["annotations"]["state"] for a in stream]
        assert states == steps[stream[0]["labels"]["event_id"]]
        assert all(a["labels"] == stream[0]["labels"] for a in stream)  # so the close resolves the open
        closed_at = states.index("close")  # it and the updates after it resolve: none fires the alert again
        assert ["endsAt" in a for a in stream] == [False] * closed_at + [True] * (len(stream) - closed_at)
        assert rfc3339(stream[-1]["endsAt"]) >= rfc3339(stream[-1]["startsAt"])
    assert sum(sum(c.sent.values()) for c in notifier.counts().values()) == len(posted) + len(generic.bodies())


def test_a_receiver_down_for_a_while_gets_every_alert_once_in_order(bus_config: BusConfig,
                                                                     clean_topics: list[str]) -> None:
    receiver = Receiver()
    receiver.status = 503
    receiver.start()
    notifier = Notifier(AlertsConfig(webhooks=(webhook(receiver, "ops"),)), NotifierConfig(group=group()),
                        bus=bus_config).start()
    try:
        produce(bus_config, congestion("open", 50), link_down(), congestion("open", 900), congestion("closed", 2000))
        assert wait_for(lambda: receiver.refused >= 3)  # up but failing
        receiver.stop()  # then down: connections refused
        failed = notifier.counts()["ops"].failed_attempts
        assert wait_for(lambda: notifier.counts()["ops"].failed_attempts >= failed + 3)
        receiver.status = 200
        receiver.start()
        assert notifier.wait_delivered(4, timeout_s=60)
        counts = notifier.counts()["ops"]
    finally:
        notifier.stop()
        receiver.stop()
    assert streams(receiver.bodies()) == {congestion("open", 50)["event_id"]: ["open", "update", "close"],
                                          link_down()["event_id"]: ["open", "close"]}
    sent = keys(receiver.bodies())
    assert len(sent) == len(set(sent)) == 5
    assert counts.sent == {"open": 2, "update": 1, "close": 2} and counts.dead_letters == 0
    assert counts.failed_attempts >= receiver.refused + 3


def test_alertmanager_gets_open_incidents_again_until_they_close(bus_config: BusConfig,
                                                                   clean_topics: list[str]) -> None:
    receiver = Receiver().start()
    notifier = Notifier(AlertsConfig(webhooks=(webhook(receiver, "am", format="alertmanager", resend_s=0.1),)),
                        NotifierConfig(group=group()), bus=bus_config).start()
    other = make_event("congestion", ts=T0, ts_end=T0 + 1000, severity="warning", link="leaf3-spine2",
                       direction="up", summary="another episode", state="open", updated=T0 + 1000)

    def annotations() -> list[tuple[str, str]]:
        return [(body[0]["labels"]["event_id"], body[0]["annotations"]["state"]) for body in receiver.bodies()]

    try:
        produce(bus_config, congestion("open", 50))
        first = congestion("open", 50)["event_id"]
        assert wait_for(lambda: annotations().count((first, "open")) >= 3)  # sent, then sent again
        produce(bus_config, congestion("closed", 2000), other)
        assert wait_for(lambda: annotations().count((other["event_id"], "open")) >= 3)
        counts = notifier.counts()["am"]
    finally:
        notifier.stop()
        receiver.stop()
    seen = annotations()
    closed_at = seen.index((first, "close"))
    assert (first, "open") not in seen[closed_at:] and seen.count((first, "close")) == 1
    assert counts.resent >= 4 and counts.sent == {"open": 2, "close": 1}


def metrics_text(notifier: Notifier, port: int) -> str:
    """/metrics as Prometheus scrapes it, served by the same code `ingest` uses."""
    server = serve_registry(f"127.0.0.1:{port}", registry_of(AlertMetrics(notifier)))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return str(response.read().decode())
    finally:
        server.shutdown()
        server.server_close()


def test_a_receiver_that_never_recovers_dead_letters_counted_and_logged_once(
        bus_config: BusConfig, clean_topics: list[str], caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver().start()
    receiver.stop()  # a port where nothing listens
    notifier = Notifier(AlertsConfig(webhooks=(webhook(receiver, "gone", retry_window_s=0.5),)),
                        NotifierConfig(group=group()), bus=bus_config)
    caplog.set_level(logging.INFO, logger="fabricscope.alerts")
    notifier.start()
    try:
        produce(bus_config, congestion("open", 50), congestion("open", 900), congestion("closed", 2000))
        assert notifier.wait_delivered(3, timeout_s=60)
        probe = Receiver().start()  # a free port for /metrics
        probe.stop()
        text = metrics_text(notifier, probe.port)
    finally:
        notifier.stop()
    assert 'fabricscope_alerts_dead_letter_total{webhook="gone"} 3.0' in text
    assert 'fabricscope_alerts_sent_total{state="open",webhook="gone"} 0.0' in text
    failed = re.search(r'fabricscope_alerts_failed_attempts_total\{webhook="gone"\} (\d+)', text)
    assert failed is not None and int(failed.group(1)) >= 3
    dead_lines = [r for r in caplog.records if r.name == "fabricscope.alerts" and "dead-lettered" in r.getMessage()]
    assert len(dead_lines) == 1 and "gone" in dead_lines[0].getMessage()


def test_a_restart_sends_what_was_left_and_nothing_twice(bus_config: BusConfig, clean_topics: list[str],
                                                          tmp_path: Path) -> None:
    receiver = Receiver().start()
    alerts = AlertsConfig(webhooks=(webhook(receiver, "ops"),))
    config = NotifierConfig(group=group(), ledger=tmp_path / "alerts.ledger", stop_grace_s=0.2)
    first = Notifier(alerts, config, bus=bus_config).start()
    try:
        produce(bus_config, congestion("open", 50), congestion("open", 900))
        assert wait_for(lambda: len(receiver.bodies()) == 2)
        receiver.status = 503
        produce(bus_config, congestion("closed", 2000), link_down())
        assert wait_for(lambda: receiver.refused >= 1)
    finally:
        first.stop()  # the close and the link_down are still queued: not committed
    assert first.counts()["ops"].sent == {"open": 1, "update": 1}
    produce(bus_config, congestion("open", 50), congestion("open", 900))  # the detectors emitting again after a kill
    receiver.status = 200
    second = Notifier(alerts, config, bus=bus_config).start()
    try:
        # rows past the committed offsets: the close, the link_down, and the two emitted again
        assert second.wait_delivered(4, timeout_s=60)
    finally:
        second.stop()
        receiver.stop()
    sent = keys(receiver.bodies())
    assert len(sent) == len(set(sent)) == 5
    assert streams(receiver.bodies()) == {congestion("open", 50)["event_id"]: ["open", "update", "close"],
                                          link_down()["event_id"]: ["open", "close"]}
    assert second.counts()["ops"].sent == {"open": 1, "close": 2}


def test_an_incident_retimed_after_its_close_is_one_update_and_nothing_twice_across_restarts(
        bus_config: BusConfig, clean_topics: list[str], tmp_path: Path) -> None:
    """The page follows the incident's latest row: the retime after the close goes out once, as an update of the
    same incident saying what changed, through a receiver outage and two restarts that read the rows again; a
    rewrite that changes nothing material sends nothing."""
    receiver = Receiver().start()
    alerts = AlertsConfig(webhooks=(webhook(receiver, "ops", kinds=("link_down",)),))
    config = NotifierConfig(group=group(), ledger=tmp_path / "alerts.ledger", stop_grace_s=0.2)
    first, rewrite = retimed_link_down()
    said_again = revised(rewrite, updated=event_us(rewrite, "updated") + 1_000, summary="leaf2-spine1 down, again")
    one = Notifier(alerts, config, bus=bus_config).start()
    try:
        produce(bus_config, first)
        assert wait_for(lambda: len(receiver.bodies()) == 2)
        receiver.status = 503
        produce(bus_config, rewrite)
        assert wait_for(lambda: receiver.refused >= 1)
    finally:
        one.stop()  # the update still queued: its message is not committed
    assert one.counts()["ops"].sent == {"open": 1, "close": 1}
    receiver.status = 200
    produce(bus_config, first, rewrite, said_again)  # the detectors emitting again after a kill
    two = Notifier(alerts, config, bus=bus_config).start()
    try:
        assert two.wait_delivered(4, timeout_s=60)  # the rewrite left uncommitted, and the three emitted again
    finally:
        two.stop()
    produce(bus_config, first, rewrite, said_again)
    three = Notifier(alerts, config, bus=bus_config).start()
    try:
        assert three.wait_delivered(3, timeout_s=60)
    finally:
        three.stop()
        receiver.stop()
    bodies = receiver.bodies()
    assert streams(bodies) == {first["event_id"]: ["open", "close", "update"]}
    assert len(set(keys(bodies))) == 3
    update = bodies[-1]
    assert (update["state"], micros(update["ts"]), micros(update["ts_end"])) == ("closed", T0, T0)
    assert update["changed"] == {name: {"was": iso(T0 + 77_000), "now": iso(T0)} for name in ("ts", "ts_end")}
    assert (two.counts()["ops"].sent, three.counts()["ops"].sent) == ({"update": 1}, {})
    ledger = json.loads((tmp_path / "alerts.ledger").read_text())
    assert ledger["webhooks"]["ops"][first["event_id"]][:2] == [event_us(rewrite, "updated"), "close"]


def test_alertmanager_gets_a_retimed_incident_resolved_with_its_new_times_and_not_again(
        bus_config: BusConfig, clean_topics: list[str]) -> None:
    receiver = Receiver().start()
    notifier = Notifier(AlertsConfig(webhooks=(webhook(receiver, "am", format="alertmanager", resend_s=0.1),)),
                        NotifierConfig(group=group()), bus=bus_config).start()
    first, rewrite = retimed_link_down()
    firing = congestion("open", 50)

    def sent(event_id: str) -> list[dict[str, Any]]:
        return [body[0] for body in receiver.bodies() if body[0]["labels"]["event_id"] == event_id]

    try:
        produce(bus_config, first, rewrite, firing)
        assert wait_for(lambda: len(sent(firing["event_id"])) >= 3)  # open, then resent: resend rounds ran
        counts = notifier.counts()["am"]
    finally:
        notifier.stop()
        receiver.stop()
    stream = sent(first["event_id"])
    assert [a["annotations"]["state"] for a in stream] == ["open", "close", "update"]
    assert all(a["labels"] == stream[0]["labels"] for a in stream)
    update = stream[-1]
    assert (micros(update["startsAt"]), micros(update["endsAt"])) == (T0, T0)  # resolved, at the earlier time
    assert json.loads(update["annotations"]["changed"])["ts"] == {"was": iso(T0 + 77_000), "now": iso(T0)}
    assert counts.sent == {"open": 2, "close": 1, "update": 1}
