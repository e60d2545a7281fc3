"""The broker and the store one run needs: given (--kafka, --clickhouse) or embedded (tansu, chdb).

Embedded mode is the same code with local parts (DESIGN.md section 3): the store is chdb under the data
directory, held by this process alone, and the broker is tansu on a free loopback port for the run. The
store opens first, so a directory held by another process is reported before anything starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from fabricscope.cli import DEFAULT_DATA_DIR
from fabricscope.config import kafka_section
from pipeline.broker import EmbeddedBroker
from pipeline.bus import Admin, BusConfig, pipeline_topics
from pipeline.migrate import migrate
from pipeline.store import Store, StoreConfig, embedded_dsn
from pipeline.yamlfile import load_yaml


def kafka_security(config_file: str | None) -> dict[str, Any]:
    """The `kafka:` section of a configuration file alone: kafka-python security options, passed through.
    (A command gets it from fabricscope.config, which reads the file once for every section.)"""
    if not config_file:
        return {}
    return kafka_section(load_yaml(config_file), config_file)


@dataclass(frozen=True, kw_only=True)
class ServicesConfig:
    """`kafka`/`clickhouse` None: embedded. `migrate` brings the store's schema up to date on start, in its
    ON CLUSTER form when `cluster` names the ClickHouse cluster (pipeline.cluster)."""

    data_dir: Path = Path(DEFAULT_DATA_DIR)
    kafka: str | None = None
    clickhouse: str | None = None
    kafka_security: Mapping[str, Any] = field(default_factory=dict)
    database: str | None = None
    migrate: bool = True
    cluster: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, security: Mapping[str, Any] | None = None, *,
                  migrate: bool = True) -> ServicesConfig:
        """From the CLI's common options (--data-dir, --kafka, --clickhouse) and the `kafka:` security options
        of the run's Config."""
        return cls(data_dir=Path(args.data_dir), kafka=args.kafka, clickhouse=args.clickhouse,
                   kafka_security=dict(security or {}), migrate=migrate, cluster=getattr(args, "cluster", None))

    def store_config(self) -> StoreConfig:
        return StoreConfig(dsn=self.clickhouse or embedded_dsn(self.data_dir), database=self.database,
                           create_database=self.migrate)


def external_bus(config: ServicesConfig) -> BusConfig:
    """The Kafka cluster --kafka names, its pipeline topics created if missing."""
    if config.kafka is None:
        raise ValueError("no --kafka: the embedded broker is started by Services")
    bus = BusConfig(bootstrap=config.kafka, security=dict(config.kafka_security))
    Admin(bus).create_topics(pipeline_topics())
    return bus


class Services:
    """Opens the store (migrated) and the bus (embedded broker started, topics created); stop() undoes both."""

    def __init__(self, config: ServicesConfig) -> None:
        self.config = config
        self.store = Store(config.store_config())
        self.broker: EmbeddedBroker | None = None
        self._bus: BusConfig | None = None

    @property
    def bus(self) -> BusConfig:
        if self._bus is None:
            raise RuntimeError("services not started")
        return self._bus

    def start(self) -> Services:
        self.store.open()
        try:
            if self.config.migrate:
                migrate(self.store, cluster=self.config.cluster)
            if self.config.kafka is None:
                self.broker = EmbeddedBroker().start()
                self._bus = self.broker.bus_config()
            else:
                self._bus = external_bus(self.config)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None
        self._bus = None
        self.store.close()

    def __enter__(self) -> Services:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
