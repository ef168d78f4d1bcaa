"""A consumer that stops without saying so is restarted (``shared.watchdog``).

aiokafka's consumer can stay alive after a broker restart and never rejoin its group;
FastStream's consume loop ends on any error that is not a Kafka error. Both are
brought about here on a real broker, and the read model must catch up on its own.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from shared.config import Settings
from tests.conftest import KafkaEndpoint, make_settings
from tests.harness import RunningSystem, wait_for
from tests.test_spine import propose


def _watched(tmp_path: Path, kafka: KafkaEndpoint) -> Settings:
    return make_settings("sqlite", tmp_path, kafka, None, broker_check_interval=0.5,
                         consumer_stall_after=3.0)


def _in_loop(system: RunningSystem, service: str, call: Any) -> Any:
    """Run ``call()`` on the service's event loop (aiokafka objects belong to it)."""
    loop = system.services[service]._tasks[0].get_loop()

    async def run() -> Any:
        return call()

    return asyncio.run_coroutine_threadsafe(run(), loop).result(10)


def _trace_consumer(system: RunningSystem) -> tuple[Any, str]:
    service = system.services["feedback"]
    return next((sub, group) for p, group, sub in service.subscribers if p.name == "trace")


def _consumer(system: RunningSystem, group: str) -> dict[str, Any]:
    return next(c for c in system.get("/feedback/health")["consumers"] if c["group"] == group)


def test_a_consumer_alive_but_not_consuming_is_restarted(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    with RunningSystem(_watched(tmp_path, kafka), ["catalog", "feedback"]) as system:
        system.wait_trace(propose(system, title="看门之前"), 1)
        subscriber, group = _trace_consumer(system)
        stuck = subscriber.consumer
        # A consumer that fetches nothing and commits nothing, yet is alive and in its group:
        # from outside, what a consumer that never rejoined after a broker restart looks like.
        _in_loop(system, "feedback", lambda: stuck.pause(*stuck.assignment()))
        later = propose(system, title="停住之后")
        steps = system.wait_trace(later, 1, timeout=30)
        assert steps[0]["type"] == "TopicProposed"
        assert subscriber.consumer is not stuck
        state = _consumer(system, group)
        assert state["restarts"] >= 1 and state["running"], state
        # Once caught up, nothing more is restarted.
        restarts = state["restarts"]
        wait_for(lambda: _consumer(system, group)["behind"] == 0, 10, "caught up")
        propose(system, title="追上之后")
        wait_for(lambda: _consumer(system, group)["behind"] == 0, 10, "caught up again")
        assert _consumer(system, group)["restarts"] == restarts


def test_a_consumer_that_stays_behind_is_a_problem_in_health(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    """Restarts that do not help must not leave health saying ok while a read model waits."""
    with RunningSystem(_watched(tmp_path, kafka), ["catalog", "feedback"]) as system:
        system.wait_trace(propose(system, title="看门之前"), 1)
        subscriber, group = _trace_consumer(system)
        watchdog = system.services["feedback"].watchdog

        async def restart_in_vain(sub: Any) -> None:  # as when the broker serves it nothing
            sub.consumer.pause(*sub.consumer.assignment())

        watchdog._restart = restart_in_vain
        _in_loop(system, "feedback", lambda: subscriber.consumer.pause(*subscriber.consumer.assignment()))
        propose(system, title="停住之后")
        health = wait_for(lambda: (h := system.get("/feedback/health"))["status"] == "degraded" and h, 30,
                          "health degraded")
        assert any(group in p and "committed nothing" in p for p in health["problems"]), health["problems"]
        state = _consumer(system, group)
        assert state["stalled_for"] >= 3 and state["behind"] >= 1, state
        del watchdog._restart
        _in_loop(system, "feedback", lambda: subscriber.consumer.resume(*subscriber.consumer.assignment()))
        wait_for(lambda: system.get("/feedback/health")["status"] == "ok", 30, "ok again")


def test_a_consume_loop_that_ended_is_restarted(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    with RunningSystem(_watched(tmp_path, kafka), ["catalog", "feedback"]) as system:
        subscriber, group = _trace_consumer(system)
        # FastStream's loop ends on an error it does not catch; cancelling it has the same effect.
        _in_loop(system, "feedback", lambda: [t.cancel() for t in subscriber.tasks])
        wait_for(lambda: not _consumer(system, group)["running"] or _consumer(system, group)["restarts"],
                 10, "the loop seen ended")
        topic_id = propose(system, title="循环结束之后")
        system.wait_trace(topic_id, 1, timeout=30)
        state = wait_for(lambda: (c := _consumer(system, group))["running"] and c, 10, "running again")
        assert state["restarts"] >= 1


def test_every_start_of_the_embedded_broker_is_a_new_cluster() -> None:
    from shared.embedded import EmbeddedBroker, free_port
    from shared.kafka import BrokerProbe

    async def cluster(bootstrap: str) -> str | None:
        probe = BrokerProbe(Settings(kafka_bootstrap_servers=bootstrap))
        try:
            return await probe.cluster_id()
        finally:
            await probe.close()

    port, ids = free_port(), []
    for _ in range(2):
        broker = EmbeddedBroker(port=port).start()
        try:
            ids.append(asyncio.run(cluster(broker.bootstrap_servers)))
        finally:
            broker.stop()
    assert all(ids) and ids[0] != ids[1], ids


def test_a_new_cluster_makes_every_consumer_read_its_topics_again(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    """A consumer that kept its place from a lost log would skip what the new log gathers
    below it: the embedded broker answers a fetch beyond a log's end with nothing, where
    Kafka answers OFFSET_OUT_OF_RANGE. When the broker's cluster id changes (every start of
    the embedded broker is a new cluster), each consumer reads again from the start."""
    settings = make_settings("sqlite", tmp_path, kafka, None, broker_check_interval=0.5,
                             consumer_stall_after=600.0)  # no restart for stalling: only the cluster
    with RunningSystem(settings, ["catalog", "feedback"]) as system:
        system.wait_trace(propose(system, title="旧集群上"), 1)
        subscriber, _ = _trace_consumer(system)
        consumer = subscriber.consumer
        watchdog = system.services["feedback"].watchdog
        wait_for(lambda: watchdog._cluster, 10, "the cluster id seen")
        # The place a consumer kept from the old log, beyond the end of the new one.
        _in_loop(system, "feedback", lambda: [consumer.seek(tp, 1_000) for tp in consumer.assignment()])
        after = propose(system, title="新集群上")
        probe = watchdog.probe
        real = probe.cluster_id

        async def replaced() -> str:
            return f"{await real()}-replaced"

        probe.cluster_id = replaced  # type: ignore[method-assign]
        steps = system.wait_trace(after, 1, timeout=30)
        assert steps[0]["type"] == "TopicProposed"
        assert subscriber.consumer is consumer  # read again, not restarted
