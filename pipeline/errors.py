"""fabricscope's exception tree.

    FabricscopeError
    ├── InputError          bad user input (a file, packet or field); CLI exit code 2
    │   ├── TopologyError   invalid topology file (file, line, reason)
    │   └── ScenarioError   invalid scenario file (file, line, reason)
    ├── StoreError          ClickHouse refused or is unreachable (`retriable` says if a retry can help)
    │   └── StoreLockedError  the embedded data directory is held by another process
    ├── BusError            Kafka refused or is unreachable (`retriable` says if a retry can help)
    │   └── RebalancedError  a commit fell in a group rebalance: nothing committed, poll to rejoin first
    ├── DecodeError         a Kafka message is not a valid record batch (it goes to the DLQ)
    ├── RefusedError        pipeline.alerts: a webhook did not take an alert (`retriable` says if a retry can help)
    └── SourceError         a live source could not read a switch (`retriable` says if the next try can help)
        └── PollFailed      collectors.snmp: one SNMP poll gave nothing usable (`reason` labels its count)
            └── BadAnswer   the agent's answer is not a usable SNMPv2c response
"""

from __future__ import annotations


class FabricscopeError(Exception):
    """Base of every error fabricscope raises on purpose."""

    retriable: bool = False


def one_line(text: str) -> str:
    """`text` with line breaks and other unprintable characters escaped: a reason quoting the user's input
    (a YAML string may hold a newline) still prints as the one line the CLI contract promises."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


class InputError(FabricscopeError):
    """Bad input from the user; the message names the file, line or field, on one line."""

    def __init__(self, source: str, reason: str, *, line: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.line = line
        where = f"{source}:{line}" if line is not None else source
        super().__init__(one_line(f"{where}: {reason}"))


class TopologyError(InputError):
    """The topology file is invalid."""


class ScenarioError(InputError):
    """The scenario file is invalid."""


class StoreError(FabricscopeError):
    """ClickHouse failed; `retriable` is True when waiting and retrying can help."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class StoreLockedError(StoreError):
    """Another process holds the embedded ClickHouse data directory."""


class BusError(FabricscopeError):
    """Kafka failed; `retriable` is True when waiting and retrying can help."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class RebalancedError(BusError):
    """An offset commit was refused because the consumer group is rebalancing (or rebalanced without this
    member): nothing was committed. Polling completes the rejoin; what the member owns after it may differ."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retriable=True)


class DecodeError(FabricscopeError):
    """A Kafka message cannot be decoded as a record batch; the message says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SourceError(FabricscopeError):
    """A live source could not read a switch (unreachable, timed out, answered garbage); `retriable` is True
    when the next poll or connection may succeed. Sources count these and go on; one reaches the user only
    when the source cannot run at all."""

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable
