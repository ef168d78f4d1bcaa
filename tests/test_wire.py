"""The wire: Kafka SASL/TLS and PostgreSQL TLS settings reach every client; callers are rate limited."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from aiokafka.errors import KafkaConnectionError

from shared.access import Role
from shared.config import Settings
from shared.http import _Corked
from shared.kafka import ensure_topics, kafka_options, make_broker
from shared.ratelimit import Shed
from shared.stores import admin_connection, use_postgres_tls
from tests.conftest import KafkaEndpoint, PostgresEndpoint, make_settings
from tests.harness import RunningSystem

TOPIC = {"title": "议题", "description": "说明", "source": "government", "proposer": "县政府办公室",
         "content_type": "livelihood"}


def test_sasl_scram_and_tls_reach_every_kafka_client(kafka: KafkaEndpoint, tmp_path: Path) -> None:
    secured = Settings(kafka_bootstrap_servers=kafka.bootstrap, kafka_security_protocol="SASL_SSL",
                       kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="consult",
                       kafka_sasl_password="s3cret")
    options = kafka_options(secured)
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "consult", "s3cret")
    assert isinstance(options["ssl_context"], ssl.SSLContext)
    # The services' brokers (relays, consumers, inbound) carry the same settings.
    broker = make_broker(secured, "test")
    assert {k: broker._connection_kwargs[k] for k in ("security_protocol", "sasl_mechanism")} == {  # noqa: SLF001
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"}
    # Against a broker that speaks neither, the clients try them and are refused: the setting is in force.
    plaintext_only = secured.model_copy(update={"kafka_security_protocol": "SASL_PLAINTEXT"})
    with pytest.raises(KafkaConnectionError):
        asyncio.run(asyncio.wait_for(ensure_topics(plaintext_only), 30))
    with pytest.raises(ValueError, match="KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"):
        Settings(kafka_security_protocol="SASL_SSL")


@pytest.fixture
def libpq_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Whatever the test sets in libpq's environment is put back afterwards."""
    for name in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"):
        if name in os.environ:
            monkeypatch.setenv(name, os.environ[name])
        else:
            monkeypatch.delenv(name, raising=False)
    yield


