"""Alerts: incidents from the events topic delivered to webhooks as they open, update and close.

    config.py    the `alerts:` section: webhooks (URL, body format, kinds, headers, retry window)
    body.py      an alert's body: Alertmanager API v2 or the event row as JSON, with a dedupe key
    ledger.py    which step of each incident's alert stream a webhook has had (nothing twice)
    webhook.py   one webhook's ordered queue and sender: retries, backoff with jitter, dead letters
    notifier.py  the events topic's consumer-group member that feeds the webhooks and commits what went out
"""
