"""Running a real system (uvicorn, stores, broker connections) inside a test."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.access import Role, endpoints, is_open, mint
from shared.clock import Clock
from shared.config import Settings
from shared.embedded import free_port
from shared.http import http_protocol
from shared.runtime import SERVICE_NAMES, create_app

T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll until ``check`` returns something truthy; eventual consistency, bounded."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


#: The role the harness tries first for a route that allows several; a 403 from a record
#: another role keeps (a CPPCC plan, an NPC suggestion) moves it to the next.
PREFERENCE = (Role.government_office, Role.party_office, Role.cppcc_office, Role.npc_office, Role.department,
              Role.auditor, Role.integration, Role.member, Role.citizen)
_ACTING = ("answered_by", "unit", "delivered_by", "escalated_by", "lead_department", "department", "drafted_by",
           "by", "issued_by", "submitted_by", "opened_by", "formed_by", "decided_by", "filed_by", "compiled_by")


class PolicyAuth(httpx.Auth):
    """Signs each request as a principal its route allows (``shared.access``), so scenario
    tests read as what officials do; the access tests sign their requests themselves.

    The role is the first allowed in ``PREFERENCE``; a department is named by the body
    (``answered_by``, ``unit``, ...), a person by the opinion's author or the proposers.
    A request that already carries an Authorization header is sent as it is.
    """

    def __init__(self, app: Any, settings: Settings):
        from starlette.routing import compile_path

        self.settings = settings
        self.routes = [(e.method, compile_path(e.path)[0], e.roles) for e in endpoints(app)]
        self._tokens: dict[tuple[Any, ...], str] = {}

    def token(self, role: Role, name: str, department: str | None = None, phone: str | None = None,
              id_number: str | None = None) -> str:
        key = (role, name, department, phone, id_number)
        if key not in self._tokens:
            self._tokens[key] = mint(self.settings, role, name, department, 24, phone, id_number)
        return self._tokens[key]

    def roles(self, method: str, path: str) -> tuple[Role, ...] | None:
        return next((roles for m, pattern, roles in self.routes if m == method and pattern.match(path)), None)

    def principal(self, role: Role, body: dict[str, Any]) -> str:
        if role is Role.department:
            department = next((body[k] for k in _ACTING if isinstance(body.get(k), str)), "县政府办公室")
            return self.token(role, "经办人", department)
        if role in (Role.citizen, Role.member):
            person = body.get("author") or (body.get("proposers") or [{}])[0] or {}
            name = person.get("name") or body.get("rated_by") or body.get("evaluator") or "张三"
            return self.token(role, name, None, person.get("phone"), person.get("id_number"))
        return self.token(role, "经办人")

    def auth_flow(self, request: httpx.Request) -> Any:
        path = request.url.path
        if "authorization" in request.headers or is_open(path):
            yield request
            return
        roles = self.roles(request.method, path) or ()
        try:
            body = json.loads(request.content or b"{}")
        except (ValueError, httpx.RequestNotRead):  # not JSON, or streamed
            body = {}
        body = body if isinstance(body, dict) else {}
        response = None
        for role in [r for r in PREFERENCE if r in roles] or [Role.government_office]:
            request.headers["Authorization"] = f"Bearer {self.principal(role, body)}"
            response = yield request
            if response.status_code != 403:
                return


def cli_token(data_dir: Any, role: str = "government_office", name: str = "值班员") -> dict[str, str]:
    """Authorization headers with a token from ``consult token``, as an operator gets one for a
    system ``consult up`` runs on ``data_dir`` (the embedded key is in that directory)."""
    return dict(_cli_token(str(data_dir), role, name))


@functools.lru_cache(maxsize=64)
def _cli_token(data_dir: str, role: str, name: str) -> tuple[tuple[str, str], ...]:
    import subprocess
    import sys

    token = subprocess.run([sys.executable, "-m", "shared.cli", "token", "--role", role, "--name", name,
                            "--data-dir", data_dir], capture_output=True, text=True, check=True,
                           timeout=60).stdout.strip()
    return (("Authorization", f"Bearer {token}"),)


def undeclared(service: Any) -> None:
    """Every view of a service's store is declared by one of its projections (``views``):
    a view no projection names would be left behind when its projection is built again."""
    declared = {view for projection in service.projections.values() for view in projection.views}
    found = set(service.views.view_names()) - declared
    assert not found, f"{service.name}: views no projection declares: {sorted(found)}"


class RunningSystem:
    """The services of ``names`` behind one port, in a background thread."""

    def __init__(self, settings: Settings, names: Sequence[str] = SERVICE_NAMES,
                 clock: Clock | None = None):
        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings, names, clock)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on",
                           http=http_protocol(settings.head_timeout))
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.auth = PolicyAuth(self.app, settings)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30, auth=self.auth)

    @property
    def services(self) -> dict[str, Any]:
        return self.app.state.services

    def __enter__(self) -> RunningSystem:
        self.thread.start()
        wait_for(lambda: self.server.started, 30, "server start")
        for name in self.services:
            wait_for(lambda n=name: self.services[n].broker_connected, 30, f"{name} broker")
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                for service in self.services.values():
                    undeclared(service)
        finally:
            self.http.close()
            self.server.should_exit = True
            self.thread.join(30)


    # -- conveniences --------------------------------------------------------
    def as_(self, role: Role, name: str = "经办人", department: str | None = None, **identity: str) -> dict[str, str]:
        """Headers signing a request as one principal (``PolicyAuth`` then leaves it alone)."""
        return {"Authorization": f"Bearer {self.auth.token(role, name, department, **identity)}"}

    def post(self, path: str, body: dict[str, Any] | None = None, expect: int | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        response = self.http.post(path, json=body if body is not None else {}, headers=headers)
        if expect is not None:
            assert response.status_code == expect, (path, response.status_code, response.text)
        return response

    def get(self, path: str, expect: int | None = 200, headers: dict[str, str] | None = None) -> Any:
        response = self.http.get(path, headers=headers)
        if expect is not None:
            assert response.status_code == expect, (path, response.status_code, response.text)
        return response.json()

    def trace(self, topic_id: str) -> list[dict[str, Any]]:
        response = self.http.get(f"/feedback/traces/{topic_id}")
        return response.json()["steps"] if response.status_code == 200 else []

    def wait_trace(self, topic_id: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        return wait_for(
            lambda: (steps := self.trace(topic_id)) and len(steps) >= count and steps,
            timeout, f"{count} trace steps for {topic_id}",
        )


def read_topic(bootstrap: str, topic: str, timeout: float = 5.0) -> list[Any]:
    """Every record currently in ``topic`` (no group, from the beginning)."""

    async def run() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
            enable_auto_commit=False, group_id=None,
        )
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = time.monotonic() + timeout
            idle = 0
            while time.monotonic() < deadline and idle < 3:
                batch = await consumer.getmany(timeout_ms=300)
                got = [r for rs in batch.values() for r in rs]
                idle = 0 if got else idle + 1
                records += got
        finally:
            await consumer.stop()
        return records

    return asyncio.run(run())


CLOUDEVENTS = [("content-type", b"application/cloudevents+json")]


def produce(bootstrap: str, topic: str, values: list[tuple[bytes, bytes]],
            headers: list[tuple[str, bytes]] | None = None) -> None:
    """Put ``(key, value)`` records on ``topic`` as a plain Kafka client would, each acknowledged;
    headers default to the CloudEvents structured-mode content type."""

    async def run() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in values:
                await producer.send_and_wait(topic, value, key=key,
                                             headers=CLOUDEVENTS if headers is None else headers)
        finally:
            await producer.stop()

    asyncio.run(run())
