"""Shared fixtures: one embedded broker per session, one chdb engine path per session, a database per test.

chdb serves one data directory per process at a time, so every in-process store of the session lives in
the same directory and tests are kept apart by database; the broker is shared and tests that consume
the pipeline topics start from empty ones (`clean_topics`).
"""

from __future__ import annotations

import itertools
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from requirements import apply_requirements

from pipeline.broker import EmbeddedBroker
from pipeline.bus import Admin, BusConfig, pipeline_topics
from pipeline.migrate import migrate
from pipeline.store import Store, StoreConfig, embedded_dsn
from pipeline.topology import Topology, load_topology

_databases = itertools.count()


@pytest.fixture(autouse=True)
def restored_signal_handlers() -> Iterator[None]:
    """SIGTERM and SIGINT as they were before the test: one that runs a service's main in-process leaves the
    service's stop-event handlers behind otherwise (tests/unit/test_fuzz_inputs.py did), so Ctrl-C stops
    nothing in that pytest worker and processes later tests fork there inherit a SIGTERM that ends nothing."""
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    yield
    for signum, handler in saved.items():
        if handler is not None:  # None: set outside Python, nothing to put back
            signal.signal(signum, handler)


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A test marked `requires(...)` whose tool is missing: skipped here, failed under CI (tests/requirements.py)."""
    apply_requirements(item)


@pytest.fixture(scope="session")
def broker() -> Iterator[str]:
    """Bootstrap address of the session's embedded tansu broker (pipeline topics created)."""
    with EmbeddedBroker() as running:
        yield running.bootstrap


@pytest.fixture
def bus_config(broker: str) -> BusConfig:
    return BusConfig(bootstrap=broker)


@pytest.fixture
def clean_topics(bus_config: BusConfig) -> list[str]:
    """Empty pipeline topics for this test: deleted and created again on the shared broker."""
    admin = Admin(bus_config)
    topics = pipeline_topics()
    admin.delete_topics(topics)
    admin.create_topics(topics)
    return topics


@pytest.fixture(scope="session")
def chdb_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The session's one embedded ClickHouse directory."""
    return embedded_dsn(tmp_path_factory.mktemp("store"))


@pytest.fixture
def store_factory(chdb_dsn: str) -> Iterator[Callable[..., Store]]:
    """Open stores on fresh databases of the session engine (migrated unless migrated=False)."""
    opened: list[Store] = []

    def factory(*, migrated: bool = True, database: str | None = None) -> Store:
        name = database or f"test_{next(_databases)}"
        store = Store(StoreConfig(dsn=chdb_dsn, database=name, create_database=True)).open()
        opened.append(store)
        if migrated:
            migrate(store)
        return store

    yield factory
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[..., Store]) -> Store:
    """A migrated store on a database of its own."""
    return store_factory()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory for a subprocess (a second process cannot share the session's chdb directory)."""
    return tmp_path / "fabricscope"


@pytest.fixture
def topology(request: pytest.FixtureRequest, tmp_path: Path) -> Topology:
    """The test module's own small fabric: its TOPOLOGY text loaded as a topology file."""
    path = tmp_path / "topology.yaml"
    path.write_text(request.module.TOPOLOGY)
    return load_topology(path)
