"""Consumers that stopped without saying so are restarted.

An aiokafka consumer can stay alive after a broker restart and yet never rejoin its
group again (aio-libs/aiokafka#1154): no error, no messages, and a read model that
silently falls behind for good. FastStream's consume loop, for its part, ends on any
error that is not a Kafka error. Neither shows from inside, so the watchdog looks
from outside, with what any Kafka operator would look at: every
``broker_check_interval`` seconds it compares each group's committed offsets with the
ends of its topics. A group that is behind and has committed nothing new for
``consumer_stall_after`` seconds, or whose consume loop ended, gets a new consumer.

It also reads the broker's cluster id: a new one is a new cluster whose logs began
empty (every start of the embedded broker), and every consumer then reads its topics
again from the start rather than wait beyond the new log's end (``_check_cluster``).
A topic this process deleted and created again (``shared.kafka.recreations``) is read
again from the start the same way.

A restart is safe at any moment: the new consumer starts from the group's committed
offsets (or the earliest, for a group the broker does not know), and every handler
here recognises an event it already applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition

from shared.config import Settings
from shared.consumer import consuming
from shared.kafka import BrokerProbe, recreations
from shared.logs import get_logger


@dataclass
class _Seen:
    committed: dict[tuple[str, int], int]
    #: Since when the group is waited for: its last progress, or its consumer's last restart.
    since: float
    #: Its last progress (a new commit, or nothing left to read); restarts leave it be.
    progressed: float = 0.0
    restarts: int = 0
    behind: dict[str, int] = field(default_factory=dict)


class ConsumerWatchdog:
    """Watches one service's consumer groups and restarts a stalled one."""

    name = "consumer-watchdog"

    def __init__(self, settings: Settings, subscribers: list[tuple[Any, str, Any]]):
        self.settings = settings
        self.subscribers = subscribers
        self.probe = BrokerProbe(settings)
        self.log = get_logger("watchdog")
        self._seen: dict[str, _Seen] = {}
        self._cluster: str | None = None
        self._recreations = dict(recreations)

    async def run(self) -> None:
        # The cluster the consumers started on, at once: a broker that restarts before the
        # first check would otherwise be taken for the one they started on.
        with contextlib.suppress(Exception):
            self._cluster = await self.probe.cluster_id()
        while True:
            await asyncio.sleep(self.settings.broker_check_interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the broker is away: the relay says so
                self.log.debug("consumer check failed; will retry", error=repr(error))

    async def check(self) -> None:
        await self._check_cluster()
        await self._check_recreated()
        # One look at the topics' ends for all groups: several follow the same topics.
        every = await self.probe.end_offsets({t for _, _, sub in self.subscribers
                                              for t in sub.topic_names_for_subscribe})
        for _, group, subscriber in self.subscribers:
            topics = set(subscriber.topic_names_for_subscribe)
            await self._check(group, subscriber, {k: n for k, n in every.items() if k[0] in topics})

    async def _check(self, group: str, subscriber: Any, ends: dict[tuple[str, int], int]) -> None:
        now = time.monotonic()
        committed = await self.probe.committed(group, ends)
        # Where other instances of this service share the group, only the partitions this
        # consumer holds are its own to answer for; one that holds none answers for all.
        held = _assigned(subscriber)
        behind = {f"{t}[{p}]": end - committed.get((t, p), 0) for (t, p), end in ends.items()
                  if committed.get((t, p), 0) < end and (not held or (t, p) in held)}
        seen = self._seen.setdefault(group, _Seen(committed, now, now))
        if committed != seen.committed or not behind:
            seen.committed, seen.since = committed, now  # progress, or nothing to wait for
            seen.progressed = now
        seen.behind = behind
        if not consuming(subscriber):
            why = "its consumer stopped"
        elif behind and now - seen.since >= self.settings.consumer_stall_after:
            why = f"nothing committed for {now - seen.since:.0f} s while behind"
        else:
            return
        self.log.warning("consumer stalled; starting a new one", group=group, why=why,
                         behind=dict(list(behind.items())[:10]))
        seen.restarts += 1
        seen.since = time.monotonic()
        await self._restart(subscriber)

    async def _check_cluster(self) -> None:
        """A broker with another cluster id is a new cluster: its logs began empty, and a
        consumer may still hold its place in the old one. Kafka answers a fetch beyond a
        log's end with OFFSET_OUT_OF_RANGE, and the consumer starts over; the embedded
        broker answers with nothing, and the consumer would skip whatever the new log
        gathers below its old place. So every consumer reads its partitions again from
        the start (the relays publish everything again on such a broker; handlers skip
        what they already applied)."""
        cluster = await self.probe.cluster_id()
        known, self._cluster = self._cluster, cluster
        if known is None or cluster is None or cluster == known:
            return
        self.log.warning("the broker is a new cluster; every consumer reads its topics again from the start",
                         was=known, now=cluster)
        await self._read_again(lambda _: True)

    async def _check_recreated(self) -> None:
        """A topic deleted and created again (``shared.kafka.recreations``) is a new log,
        as a new cluster is: its consumers read it again from the start."""
        changed = {t for t, n in recreations.items() if self._recreations.get(t) != n}
        if not changed:
            return
        self._recreations = dict(recreations)
        self.log.warning("topics were created again; their consumers read them again from the start",
                         topics=sorted(changed))
        await self._read_again(lambda t: t in changed)

    async def _read_again(self, which: Any) -> None:
        """Every consumer reads the partitions it holds of the topics ``which`` picks from the start."""
        for _, group, subscriber in self.subscribers:
            consumer = getattr(subscriber, "consumer", None)
            held = [TopicPartition(t, p) for t, p in _assigned(subscriber) if which(t)]
            if consumer is not None and held:
                await consumer.seek_to_beginning(*held)
                self.log.info("reading again from the start", group=group, partitions=len(held))

    @staticmethod
    async def _restart(subscriber: Any) -> None:
        await subscriber.stop()
        await subscriber.start()

    def state(self, group: str) -> dict[str, Any]:
        """What ``health`` shows of a group: how far behind at the last check, restarts,
        and for how long it has been behind without committing anything (a problem once
        past ``consumer_stall_after``, restarts or not)."""
        seen = self._seen.get(group)
        if seen is None:
            return {"behind": None, "restarts": 0, "stalled_for": None}
        stalled = time.monotonic() - seen.progressed if seen.behind else 0.0
        return {"behind": sum(seen.behind.values()), "restarts": seen.restarts,
                "stalled_for": round(stalled) if stalled >= self.settings.consumer_stall_after else None}

    async def close(self) -> None:
        await self.probe.close()


def _assigned(subscriber: Any) -> set[tuple[str, int]]:
    consumer = getattr(subscriber, "consumer", None)
    try:
        return {(tp.topic, tp.partition) for tp in consumer.assignment()} if consumer is not None else set()
    except Exception:  # noqa: BLE001 - a consumer between states has no assignment to give
        return set()
