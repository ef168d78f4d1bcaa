"""Running a real system (uvicorn, stores, broker connections) inside a test."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from shared.clock import Clock
from shared.config import Settings
from shared.embedded import free_port
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


class RunningSystem:
    """The services of ``names`` behind one port, in a background thread."""

    def __init__(self, settings: Settings, names: Sequence[str] = SERVICE_NAMES,
                 clock: Clock | None = None):
        self.settings = settings
        self.port = free_port()
        self.app = create_app(settings, names, clock)
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)

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
        self.http.close()
        self.server.should_exit = True
        self.thread.join(30)

    # -- conveniences --------------------------------------------------------
    def post(self, path: str, body: dict[str, Any] | None = None, expect: int | None = None) -> httpx.Response:
        response = self.http.post(path, json=body if body is not None else {})
        if expect is not None:
            assert response.status_code == expect, (path, response.status_code, response.text)
        return response

    def get(self, path: str, expect: int | None = 200) -> Any:
        response = self.http.get(path)
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
