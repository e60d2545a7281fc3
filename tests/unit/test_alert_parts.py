"""pipeline.alerts without Kafka: the bodies against the formats they claim, the ledger's one-alert-per-step
rule, the `alerts:` config section named with file:line when it is wrong, and one webhook's sender against
a real local HTTP receiver."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from alert_receiver import Receiver

from fabricscope.cli import build_parser
from fabricscope.config import load_config
from pipeline.alerts.body import Alert, alertmanager_body, event_rows, identity_labels, json_body, render
from pipeline.alerts.config import AlertsConfig, WebhookConfig
from pipeline.alerts.ledger import Ledger, load_ledgers, save_ledgers
from pipeline.alerts.webhook import Webhook
from pipeline.detect.engine import event_columns
from pipeline.detect.events import Event, make_event, revised
from pipeline.detect.link_status import LinkStatus
from pipeline.errors import InputError

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
T0 = 1_780_000_000_000_000  # µs since the epoch
POSTABLE_ALERT_KEYS = {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}  # Alertmanager's OpenAPI


def rows(*events: Event) -> list[dict[str, Any]]:
    """Event rows the way the notifier reads them from Kafka (columns → rows)."""
    return event_rows(event_columns(list(events)))


def failure(state: str, updated_us: int, **extra: Any) -> Event:
    return make_event("fast_recovery", ts=T0, ts_end=T0 + 1_760, severity="critical", link="leaf2-spine2",
                      device="leaf2", summary="leaf2-spine2 failed", convergence_ms=1.76, flows_affected=12,
                      flows_recovered=12, packets_lost=3, details={"flows": [{"qp": 7}]}, state=state,
                      updated=updated_us, identity=("leaf2-spine2", T0), **extra)


def rfc3339(text: str) -> datetime:
    assert text.endswith("Z")
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_alertmanager_body_is_a_postable_alert_that_resolves_on_close() -> None:
    opened, closed = rows(failure("open", T0 + 2_000), failure("closed", T0 + 9_000))
    labels = {"alertname": "fast_recovery", "event_id": opened["event_id"], "severity": "critical",
              "link": "leaf2-spine2", "device": "leaf2"}
    for alert in (Alert("open", opened, labels), Alert("close", closed, labels)):
        body = json.loads(render(alert, "alertmanager"))
        assert isinstance(body, list) and len(body) == 1
        posted = body[0]
        assert set(posted) <= POSTABLE_ALERT_KEYS and posted["labels"] == labels
        for label_set in (posted["labels"], posted["annotations"]):
            assert all(isinstance(key, str) and isinstance(value, str) for key, value in label_set.items())
        assert rfc3339(posted["startsAt"]) == datetime.fromisoformat("2026-05-28T20:26:40+00:00")
        assert posted["annotations"]["summary"] == "leaf2-spine2 failed"
        assert posted["annotations"]["convergence_ms"] == "1.76"
        assert json.loads(posted["annotations"]["details"]) == {"flows": [{"qp": 7}]}
        assert posted["annotations"]["dedupe_key"] == f"{opened['event_id']}:{alert.state}:{alert.event['updated']}"
    assert "endsAt" not in alertmanager_body(Alert("open", opened, labels))[0]
    ends = alertmanager_body(Alert("close", closed, labels))[0]["endsAt"]
    assert (rfc3339(ends) - datetime.fromisoformat("2026-05-28T20:26:40+00:00")).total_seconds() == 0.00176


def test_the_json_body_is_the_event_row_with_iso_times_and_structured_details() -> None:
    (closed,) = rows(failure("closed", T0 + 9_000))
    body = json.loads(render(Alert("close", closed, {}), "json"))
    assert body == json_body(Alert("close", closed, {}))
    assert (body["alert"], body["state"], body["kind"], body["link"]) == ("close", "closed", "fast_recovery",
                                                                          "leaf2-spine2")
    assert (body["ts"], body["ts_end"], body["updated"]) == ("2026-05-28T20:26:40.000000Z",
                                                             "2026-05-28T20:26:40.001760Z",
                                                             "2026-05-28T20:26:40.009000Z")
    assert body["details"] == {"flows": [{"qp": 7}]} and body["remote_convergence_ms"] is None
    assert body["dedupe_key"] == f"{closed['event_id']}:close:{T0 + 9_000}" and body["packets_lost"] == 3


def test_the_ledger_gives_each_step_of_an_incident_once() -> None:
    opened, grown, closed = rows(failure("open", T0 + 2_000), failure("open", T0 + 5_000),
                                 failure("closed", T0 + 9_000))
    ledger = Ledger()
    assert [a.state for a in ledger.alerts(opened)] == ["open"]
    assert ledger.alerts(opened) == []  # the same row again (re-emitted after a restart)
    assert [a.state for a in ledger.alerts(grown)] == ["update"]
    assert ledger.alerts(opened) == []  # older than what was taken (arrived late)
    assert [a.state for a in ledger.alerts(closed)] == ["close"]
    assert ledger.alerts(grown) == [] and ledger.alerts(closed) == []  # nothing after the close


def test_an_incident_first_seen_closed_opens_and_closes_with_the_labels_it_opened_with() -> None:
    slow = [make_event("collective_slowdown", ts=T0, ts_end=T0 + 100, severity="warning", job="llama", link=link,
                       summary="slow", state=state, updated=T0 + updated, identity=("llama", T0))
            for link, state, updated in (("", "open", 100), ("leaf4-spine1", "closed", 900))]
    opened, closed = rows(*slow)
    assert [(a.state, a.labels.get("link")) for a in Ledger().alerts(closed)] == [("open", "leaf4-spine1"),
                                                                                  ("close", "leaf4-spine1")]
    ledger = Ledger()
    ledger.alerts(opened)
    (close,) = ledger.alerts(closed)
    assert "link" not in close.labels  # Alertmanager matches the close to the open by their labels


def test_the_ledger_saved_holds_what_was_done_not_what_was_queued(tmp_path: Path) -> None:
    opened, closed = rows(failure("open", T0 + 2_000), failure("closed", T0 + 9_000))
    ledger = Ledger()
    (sent,) = ledger.alerts(opened)
    ledger.alerts(closed)  # queued, not delivered when the process stops
    ledger.finished(sent)
    save_ledgers(tmp_path / "alerts.ledger", {"pager": ledger})
    restored = load_ledgers(tmp_path / "alerts.ledger", ["pager", "new"])
    assert restored["pager"].firing() == [sent]  # still open: sent again to Alertmanager after the restart
    assert restored["pager"].alerts(opened) == []
    assert [a.state for a in restored["pager"].alerts(closed)] == ["close"]
    assert [a.state for a in restored["new"].alerts(opened)] == ["open"]
    (tmp_path / "alerts.ledger").write_text("{")
    with pytest.raises(InputError, match="alert ledger unreadable"):
        load_ledgers(tmp_path / "alerts.ledger", ["pager"])


def retimed_link_down() -> tuple[dict[str, Any], dict[str, Any]]:
    """The link status detector's two rows of one outage: the counters' oper-down at +77 ms, written at once
    and closed, then the same incident rewritten at the earlier time of a failure that cut flows, +0 ms."""
    status = LinkStatus()
    counters = status.merge([make_event("link_down", ts=T0 + 77_000, ts_end=T0 + 77_000, severity="critical",
                                        link="leaf1-spine1", device="leaf1", summary="leaf1-spine1 down")])
    traffic = status.merge([make_event("fast_recovery", ts=T0, ts_end=T0, severity="warning", link="leaf1-spine1",
                                       device="leaf1", summary="failed", flows_affected=2,
                                       details={"link_back_us": None})])
    (first,) = counters
    (rewrite,) = [event for event in traffic if event["kind"] == "link_down"]
    return rows(first)[0], rows(rewrite)[0]


def grown_failure() -> list[dict[str, Any]]:
    """An open fast recovery's first row and its next, which counts more packets lost."""
    opened = failure("open", T0 + 2_000)
    return rows(opened, revised(opened, updated=T0 + 5_000, packets_lost=9))


