"""4. End to end: an opinion submitted over HTTP by 32 concurrent clients, until its
OpinionSubmitted is on the Kafka topic (and, checked at the end, in the trace), against a raw
aiokafka produce→consume ping-pong on the same broker (fetch_max_wait_ms=10). Reported:
throughput, p50 and p99 latency of both. Target: p99 ≤ 10 × the ping-pong's p99."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time
from typing import Any

import httpx
import uvicorn
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import Result, broker, fresh_settings
from shared.config import SERVICE_TOPICS
from shared.embedded import free_port
from shared.kafka import ensure_topics, kafka_options
from shared.runtime import create_app

CLIENTS = 32
TARGET_P99 = 10.0


def _percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def _prepare(url: str) -> str:
    """An accepted topic in an approved plan, known to the feedback service with its department."""
    with httpx.Client(base_url=url, timeout=30) as http:
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


async def _load(url: str, settings: Any, topic: str, seconds: float) -> tuple[dict[str, float], dict[str, float]]:
    """Opinion id → when its POST began; opinion id → when its event reached Kafka."""
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
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

    async def client(http: httpx.AsyncClient, n: int) -> None:
        i = 0
        while not stop.is_set():
            start = time.perf_counter()
            response = await http.post("/feedback/opinions", json={
                "topic_id": topic, "channel": "online", "author": {"name": f"居民{n}-{i}"}, "content": "建议"})
            if response.status_code == 201:
                sent[response.json()["id"]] = start
            i += 1

    stopped_at = 0.0
    listener = asyncio.create_task(listen())
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        clients = [asyncio.create_task(client(http, n)) for n in range(CLIENTS)]
        await asyncio.sleep(seconds)
        stop.set()
        stopped_at = time.perf_counter()
        await asyncio.gather(*clients)
    posted.set()
    await listener
    await consumer.stop()
    return sent, arrived


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


def run(store: str, seconds: float) -> list[Result]:
    with broker() as bootstrap, fresh_settings(store, kafka_bootstrap_servers=bootstrap, kafka_idempotence=False,
                                                relay_enabled=True, rate_limit_writes="100000/second",
                                                rate_limit_reads="100000/second", kafka_session_timeout_ms=3000,
                                                postgres_pool_size=8) as settings:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                               log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        try:
            while not server.started:
                time.sleep(0.05)
            topic = _prepare(url)
            sent, arrived = asyncio.run(_load(url, settings, topic, seconds))
            latencies = [arrived[i] - sent[i] for i in sent if i in arrived]
            deadline = time.monotonic() + 60
            traced = 0
            while time.monotonic() < deadline:
                steps = httpx.get(f"{url}/feedback/traces/{topic}", timeout=30).json()["steps"]
                traced = sum(1 for s in steps if s["type"] == "OpinionSubmitted")
                if traced >= len(sent):
                    break
                time.sleep(0.5)
            pong = asyncio.run(_ping_pong(settings, 200))
        finally:
            server.should_exit = True
            thread.join(30)
    p50, p99 = _percentile(latencies, 50), _percentile(latencies, 99)
    r50, r99 = _percentile(pong, 50), _percentile(pong, 99)
    return [Result("end to end (HTTP→Kafka)", store, len(sent), len(sent) / seconds, 1 / statistics.mean(pong),
                   None, {"clients": CLIENTS, "p50_ms": round(p50 * 1000, 1), "p99_ms": round(p99 * 1000, 1),
                          "pingpong_p50_ms": round(r50 * 1000, 1), "pingpong_p99_ms": round(r99 * 1000, 1),
                          "p99_vs_pingpong": f"{p99 / r99:.1f}x (target ≤ {TARGET_P99:.0f}x)",
                          "on_kafka": len(latencies), "in_trace": traced})]
