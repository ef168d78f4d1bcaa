"""5. Overload: opinions offered at twice the capacity benchmark 4 measured, for 60 s
(``--quick``: 3 s), on the same running system, open loop (a request leaves on schedule,
whether or not earlier ones were answered).

Held to: goodput (opinions accepted per second) ≥ 90 % of that capacity; 0 lost (every
accepted opinion reaches Kafka and the trace); 0 duplicated (no event twice on the topic);
the backlog (accepted, not yet on Kafka) cleared within 120 s of the load's end; and every
request the system cannot take answered 429 or 503 with ``Retry-After``, never a timeout or
another error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaConsumer

from bench.common import Result
from shared.config import SERVICE_TOPICS
from shared.kafka import kafka_options

GOODPUT_TARGET = 0.9
BACKLOG_LIMIT = 120.0
TIMEOUT = 30.0


async def _offer(url: str, topic: str, auth: dict[str, str], rate: float, seconds: float) -> dict[str, Any]:
    """Open loop with aiohttp: an httpx client on this machine's two cores cannot itself send
    twice what the system takes (it spends about as much per request as the server does)."""
    import aiohttp

    accepted: list[str] = []
    outcomes: Counter[str] = Counter()
    # No pool limit: a request waiting for one of the client's own connections would queue
    # here, out of the system's sight, and time out instead of being answered.
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout, headers=auth) as http:

        async def one(n: int) -> None:
            body = {"topic_id": topic, "channel": "online", "author": {"name": f"超载{n}"}, "content": "建议"}
            try:
                async with http.post("/feedback/opinions", json=body) as response:
                    answer = await response.json(content_type=None)
                    status, retry = response.status, response.headers.get("Retry-After")
            except TimeoutError:
                outcomes["timeout"] += 1
                return
            except aiohttp.ClientError as error:
                outcomes[f"error {type(error).__name__}"] += 1
                return
            if status == 201:
                accepted.append(answer["id"])
                outcomes["accepted"] += 1
            elif status in (429, 503) and retry:
                outcomes[f"shed {status}"] += 1
            else:
                outcomes[f"status {status}"] += 1

        tasks = []
        start = time.perf_counter()
        n = 0
        while (elapsed := time.perf_counter() - start) < seconds:
            due = int(elapsed * rate) + 1
            while n < due:
                tasks.append(asyncio.create_task(one(n)))
                n += 1
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
        ended = time.perf_counter()
    return {"accepted": accepted, "outcomes": outcomes, "offered": n, "load_s": ended - start, "ended": ended}


async def _on_kafka(settings: Any, wanted: set[str], since: float) -> tuple[set[str], int, float]:
    """The accepted opinions' OpinionSubmitted on the feedback topic: which arrived, how many
    event ids came more than once, and when the last one came (seconds after ``since``)."""
    consumer = AIOKafkaConsumer(settings.topic(SERVICE_TOPICS["feedback"]), **kafka_options(settings),
                                group_id=None, auto_offset_reset="earliest", enable_auto_commit=False,
                                fetch_max_wait_ms=50)
    await consumer.start()
    seen: set[str] = set()
    ids: Counter[str] = Counter()
    last = 0.0
    deadline = time.perf_counter() + BACKLOG_LIMIT + 30
    try:
        while time.perf_counter() < deadline and not wanted <= seen:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    event = json.loads(record.value)
                    ids[event["id"]] += 1
                    if event["subject"] in wanted and event["subject"] not in seen:
                        seen.add(event["subject"])
                        last = time.perf_counter()
        # A little longer: a duplicate would come after the original.
        until = time.perf_counter() + 2
        while time.perf_counter() < until:
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    ids[json.loads(record.value)["id"]] += 1
    finally:
        await consumer.stop()
    return seen, sum(1 for count in ids.values() if count > 1), max(0.0, last - since)


def measure(url: str, settings: Any, auth: dict[str, str], store: str, capacity: float,
            seconds: float) -> Result:
    from bench.endtoend import _prepare, traced

    topic = _prepare(url, auth)  # a topic of its own: its trace holds this run's opinions only
    rate = 2 * capacity
    offered = asyncio.run(_offer(url, topic, auth, rate, seconds))
    accepted = set(offered["accepted"])
    seen, duplicated, backlog_s = asyncio.run(_on_kafka(settings, accepted, offered["ended"]))
    waited = time.perf_counter()
    in_trace = traced(url, topic, auth, len(accepted), timeout=180)
    trace_s = time.perf_counter() - waited
    goodput = len(accepted) / offered["load_s"]
    outcomes = offered["outcomes"]
    bad = {k: v for k, v in outcomes.items() if k != "accepted" and not k.startswith("shed")}
    return Result("overload (2× capacity)", store, len(accepted), goodput, capacity, GOODPUT_TARGET, {
        "offered_per_s": round(rate, 1), "offered": offered["offered"], "seconds": seconds,
        "shed": {k: v for k, v in outcomes.items() if k.startswith("shed")},
        "timeouts_or_errors": bad or 0, "lost": len(accepted - seen), "duplicated": duplicated,
        "backlog_cleared_s": round(backlog_s, 1), "backlog_ok": backlog_s <= BACKLOG_LIMIT and not accepted - seen,
        "in_trace": in_trace, "trace_caught_up_s": round(trace_s, 1)})