def test_a_rewrite_after_the_close_is_one_update_that_says_what_changed() -> None:
    first, rewrite = retimed_link_down()
    assert rewrite["event_id"] == first["event_id"] and rewrite["state"] == first["state"] == "closed"
    ledger = Ledger()
    assert [a.state for a in ledger.alerts(first)] == ["open", "close"]
    (update,) = ledger.alerts(rewrite)
    assert (update.state, update.closes, update.event["ts"]) == ("update", True, T0)
    assert update.changed == {"ts": [T0 + 77_000, T0], "ts_end": [T0 + 77_000, T0]}
    assert update.labels == identity_labels(first)  # the same incident for Alertmanager
    assert ledger.alerts(rewrite) == [] and ledger.alerts(first) == []  # each once, and nothing older
    (again,) = rows(revised(rewrite, updated=T0 + 500_000, summary="leaf1-spine1 down, said again"))
    assert ledger.alerts(again) == []  # written again, nothing material changed

    posted = alertmanager_body(update)[0]
    assert posted["annotations"]["state"] == "update" and posted["labels"] == identity_labels(first)
    assert (posted["startsAt"], posted["endsAt"]) == ("2026-05-28T20:26:40.000000Z",) * 2  # stays resolved
    assert json.loads(posted["annotations"]["changed"]) == {
        name: {"was": "2026-05-28T20:26:40.077000Z", "now": "2026-05-28T20:26:40.000000Z"} for name in ("ts", "ts_end")}
    body = json_body(update)
    assert (body["alert"], body["state"], body["ts"]) == ("update", "closed", "2026-05-28T20:26:40.000000Z")
    assert body["changed"]["ts"] == {"was": "2026-05-28T20:26:40.077000Z", "now": "2026-05-28T20:26:40.000000Z"}
    assert body["dedupe_key"] == f"{first['event_id']}:update:{rewrite['updated']}"
    assert "changed" not in json_body(Alert("close", first, {}))


