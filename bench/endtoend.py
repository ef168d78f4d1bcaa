"""4. End to end: an opinion submitted over HTTP by 32 concurrent clients, until its
OpinionSubmitted is on the Kafka topic (and, checked at the end, in the trace), against a raw
aiokafka produce→consume ping-pong on the same broker (fetch_max_wait_ms=10). Reported:
throughput, p50 and p99 latency of both. Target: p99 ≤ 10 × the ping-pong's p99."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import Result, broker, fresh_settings
from shared.access import mint
from shared.config import SERVICE_TOPICS
from shared.embedded import free_port
from shared.kafka import ensure_topics, kafka_options

CLIENTS = 32
TARGET_P99 = 10.0


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _auth(settings: Any) -> dict[str, str]:
    """The government office's desk enters every opinion (one principal: limits are raised)."""
    return {"Authorization": f"Bearer {mint(settings, 'government_office', '压测')}"}


def _prepare(url: str, headers: dict[str, str]) -> str:
    """An accepted topic in an approved plan, known to the feedback service with its department."""
    with httpx.Client(base_url=url, timeout=30, headers=headers) as http:
        topic = http.post("/catalog/topics", json={"title": "压测议题", "description": "说明", "source": "government",
                                                   "proposer": "县政府办公室", "content_type": "livelihood"}).json()["id"]
        http.post(f"/catalog/topics/{topic}/screening", json={"decision": "accepted", "screened_by": "县政府办公室"})
        plan = http.post("/catalog/plans", json={"year": 2026, "kind": "government", "issuer": "县政府办公室"}).json()["id"]
        http.post(f"/catalog/plans/{plan}/items", json={"topic_id": topic, "form": "symposium",
                  "lead_department": "县民政局", "scheduled_month": "2026-12", "participant_scope": "群众代表"})
        http.post(f"/catalog/plans/{plan}/approval", json={"approved_by": "县委常委会"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            known = http.get(f"/feedback/views/known-topics/{topic}")
            if known.status_code == 200 and known.json().get("lead_department"):
                return topic
            time.sleep(0.2)
    raise RuntimeError("the feedback service never learned the topic")


async def _at_end(settings: Any, topic: str) -> AIOKafkaConsumer:
    """A consumer of every partition of ``topic``, positioned at its end before anything is sent."""
    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None, enable_auto_commit=False,
                                fetch_max_wait_ms=10)
    await consumer.start()
    partitions = await consumer._client._wait_on_metadata(topic)  # noqa: SLF001 - the topic's partitions
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    await consumer.seek_to_end()
    for tp in consumer.assignment():
        await consumer.position(tp)
    return consumer


async def _load(url: str, settings: Any, topic: str, seconds: float, headers: dict[str, str],
                clients: int = CLIENTS) -> tuple[dict[str, float], dict[str, float], list[float]]:
    """Opinion id → when its POST began; opinion id → when its event reached Kafka."""
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    answered: dict[str, float] = {}
    consumer = await _at_end(settings, settings.topic(SERVICE_TOPICS["feedback"]))
    stop, posted = asyncio.Event(), asyncio.Event()

    async def listen() -> None:
        # Until every accepted POST (the last ones finish after ``stop``) is seen on the topic.
        while not posted.is_set() or len(arrived) < len(sent):
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    event = json.loads(record.value)
                    if event["type"].endswith(".OpinionSubmitted.v1"):
                        arrived.setdefault(event["subject"], now)
            if posted.is_set() and time.perf_counter() > stopped_at + 30:
                return

    async def client(http: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while not stop.is_set():
            start = time.perf_counter()
            async with http.post("/feedback/opinions", json={
                    "topic_id": topic, "channel": "online", "author": {"name": f"居民{n}-{i}"}, "content": "建议"},
                    ) as response:
                if response.status == 201:
                    opinion = (await response.json())["id"]
                    sent[opinion] = start
                    answered[opinion] = time.perf_counter() - start
            i += 1

    stopped_at = 0.0
    listener = asyncio.create_task(listen())
    # aiohttp, not httpx: on two cores an httpx client spends about as much per request as
    # the server, and would measure itself (bench/README.md).
    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(url, connector=connector, headers=headers,
                                     timeout=aiohttp.ClientTimeout(total=30)) as http:
        running = [asyncio.create_task(client(http, n)) for n in range(clients)]
        await asyncio.sleep(seconds)
        stop.set()
        stopped_at = time.perf_counter()
        await asyncio.gather(*running)
    posted.set()
    await listener
    await consumer.stop()
    return sent, arrived, list(answered.values())


async def _ping_pong(settings: Any, rounds: int) -> list[float]:
    topic = settings.topic("bench.pingpong.v1")
    await ensure_topics(settings, ["bench.pingpong.v1"])
    producer = AIOKafkaProducer(**kafka_options(settings), acks="all")
    await producer.start()
    consumer = await _at_end(settings, topic)
    latencies = []
    for i in range(rounds):
        start = time.perf_counter()
        await producer.send_and_wait(topic, str(i).encode(), key=b"k")
        got = False
        while not got:
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                got = got or any(r.value == str(i).encode() for r in records)
        latencies.append(time.perf_counter() - start)
    await consumer.stop()
    await producer.stop()
    return latencies


@contextlib.contextmanager
def serving(store: str) -> Iterator[tuple[str, Any, dict[str, str], str]]:
    """The whole system on a fresh store and the embedded broker, run as a user runs it
    (``consult up`` in a process of its own, so the load generator does not share its
    interpreter); yields its URL, settings, a token's headers and a topic ready for opinions."""
    with broker() as bootstrap, fresh_settings(store, kafka_bootstrap_servers=bootstrap, kafka_idempotence=False,
                                                relay_enabled=True, rate_limit_writes="100000/second",
                                                rate_limit_reads="100000/second", kafka_session_timeout_ms=3000,
                                                postgres_pool_size=8) as settings:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CONSULT_", "KAFKA_", "POSTGRES_"))}
        log = (settings.data_dir / "consult-up.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "shared.cli", "up", "--port", str(port), "--data-dir", str(settings.data_dir)],
            env={**env, **settings.environment()}, stdout=log, stderr=log, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while not _healthy(url):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"consult up did not start; see {settings.data_dir / 'consult-up.log'}")
                time.sleep(0.2)
            auth = _auth(settings)
            yield url, settings, auth, _prepare(url, auth)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def _healthy(url: str) -> bool:
    try:
        return all(httpx.get(f"{url}/{s}/health", timeout=2).status_code == 200
                   for s in ("catalog", "sessions", "proposals", "feedback"))
    except httpx.HTTPError:
        return False


def traced(url: str, topic: str, auth: dict[str, str], expected: int, timeout: float = 60) -> int:
    """OpinionSubmitted steps in the topic's trace, once there are ``expected`` (or time is up)."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        steps = httpx.get(f"{url}/feedback/traces/{topic}", timeout=30, headers=auth).json()["steps"]
        count = sum(1 for s in steps if s["type"] == "OpinionSubmitted")
        if count >= expected:
            break
        time.sleep(0.5)
    return count


def measure(url: str, settings: Any, auth: dict[str, str], topic: str, store: str, seconds: float) -> Result:
    """4 on a running system: one client for a quarter of ``seconds`` (the latency of a system
    that is not saturated), 32 clients for ``seconds``, then the ping-pong on its broker."""
    alone_sent, alone_arrived, _ = asyncio.run(_load(url, settings, topic, max(2.0, seconds / 4), auth, clients=1))
    alone = [alone_arrived[i] - alone_sent[i] for i in alone_sent if i in alone_arrived]
    sent, arrived, answers = asyncio.run(_load(url, settings, topic, seconds, auth))
    latencies = [arrived[i] - sent[i] for i in sent if i in arrived]
    in_trace = traced(url, topic, auth, len(sent) + len(alone_sent))
    pong = asyncio.run(_ping_pong(settings, 200))
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    r50, r99 = _percentile(pong, 50), _percentile(pong, 99)
    return Result("end to end (HTTP→Kafka)", store, len(sent), len(sent) / seconds, 1 / statistics.mean(pong),
                  None, {"clients": CLIENTS, "p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1),
                         "http_p50_ms": round(_percentile(answers, 50) * 1000, 1),
                         "http_p99_ms": round(_percentile(answers, 99) * 1000, 1),
                         "pingpong_p50_ms": round(r50 * 1000, 1), "pingpong_p99_ms": round(r99 * 1000, 1),
                         "p99_vs_pingpong": f"{p99 / r99:.1f}x (target ≤ {TARGET_P99:.0f}x)",
                         "one_client_p50_ms": round(_percentile(alone, 50) * 1000, 1),
                         "one_client_p99_ms": round(_percentile(alone, 99) * 1000, 1),
                         "one_client_p99_vs_pingpong": f"{_percentile(alone, 99) / r99:.1f}x",
                         "on_kafka": len(latencies) + len(alone), "in_trace": in_trace})


def run(store: str, seconds: float, overload_seconds: float | None = None) -> list[Result]:
    """4, and with ``overload_seconds`` 5 at twice the capacity 4 measured, on the same system."""
    from bench import overload

    with serving(store) as (url, settings, auth, topic):
        results = [measure(url, settings, auth, topic, store, seconds)]
        if overload_seconds:
            results.append(overload.measure(url, settings, auth, store, results[0].product, overload_seconds))
    return results
