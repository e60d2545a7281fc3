"""Run wiring from the CLI's common options: embedded unless told otherwise, security passed through."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from fabricscope.services import ServicesConfig, kafka_security
from pipeline.errors import InputError
from pipeline.store import embedded_dsn


def _args(tmp_path: Path, **overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {"data_dir": str(tmp_path / "d"), "kafka": None, "clickhouse": None, "config": None}
    values.update(overrides)
    return argparse.Namespace(**values)


def test_absent_kafka_and_clickhouse_mean_embedded_under_the_data_dir(tmp_path: Path) -> None:
    config = ServicesConfig.from_args(_args(tmp_path))
    assert config.kafka is None
    assert config.store_config().dsn == embedded_dsn(tmp_path / "d")
    assert config.store_config().embedded and config.store_config().create_database


def test_a_server_dsn_names_its_database(tmp_path: Path) -> None:
    store = ServicesConfig.from_args(_args(tmp_path, clickhouse="https://u:p@ch.example:8443/fabric")).store_config()
    assert not store.embedded and store.target_database == "fabric"
    assert store.location == "https://ch.example:8443"


def test_security_options_come_from_the_config_files_kafka_section(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  security_protocol: SASL_SSL\n  sasl_mechanism: SCRAM-SHA-512\n"
                    "  sasl_plain_username: fabric\n  ssl_cafile: /etc/ca.pem\nother: 1\n")
    assert kafka_security(str(path)) == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                                         "sasl_plain_username": "fabric", "ssl_cafile": "/etc/ca.pem"}
    assert kafka_security(None) == {}


def test_anything_else_in_the_kafka_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("kafka:\n  bootstrap_servers: elsewhere:9092\n")
    with pytest.raises(InputError, match=r"kafka\.bootstrap_servers: not a Kafka security option"):
        kafka_security(str(path))