def test_an_update_while_open_lists_what_changed_and_is_resent_with_it(tmp_path: Path) -> None:
    opened, grown = grown_failure()
    ledger = Ledger()
    ledger.alerts(opened)
    (update,) = ledger.alerts(grown)
    assert update.changed == {"packets_lost": [3, 9]} and not update.closes
    ledger.finished(update)
    save_ledgers(tmp_path / "alerts.ledger", {"pager": ledger})
    assert load_ledgers(tmp_path / "alerts.ledger", ["pager"])["pager"].firing() == [update]


def test_an_update_after_the_close_is_done_once_across_a_restart(tmp_path: Path) -> None:
    first, rewrite = retimed_link_down()
    ledger = Ledger()
    for alert in ledger.alerts(first):
        ledger.finished(alert)
    (update,) = ledger.alerts(rewrite)
    save_ledgers(tmp_path / "alerts.ledger", {"pager": ledger})  # the update queued, not delivered
    queued = load_ledgers(tmp_path / "alerts.ledger", ["pager"])["pager"]
    assert queued.alerts(first) == [] and queued.alerts(rewrite) == [update]
    ledger.finished(update)
    save_ledgers(tmp_path / "alerts.ledger", {"pager": ledger})
    restored = load_ledgers(tmp_path / "alerts.ledger", ["pager"])["pager"]
    assert restored.alerts(first) == [] and restored.alerts(rewrite) == [] and restored.firing() == []


