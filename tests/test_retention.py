"""The topics that carry the system's history keep it: created to keep events for good, and a
topic found keeping them for less (made by hand, or before this was set) is named in health.

Real broker (the embedded one describes topic configurations as Kafka does).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.config import ALL_TOPICS, HISTORY_TOPICS, INBOUND_TOPIC, SERVICE_TOPICS, Settings
from tests.conftest import KafkaEndpoint, make_settings
from tests.harness import RunningSystem, wait_for

WEEK_MS = 7 * 24 * 3600 * 1000


def retention(settings: Settings) -> dict[str, str | None]:
    """Each contract topic's ``retention.ms`` as the broker describes it."""
    async def run() -> dict[str, str | None]:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            answers = await admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, settings.topic(t)) for t in ALL_TOPICS])
        finally:
            await admin.close()
        found: dict[str, str | None] = {}
        for answer in answers:
            for resource in answer.to_object()["resources"]:
                entries = {e["config_names"]: e["config_value"] for e in resource["config_entries"]}
                found[resource["resource_name"]] = entries.get("retention.ms")
        return found

    return asyncio.run(run())


def make_topic(settings: Settings, topic: str, kept_ms: int) -> None:
    async def run() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(settings.topic(topic), settings.kafka_partitions, 1,
                                                topic_configs={"retention.ms": str(kept_ms)})])
        finally:
            await admin.close()

    asyncio.run(run())


def test_history_topics_are_made_to_keep_events_for_good(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    settings = make_settings("sqlite", tmp_path, kafka, None)
    with RunningSystem(settings, ["catalog"]) as system:
        kept = retention(settings)
        wait_for(lambda: system.services["catalog"].retention_checks or None, 20, "the retention checked")
        health = system.get("/catalog/health")
    assert {t: kept[settings.topic(t)] for t in HISTORY_TOPICS} == {t: "-1" for t in HISTORY_TOPICS}
    # Inbound commands carry the bus's personal data: they keep the cluster's default.
    assert kept[settings.topic(INBOUND_TOPIC)] != "-1"
    assert not [p for p in health["problems"] if "retention" in p], health


def test_a_history_topic_that_forgets_is_named_in_health(tmp_path: Path, kafka: KafkaEndpoint) -> None:
    settings = make_settings("sqlite", tmp_path, kafka, None)
    make_topic(settings, SERVICE_TOPICS["catalog"], WEEK_MS)  # made before, with a week's retention
    with RunningSystem(settings, ["catalog"]) as system:
        health = wait_for(lambda: (h := system.get("/catalog/health", expect=None))["problems"] and h, 20,
                          "health to name the topic")
    named = [p for p in health["problems"] if "retention.ms" in p]
    assert named == [f"topic {settings.topic(SERVICE_TOPICS['catalog'])} keeps events 7 days "
                     f"(retention.ms={WEEK_MS}), not for good: older events cannot be read again "
                     "(views rebuilt from Kafka, new subscribers); see deploy/SCALING.md"], health
    assert health["status"] == "degraded"

    # An operator who chose a week on purpose (KAFKA_EVENT_RETENTION_MS) is not told otherwise.
    chosen = settings.model_copy(update={"kafka_event_retention_ms": WEEK_MS})
    with RunningSystem(chosen, ["catalog"]) as system:
        checked = system.services["catalog"]
        wait_for(lambda: checked.retention_checks or None, 20, "the retention checked")
        health = system.get("/catalog/health", expect=None)
        assert checked.short_retention == [] and not [p for p in health["problems"] if "retention.ms" in p], health