def test_postgres_tls_settings_reach_every_connection(postgres: PostgresEndpoint, kafka: KafkaEndpoint,
                                                      tmp_path: Path, libpq_env: None) -> None:
    """This machine's PostgreSQL has TLS off: requiring it must fail, on schema work and in the
    stores' own pools alike, and say why."""
    required = make_settings("postgres", tmp_path, kafka, postgres, postgres_sslmode="require")
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        admin_connection(required)
    use_postgres_tls(required)
    assert os.environ["PGSSLMODE"] == "require"
    with pytest.raises(psycopg.OperationalError, match="SSL"):
        psycopg.connect(host=postgres.host, port=postgres.port, user=postgres.user, dbname=postgres.dbname)
    use_postgres_tls(required.model_copy(update={"postgres_sslmode": "disable"}))
    with admin_connection(required.model_copy(update={"postgres_sslmode": "disable"})) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_a_caller_over_its_budget_gets_429_with_retry_after_and_nothing_is_stored(
        kafka: KafkaEndpoint, tmp_path: Path) -> None:
    settings = make_settings("sqlite", tmp_path, kafka, None, rate_limit_writes="3/minute",
                             rate_limit_reads="5/minute")
    with RunningSystem(settings, ["catalog"]) as system:
        app = system.services["catalog"].app
        for _ in range(3):
            system.post("/catalog/topics", TOPIC, expect=201)
        refused = system.post("/catalog/topics", TOPIC)
        assert refused.status_code == 429, refused.text
        assert 0 < int(refused.headers["Retry-After"]) <= 60
        problem = refused.json()
        assert problem["rule"] == "rate_limited" and "at most 3 per 1 minute" in problem["detail"]
        assert app.max_position() == 3
        # Reads have their own budget; health is never limited.
        statuses = [system.http.get("/catalog/public/plans").status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        assert all(system.http.get("/catalog/health").status_code == 200 for _ in range(10))


def test_bytes_that_are_not_http_get_400_in_the_contract_shape_and_change_nothing(
        kafka: KafkaEndpoint, tmp_path: Path) -> None:
    """uvicorn's parser refuses these before any route runs; the answer is still the
    contract's error shape (rule malformed_http), the connection is closed, nothing is stored."""
    import socket

    settings = make_settings("sqlite", tmp_path, kafka, None)
    with RunningSystem(settings, ["catalog"]) as system:
        token = system.as_(Role.government_office)["Authorization"]
        body = json.dumps(TOPIC).encode()
        for head in (f"Content-Length: abc\r\n",                      # not a number
                     f"Content-Length: {len(body)}\r\nContent-Length: 3\r\n",  # two lengths
                     f"Content-Length: {len(body)}\r\nBad Header: x\r\n"):   # a space in a name
            with socket.create_connection(("127.0.0.1", system.port), timeout=10) as raw:
                raw.sendall(f"POST /catalog/topics HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                            f"Content-Type: application/json\r\n{head}\r\n".encode() + body)
                answer = b""
                while chunk := raw.recv(4096):  # until the server closes the connection
                    answer += chunk
            status, _, rest = answer.partition(b"\r\n")
            headers, _, text = rest.partition(b"\r\n\r\n")
            assert status == b"HTTP/1.1 400 Bad Request", answer
            assert b"content-type: application/json" in headers.lower() and b"connection: close" in headers.lower()
            problem = json.loads(text)
            assert problem["rule"] == "malformed_http" and problem["errors"][0]["field"] == "request", problem
        assert system.services["catalog"].app.max_position() == 0
        system.post("/catalog/topics", TOPIC, expect=201)


def test_an_answers_writes_in_one_turn_leave_in_one_send_and_closing_sends_what_is_held() -> None:
    sent: list[bytes] = []

    class Transport:  # what the event loop's transport is to ``_Corked``
        def write(self, data: bytes) -> None:
            sent.append(data)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            sent.append(b"<closed>")

        def abort(self) -> None:
            sent.append(b"<aborted>")

        def get_extra_info(self, name: str) -> str:
            return name

    async def turns() -> None:
        corked = _Corked(Transport())  # type: ignore[arg-type]
        corked.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        corked.write(b"{}")
        assert sent == []
        await asyncio.sleep(0)  # the turn ends
        assert sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        corked.writelines([b"a", b"b"])
        corked.close()  # what is held goes first
        assert sent[1:] == [b"ab", b"<closed>"]
        await asyncio.sleep(0)
        assert len(sent) == 3  # and only once
        corked.write(b"dropped")
        corked.abort()  # as the transport drops its own buffer
        await asyncio.sleep(0)
        assert sent[3:] == [b"<aborted>"] and corked.get_extra_info("peername") == "peername"

    asyncio.run(turns())


def _middleware(app: Any, kind: type) -> Any:
    """The running instance of middleware ``kind`` in ``app``'s stack (built at its first request)."""
    layer = app.middleware_stack
    while not isinstance(layer, kind):
        layer = layer.app
    return layer


def _until_a_place_is_held(system: RunningSystem, timeout: float = 5.0) -> None:
    """Wait until the server works on a request (a slow one, sent just before): on a loaded
    machine it can take longer than any fixed pause to read its headers."""
    shed = _middleware(system.app, Shed)
    deadline = time.monotonic() + timeout
    while shed.busy == 0:
        assert time.monotonic() < deadline, "the slow request never reached the server"
        time.sleep(0.01)


def test_a_body_that_trickles_in_is_refused_with_408_and_frees_its_place(
        kafka: KafkaEndpoint, tmp_path: Path) -> None:
    """A client that sends its headers and then its body a little at a time holds one of the
    places shedding grants; past ``body_timeout`` it gets 408 (rule body_timeout), nothing
    is stored, and the place serves the next request."""
    import socket

    settings = make_settings("sqlite", tmp_path, kafka, None, max_in_flight=1, shed_after=0.2, body_timeout=1.0)
    with RunningSystem(settings, ["catalog"]) as system:
        body = json.dumps(TOPIC).encode()
        token = system.as_(Role.government_office)["Authorization"]
        with socket.create_connection(("127.0.0.1", system.port), timeout=10) as slow:
            slow.sendall(f"POST /catalog/topics HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
                         f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                         + body[:10])
            started = time.monotonic()
            _until_a_place_is_held(system)
            assert system.post("/catalog/topics", TOPIC).status_code == 503  # the place is held
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = slow.recv(4096)
                if not chunk:
                    break
                answer += chunk
            waited = time.monotonic() - started
        head, _, text = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer
        assert json.loads(text)["rule"] == "body_timeout" and 0.9 <= waited < 5, (text, waited)
        assert system.services["catalog"].app.max_position() == 0  # nothing stored
        system.post("/catalog/topics", TOPIC, expect=201)  # the place is free again


def test_places_pass_in_order_and_no_place_is_lost_to_a_refusal_or_a_cancelled_request() -> None:
    """The shedding middleware on its own: a freed place goes to the oldest request waiting;
    one that waits its time is refused with 503 and Retry-After; one cancelled while it waits
    (its client gone) takes no place with it, even when a place was handed to it as it went."""

    async def scenario() -> None:
        gates: dict[str, asyncio.Event] = {}
        order: list[str] = []

        async def app(scope: dict, receive: object, send: object) -> None:
            order.append(scope["path"])
            await gates.setdefault(scope["path"], asyncio.Event()).wait()

        shed = Shed(app, limit=1, wait=0.3)
        statuses: dict[str, int] = {}

        async def request(path: str) -> None:
            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    statuses[path] = message["status"]
                    assert dict(message["headers"])[b"retry-after"] == b"1"
            await shed({"type": "http", "path": path}, None, send)

        first = asyncio.create_task(request("/a"))
        await asyncio.sleep(0.01)
        waiting = [asyncio.create_task(request(p)) for p in ("/b", "/c")]
        await asyncio.sleep(0.01)
        gates["/a"].set()  # /a leaves: /b (first to wait) gets its place, /c still waits
        await asyncio.sleep(0.01)
        assert order == ["/a", "/b"] and shed.busy == 1
        await asyncio.sleep(0.4)  # /c's time is up while /b holds the place
        assert statuses == {"/c": 503} and waiting[1].done()
        late = asyncio.create_task(request("/d"))
        await asyncio.sleep(0.01)
        gates["/b"].set()
        await asyncio.sleep(0)  # /b leaves and hands /d the place; /d has not run yet
        assert not late.done() and shed.busy == 1
        late.cancel()  # handed the place, cancelled before it could run
        await asyncio.gather(first, waiting[0], late, return_exceptions=True)
        assert shed.busy == 0 and not shed.waiting  # nothing held, nothing lost
        gates["/e"] = asyncio.Event()
        gates["/e"].set()
        await request("/e")
        assert order[-1] == "/e" and "/e" not in statuses and shed.busy == 0

    asyncio.run(scenario())


def test_past_capacity_a_request_is_shed_with_503_and_retry_after_and_nothing_is_stored(
        kafka: KafkaEndpoint, tmp_path: Path) -> None:
    settings = make_settings("sqlite", tmp_path, kafka, None, max_in_flight=1, shed_after=0.2)
    with RunningSystem(settings, ["catalog"]) as system:
        app = system.services["catalog"].app
        release = threading.Event()

        def slow_body() -> Iterator[bytes]:
            # The one place is held while this body arrives, as a slow client holds it.
            yield json.dumps(TOPIC)[:10].encode()
            release.wait(10)
            yield json.dumps(TOPIC)[10:].encode()

        holder = threading.Thread(target=lambda: system.http.post(
            "/catalog/topics", content=slow_body(),
            headers={"content-type": "application/json", **system.as_(Role.government_office)}))
        holder.start()
        _until_a_place_is_held(system)
        shed = system.post("/catalog/topics", TOPIC)
        assert shed.status_code == 503, shed.text
        assert shed.headers["Retry-After"] == "1" and shed.json()["rule"] == "overloaded"
        assert system.http.get("/catalog/health").status_code == 200  # health is never shed
        release.set()
        holder.join(10)
        assert app.max_position() == 1  # the held request only
        system.post("/catalog/topics", TOPIC, expect=201)