def test_a_format_1_ledger_is_read_and_a_rewrite_of_its_closed_incident_is_sent(tmp_path: Path) -> None:
    """Format 1 kept only time, step and labels for a closed incident: a newer closed row cannot be told
    immaterial, so it is sent (with nothing listed as changed); an open incident's row gives its columns."""
    first, rewrite = retimed_link_down()
    opened, grown = grown_failure()
    path = tmp_path / "alerts.ledger"
    path.write_text(json.dumps({"version": 1, "webhooks": {"pager": {
        first["event_id"]: [first["updated"], "close", identity_labels(first), None],
        opened["event_id"]: [opened["updated"], "open", identity_labels(opened), opened]}}}))
    ledger = load_ledgers(path, ["pager"])["pager"]
    assert ledger.alerts(first) == [] and ledger.alerts(opened) == []
    assert [(a.state, a.changed) for a in ledger.alerts(rewrite)] == [("update", {})]
    assert [(a.state, a.changed) for a in ledger.alerts(grown)] == [("update", {"packets_lost": [3, 9]})]


def settle(text: str, tmp_path: Path) -> AlertsConfig:
    path = tmp_path / "fabricscope.yaml"
    path.write_text(text)
    return load_config(build_parser("ingest").parse_args(["ingest", "--config", str(path)])).alerts


def test_webhooks_come_from_the_alerts_section(tmp_path: Path) -> None:
    config = settle("alerts:\n  webhooks:\n    - {url: 'http://am:9093/api/v2/alerts', format: alertmanager,\n"
                    "       kinds: [fast_recovery], headers: {X-Org: 7}, timeout_s: 2}\n"
                    "    - {name: bot, url: 'https://bot.example/hook', basic_auth: 'u:p'}\n"
                    "    - {url: 'https://me:secret@hooks.example/T0/B1'}\n", tmp_path)
    assert config.webhooks == (
        WebhookConfig(url="http://am:9093/api/v2/alerts", format="alertmanager", kinds=("fast_recovery",),
                      headers={"X-Org": "7"}, timeout_s=2.0),
        WebhookConfig(name="bot", url="https://bot.example/hook", basic_auth="u:p"),
        WebhookConfig(url="https://me:secret@hooks.example/T0/B1"))
    assert [w.label for w in config.webhooks] == ["am:9093", "bot", "hooks.example"]  # no secret in a label
    assert not config.webhooks[0].wants("congestion") and config.webhooks[1].wants("congestion")


@pytest.mark.parametrize(("text", "line", "message"), [
    ("alerts:\n  webhooks:\n    - url: 'ftp://x'\n", 3, "alerts.webhooks[0].url: 'ftp://x' is not an http"),
    ("alerts:\n  webhooks:\n    - url: 'http://x'\n      format: xml\n", 4, "alerts.webhooks[0].format: 'xml'"),
    ("alerts:\n  webhooks:\n    - url: 'http://x'\n      kinds: [congestoin]\n", 4, "alerts.webhooks[0].kinds:"),
    ("alerts:\n  webhooks:\n    - url: 'http://x'\n      retry_window_s: 0\n", 4,
     "alerts.webhooks[0].retry_window_s: expected a positive number"),
    ("alerts:\n  webhooks:\n    - url: 'http://x'\n      urls: y\n", 4, "alerts.webhooks[0].urls: unknown setting"),
    ("alerts:\n  webhooks:\n    - {format: json}\n", 3, "alerts.webhooks[0].url: required"),
    ("alerts:\n  webhooks:\n    - url: 'http://x/a'\n    - url: 'http://x/b'\n", 4,
     "alerts.webhooks[1].name: 'x' names webhook [0] too"),
    ("alerts:\n  hooks: []\n", 2, "alerts.hooks: unknown setting"),
    # a port out of range or a broken IPv6 host was a ValueError traceback; NaN and inf were taken as seconds
    ("alerts:\n  webhooks:\n    - url: 'http://x:99999/'\n", 3,
     "alerts.webhooks[0].url: 'http://x:99999/' is not a URL"),
    ("alerts:\n  webhooks:\n    - url: 'http://[::1/'\n", 3, "alerts.webhooks[0].url: 'http://[::1/' is not a URL"),
    ("alerts:\n  webhooks:\n    - url: 'http://x'\n      timeout_s: .nan\n", 4,
     "alerts.webhooks[0].timeout_s: expected a positive number of seconds up to"),
    ("alerts:\n  webhooks:\n    - url: 'http://x'\n      resend_s: .inf\n", 4,
     "alerts.webhooks[0].resend_s: expected a positive number of seconds up to"),
])
def test_a_bad_alerts_section_names_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as caught:
        settle(text, tmp_path)
    assert str(caught.value).startswith(f"{tmp_path / 'fabricscope.yaml'}:{line}: {message}")


