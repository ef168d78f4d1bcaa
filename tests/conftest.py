"""Real infrastructure for tests.

Kafka: ``CONSULT_TEST_KAFKA`` (bootstrap servers of a broker you run), else a
Kafka testcontainer where a Docker engine answers, else the embedded tansu
broker started as a subprocess. PostgreSQL: ``CONSULT_TEST_POSTGRES_HOST`` (with
``_PORT``, ``_USER``, ``_PASSWORD``, ``_DBNAME``), else a testcontainer, else the
local server on 127.0.0.1:5432. Every test system gets its own topic prefix,
consumer groups, schemas and data directory, so tests never see each other.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from shared.config import Settings
from shared.embedded import EmbeddedBroker, free_port
from shared.stores import drop_schemas
from tests.harness import RunningSystem


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - no engine is a normal answer here
        return False
    return True


@dataclass
class KafkaEndpoint:
    bootstrap: str
    idempotence: bool
    embedded: EmbeddedBroker | None = None


@pytest.fixture(scope="session")
def kafka() -> Iterator[KafkaEndpoint]:
    if os.environ.get("CONSULT_TEST_KAFKA"):
        yield KafkaEndpoint(os.environ["CONSULT_TEST_KAFKA"], idempotence=True)
    elif _docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield KafkaEndpoint(container.get_bootstrap_server(), idempotence=True)
    else:
        broker = EmbeddedBroker(free_port()).start()
        try:
            yield KafkaEndpoint(broker.bootstrap_servers, idempotence=False, embedded=broker)
        finally:
            broker.stop()


@dataclass
class PostgresEndpoint:
    host: str
    port: int
    user: str
    password: str
    dbname: str

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user,
            password=self.password or None, dbname=self.dbname, autocommit=True,
        )


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresEndpoint]:
    env = os.environ
    if env.get("CONSULT_TEST_POSTGRES_HOST"):
        yield PostgresEndpoint(
            env["CONSULT_TEST_POSTGRES_HOST"], int(env.get("CONSULT_TEST_POSTGRES_PORT", "5432")),
            env.get("CONSULT_TEST_POSTGRES_USER", "postgres"),
            env.get("CONSULT_TEST_POSTGRES_PASSWORD", ""),
            env.get("CONSULT_TEST_POSTGRES_DBNAME", "postgres"),
        )
    elif _docker_available():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:16") as pg:
            yield PostgresEndpoint(
                pg.get_container_host_ip(), int(pg.get_exposed_port(5432)),
                pg.username, pg.password, pg.dbname,
            )
    else:
        yield PostgresEndpoint("127.0.0.1", 5432, "postgres", "", "postgres")


def at_once(work: Callable[[], Any], times: int, timeout: float = 60) -> tuple[list[Any], list[BaseException]]:
    """``work`` run ``times`` times at once, each on a thread of its own: what the runs
    returned, and what they raised."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(work())
        except BaseException as error:  # noqa: BLE001 - returned to the test
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results, errors


def make_settings(store: str, tmp_path: Path, kafka: KafkaEndpoint, postgres: PostgresEndpoint | None,
                  **overrides: object) -> Settings:
    tag = uuid.uuid4().hex[:8]
    values: dict[str, object] = {
        "data_dir": tmp_path / "data",
        "store": store,
        "schema_prefix": f"t{tag}_",
        "kafka_bootstrap_servers": kafka.bootstrap,
        "kafka_idempotence": kafka.idempotence,
        # restarts inside tests rejoin their groups quickly (Kafka's minimum is 6000)
        "kafka_session_timeout_ms": 3_000 if kafka.embedded else 6_000,
        "group_prefix": f"test-{tag}",
        "topic_prefix": f"t{tag}.",
        "poll_interval": 0.1,
        # Three test systems run at once (pytest -n 3) within PostgreSQL's 100 connections: a
        # store keeps one open and opens up to two more under load. With two kept, three
        # workers reached 103 connections, the server's limit with its reserved ones.
        "postgres_pool_size": 1,
        "log_format": "json",
    }
    if postgres is not None:
        values.update(
            postgres_host=postgres.host, postgres_port=postgres.port,
            postgres_user=postgres.user, postgres_password=postgres.password,
            postgres_dbname=postgres.dbname,
        )
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["sqlite", "postgres"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, kafka: KafkaEndpoint) -> Iterator[Settings]:
    """Settings for one isolated system, once on SQLite and once on PostgreSQL."""
    pg = request.getfixturevalue("postgres") if request.param == "postgres" else None
    s = make_settings(request.param, tmp_path, kafka, pg)
    yield s
    if pg is not None:
        drop_schemas(s, s.schema_prefix)


@pytest.fixture
def system(settings: Settings) -> Iterator[RunningSystem]:
    with RunningSystem(settings) as running:
        yield running