def test_a_bad_alerts_section_exits_2_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "fabricscope.yaml"
    path.write_text("alerts:\n  webhooks:\n    - url: 'http://x'\n      format: xml\n")
    done = subprocess.run([sys.executable, "-m", "fabricscope.cli", "replay", str(SAMPLES / "combo.pcap"),
                           "--topology", str(SAMPLES / "combo.topology.yaml"), "--config", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    expected = f"fabricscope replay: {path}:4: alerts.webhooks[0].format: 'xml' is not one of alertmanager, json"
    assert done.stderr.strip().splitlines() == [expected]


def test_the_readme_alerts_example_loads_and_its_alertmanager_body_is_what_is_sent(tmp_path: Path) -> None:
    section = (Path(__file__).resolve().parents[2] / "README.md").read_text().split("## Alerts\n", 1)[1]
    config = settle(section.split("```yaml\n", 1)[1].split("```", 1)[0], tmp_path)
    assert [(w.label, w.format) for w in config.webhooks] == [("alertmanager", "alertmanager"), ("ops-bot", "json")]
    shown = json.loads(section.split("```json\n", 1)[1].split("```", 1)[0])
    (row,) = rows(make_event("fast_recovery", ts=1768478400259851, ts_end=1768478400261611, severity="critical",
                             link="leaf2-spine2", device="leaf2", summary=shown[0]["annotations"]["summary"],
                             convergence_ms=1.76, local_convergence_ms=1.76, remote_convergence_ms=1.412,
                             flows_affected=12, flows_recovered=12, packets_lost=96,
                             details={"trigger": "oper-down", "flows": 12}))
    assert shown == alertmanager_body(Alert("close", row, identity_labels(row)))


def test_a_body_the_receiver_refuses_is_dead_lettered_at_once_and_headers_and_auth_are_sent(
        caplog: pytest.LogCaptureFixture) -> None:
    receiver = Receiver().start()
    done: list[str] = []
    config = WebhookConfig(name="strict", url=receiver.url, headers={"X-Org": "7"}, basic_auth="user:pa:ss",
                           retry_window_s=600.0)
    webhook = Webhook(config, lambda alert, ticket: done.append(alert.dedupe_key)).start()
    opened, closed = rows(failure("open", T0 + 2_000), failure("closed", T0 + 9_000))
    try:
        receiver.status = 400
        webhook.put(Alert("open", opened, {}))
        webhook.put(Alert("update", opened, {}))
        assert webhook.wait_idle(60)  # not retried for the retry window: a 400 will not change
        receiver.status = 200
        webhook.put(Alert("close", closed, {}))
        assert webhook.wait_idle(60)
    finally:
        webhook.stop()
        receiver.stop()
    counts = webhook.counts()
    assert (counts.sent, counts.dead_letters, counts.failed_attempts) == ({"close": 1}, 2, 2)
    assert done == [f"{opened['event_id']}:open:{T0 + 2_000}", f"{opened['event_id']}:update:{T0 + 2_000}",
                    f"{closed['event_id']}:close:{T0 + 9_000}"]
    (headers,) = receiver.headers
    assert headers["X-Org"] == "7" and headers["Content-Type"] == "application/json"
    assert base64.b64decode(headers["Authorization"].removeprefix("Basic ")) == b"user:pa:ss"
    assert len([r for r in caplog.records if "dead-lettered" in r.getMessage()]) == 1
