"""The outbox relay: every stored event reaches the service's Kafka topic, or an operator hears why.

The relay follows the store's notification log and publishes each event (and its
public outcome, where it has one). What it guarantees:

- **Nothing lost.** Its position is recorded only after the broker acknowledged;
  a crash between commit and publish re-publishes with the same CloudEvent id.
- **Nothing blocks the rest.** An event the broker can never take (too large, say)
  is parked: recorded in the relay's own store, sent as a small notice to the
  dead-letter topic, logged as an error and shown in ``health`` until an operator
  retries it (``consult relay retry``) or marks it handled (``consult relay resolve``).
  Later events keep flowing.
- **No needless copies.** When a batch fails part-way, the events the broker
  acknowledged are remembered and not sent again on the retry.
- **A broker that lost its log is noticed.** Every ``broker_check_interval`` seconds
  (and after any failure) the relay recreates missing topics with the configured
  partitions and compares each partition's end offset with the offsets the broker
  acknowledged to it; an end below them means the broker came back without its
  data, and the relay publishes the whole store again, once its topics exist.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Notification, Tracking
from faststream.kafka import KafkaBroker
from pydantic import ValidationError

from shared.application import ServiceApplication
from shared.config import DEADLETTER_TOPIC, OUTCOMES_TOPIC, SERVICE_TOPICS, Settings
from shared.consumer import send_dead_letter
from shared.envelope import CloudEvent
from shared.follower import STUCK_AFTER, LogFollower
from shared.kafka import UNPUBLISHABLE, BrokerProbe, Receipt, RecordBatches, lowest_offsets, publish
from shared.stores import ViewStore, open_view_store


class RelayState:
    """The relay's own records beside the event store: parked events and acknowledged offsets.

    Kept in a small store of its own (``<service>-relay``), not in the read models:
    it is operational state, not a projection of events.
    """

    PARKED, OFFSETS, REPUBLISH = "parked", "offsets", "republish"

    def __init__(self, store: ViewStore):
        self.store = store

    @classmethod
    def open(cls, settings: Settings, service: str) -> RelayState:
        # Written by the running relay and by the operator's commands (``consult relay``).
        return cls(open_view_store(settings, service, "relay", pool_size=1, shared_with_processes=True))

    def close(self) -> None:
        self.store.datastore.close()

    def _put(self, view: str, key: str, doc: dict[str, Any]) -> None:
        with self.store.transaction() as txn:
            txn.put(view, key, doc)

    # -- parked events ------------------------------------------------------------
    def parked(self) -> list[dict[str, Any]]:
        return self.store.list(self.PARKED)

    def park(self, doc: dict[str, Any]) -> None:
        self._put(self.PARKED, f"{doc['position']:012d}", doc)

    def set_status(self, position: int, status: str, **fields: Any) -> dict[str, Any]:
        """Operator decisions on a parked event: ``retry`` or ``resolved``."""
        key = f"{position:012d}"
        with self.store.transaction() as txn:
            doc = txn.get(self.PARKED, key)
            if doc is None:
                raise KeyError(f"no event is parked at position {position}")
            doc.update(status=status, **fields)
            txn.put(self.PARKED, key, doc)
        return doc

    # -- offsets the broker acknowledged, and republication after a lost log -------
    def offsets(self) -> dict[tuple[str, int], int]:
        return {
            (doc["topic"], int(p)): n
            for doc in self.store.list(self.OFFSETS)
            for p, n in doc["next"].items()
        }

    def save_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        by_topic: dict[str, dict[str, int]] = {}
        for (topic, partition), n in offsets.items():
            by_topic.setdefault(topic, {})[str(partition)] = n
        with self.store.transaction() as txn:
            for doc in txn.list(self.OFFSETS):
                if doc["topic"] not in by_topic:
                    txn.delete(self.OFFSETS, doc["topic"])
            for topic, next_offsets in by_topic.items():
                txn.put(self.OFFSETS, topic, {"topic": topic, "next": next_offsets})

    def republish_until(self) -> int:
        doc = self.store.get(self.REPUBLISH, "store")
        return int(doc["until"]) if doc else 0

    def set_republish_until(self, position: int) -> None:
        with self.store.transaction() as txn:
            if position:
                txn.put(self.REPUBLISH, "store", {"until": position})
            else:
                txn.delete(self.REPUBLISH, "store")


class Relay(LogFollower):
    """The durable outbox of one service (see the module's description)."""

    recover_on_start = True  # the broker may have restarted empty while we were down

    def __init__(self, app: ServiceApplication, settings: Settings, broker: KafkaBroker):
        super().__init__(app, settings, "relay")
        self.broker = broker
        self.topic = settings.topic(SERVICE_TOPICS[app.service])
        self.outcomes_topic = settings.topic(OUTCOMES_TOPIC)
        self.deadletters = settings.topic(DEADLETTER_TOPIC)
        self.tracking = app.factory.tracking_recorder()
        self.tracking_name = f"relay:{self.topic}"
        self.state = RelayState.open(settings, app.service)
        self.probe = BrokerProbe(settings)
        self._stored = self.tracking.max_tracking_id(self.tracking_name) or 0
        self._position = self._stored
        self._republish_until = self.state.republish_until()
        if self._republish_until:
            # A republication after a lost log was under way when we stopped: start it over.
            self._position = 0
        #: Positions acknowledged beyond ``_position`` (a batch that failed part-way).
        self._acked: set[int] = set()
        #: Per (topic, partition), an end offset the broker must have reached (see _raise_floors).
        self._offsets = self.state.offsets()
        self._parked: dict[int, dict[str, Any]] = {}
        self._next_check = 0.0
        #: The last round's record of its position and offsets, written off the publishing path.
        self._recording: asyncio.Future[None] | None = None
        self._recording_lock = threading.Lock()
        self._load_parked()

    def close(self) -> None:
        with self._recording_lock:  # a record under way is finished first
            self.state.close()

    # -- the follower's hooks -------------------------------------------------------
    async def position(self) -> int:
        return self._position

    async def recover(self) -> None:
        await self.check_broker()

    async def idle(self) -> None:
        """Between batches: the periodic broker check and any retry an operator asked for."""
        if self._recording is not None and self._recording.done():
            await self.settle()  # a record that failed fails this round (and is retried)
        if time.monotonic() >= self._next_check:
            await self.check_broker()
            await self._retry_parked()

    async def process(self, notifications: list[Notification]) -> None:
        batches = RecordBatches(self.broker)
        sent: list[tuple[int, CloudEvent, list[Receipt]]] = []
        failure: BaseException | None = None
        for notification in notifications:
            position = notification.id
            if position in self._acked or position in self._parked:
                continue
            try:
                event = self.app.envelope(notification)
            except ValidationError as error:
                await self._park(position, None, f"cannot be made into a CloudEvent: {error}",
                                 topic=notification.topic)
                continue
            try:
                receipts = await self._send(event, batches)
            except UNPUBLISHABLE as error:
                await self._park(position, event, f"refused by the producer: {error}")
                continue
            except Exception as error:  # noqa: BLE001 - broker trouble: retry from here
                failure = error
                break
            sent.append((position, event, receipts))
        if failure is None and len(notifications) == self.batch_size:
            self.read_ahead(notifications[-1].id)  # read while the broker acknowledges
        lowest = await batches.flush()
        if lowest is None:  # something failed: each event's receipts say what became of it
            lowest, failure = await self._outcomes(sent, failure)
        else:  # all acknowledged: the round's lowest offset per partition is all there is to know
            self._acked.update(position for position, _, _ in sent)
        if self._reused(lowest):
            # The broker gave an offset it had already given us: it lost its log.
            # Everything goes again, what it just took included: a consumer that
            # kept its old position may skip the start of the new log, and must
            # find every event again further on (duplicates share their id).
            await self._republish_all(why="an acknowledgement reused an offset")
            return
        self._raise_floors(lowest)
        await self._advance(notifications)
        if failure is not None:
            raise failure

    async def _outcomes(self, sent: list[tuple[int, CloudEvent, list[Receipt]]], failure: BaseException | None
                        ) -> tuple[dict[tuple[str, int], int], BaseException | None]:
        """A round in which something failed, event by event: what was acknowledged (the
        lowest offset per partition), what is parked, what failed."""
        acknowledged: list[Any] = []
        for position, event, receipts in sent:
            results = [r.outcome() for r in receipts]
            errors = [r for r in results if isinstance(r, BaseException)]
            if errors and all(isinstance(e, UNPUBLISHABLE) for e in errors):
                # The broker refused a batch: find out, alone, whether this event was why.
                results = await asyncio.gather(*await self._send_alone(event), return_exceptions=True)
                errors = [r for r in results if isinstance(r, BaseException)]
            if not errors:
                self._acked.add(position)
                acknowledged += results
            elif any(isinstance(e, UNPUBLISHABLE) for e in errors):
                await self._park(position, event, f"refused by the broker: {errors[0]!r}")
            else:
                failure = failure or errors[0]
        return lowest_offsets(acknowledged), failure

    # -- publishing ------------------------------------------------------------------
    def _messages(self, event: CloudEvent) -> list[tuple[str, CloudEvent]]:
        """What one stored event becomes on Kafka: itself, and its public outcome forms."""
        return [(self.topic, event)] + [(self.outcomes_topic, public) for public in self.app.outcome_forms(event)]

    async def _send(self, event: CloudEvent, batches: RecordBatches) -> list[Receipt]:
        return [await batches.add(topic, message) for topic, message in self._messages(event)]

    async def _send_alone(self, event: CloudEvent) -> list[asyncio.Future[Any]]:
        """One event (and its outcome forms) sent message by message: a retry, or a parked event."""
        return [await publish(self.broker, topic, message) for topic, message in self._messages(event)]

    def _raise_floors(self, lowest: dict[tuple[str, int], int]) -> None:
        """Remember, per partition, an end offset the broker must have reached by now.

        Kafka's end offset is the last acknowledged offset + 1. The floor kept is the
        lowest offset acknowledged in this round + 1: every broker's end offset is at
        least that, unless it lost its log, even one that lists only its last batch's
        first offset + 1 (the embedded broker's ListOffsets; ``end_offsets`` asks a
        fetch for the true end).
        """
        for key, offset in lowest.items():
            self._offsets[key] = max(self._offsets.get(key, 0), offset + 1)

    async def _advance(self, notifications: list[Notification]) -> None:
        """Move the recorded position over every leading event that is published or parked."""
        mark = self._position
        for notification in notifications:
            if notification.id not in self._acked and notification.id not in self._parked:
                break
            mark = notification.id
        if mark == self._position:
            return
        published = sum(1 for p in self._acked if p <= mark)
        self._acked = {p for p in self._acked if p > mark}
        self._position = mark
        finished = bool(self._republish_until and mark >= self._republish_until)
        if finished:
            self.log.info("republication complete", topic=self.topic, upto=mark)
            self._republish_until = 0
        await self.settle()  # the previous round's record first: records are written in order
        self._recording = asyncio.ensure_future(
            asyncio.to_thread(self._record, mark, dict(self._offsets), finished))
        self.log.debug("published", topic=self.topic, upto=mark, count=published)

    def _record(self, mark: int, offsets: dict[tuple[str, int], int], finished: bool) -> None:
        """Write down how far publication got, while the next round is read and sent.

        Two commits a round had been a tenth of relaying on the way between rounds. A
        crash before they are written publishes this round again on restart, which
        consumers take as the duplicates they are (the ids are the same).
        """
        with self._recording_lock:
            if mark > self._stored:
                self.tracking.insert_tracking(Tracking(self.tracking_name, mark))
                self._stored = mark
            if finished:
                self.state.set_republish_until(0)
            self.state.save_offsets(offsets)

    async def settle(self) -> None:
        """Wait for the last round's record; its failure is raised here."""
        recording, self._recording = self._recording, None
        if recording is not None:
            await recording

    # -- a broker that lost its log ----------------------------------------------------
    async def check_broker(self) -> None:
        self._next_check = time.monotonic() + self.settings.broker_check_interval
        await self.probe.ensure_topics()
        topics = {self.topic, *(t for t, _ in self._offsets)}
        ends = await self.probe.end_offsets(topics)
        behind = sorted(k for k, n in self._offsets.items() if ends.get(k, 0) < n)
        # Offsets recorded before they were kept (or lost with a store copy): an empty
        # topic under a relay that has published is the same sign.
        empty = (not self._offsets and self._position > 0
                 and all(n == 0 for (t, _), n in ends.items() if t == self.topic))
        if behind or empty:
            await self._republish_all(
                why=f"end offsets below those acknowledged: {[f'{t}[{p}]' for t, p in behind][:10]}"
                if behind else "the topic is empty")

    def _reused(self, lowest: dict[tuple[str, int], int]) -> bool:
        """True when the broker acknowledged, on the service's topic, an offset below one it
        acknowledged in an earlier round: offsets of a partition only grow, unless the log
        was lost."""
        return any(offset < self._offsets.get(key, 0) for key, offset in lowest.items() if key[0] == self.topic)

    async def _republish_all(self, why: str) -> None:
        """The broker lost its log: publish the whole store again.

        Its topics first: a broker that restarted empty has none, and the embedded
        one would take the records for topics that do not exist and then serve none
        of them (``BrokerProbe.ensure_topics``).
        """
        await self.settle()
        await self.probe.ensure_topics()
        self.log.warning("the broker lost its log; publishing the whole store again",
                         topic=self.topic, why=why)
        self._republish_until = max(self._stored, self._position)
        await asyncio.to_thread(self.state.set_republish_until, self._republish_until)
        self._offsets = {}
        await asyncio.to_thread(self.state.save_offsets, {})
        self._position, self._acked = 0, set()

    # -- parking -------------------------------------------------------------------------
    def _load_parked(self) -> None:
        self._parked = {doc["position"]: doc for doc in self.state.parked()
                        if doc["status"] != "published"}

    async def _park(self, position: int, event: CloudEvent | None, reason: str,
                    topic: str | None = None) -> None:
        doc = {
            "position": position,
            "event_id": event.id if event else None,
            "type": event.type if event else topic,
            "subject": event.subject if event else None,
            "size": len(event.to_bytes()) if event else None,
            "reason": reason[:2000],
            "parked_at": datetime.now(UTC).isoformat(),
            "status": "parked",
            "dead_lettered": False,
        }
        await asyncio.to_thread(self.state.park, doc)
        self._parked[position] = doc
        self.log.error(
            "event parked: the broker cannot take it; later events go on. "
            "Resolve with `consult relay retry` or `consult relay resolve`.",
            position=position, event_id=doc["event_id"], type=doc["type"], reason=doc["reason"],
        )
        await self._dead_letter(doc)

    async def _dead_letter(self, doc: dict[str, Any]) -> None:
        """A small notice on the dead-letter topic (the event itself is what did not fit)."""
        notice = {**doc, "service": self.app.service, "topic": self.topic}
        await send_dead_letter(
            self.broker, self.deadletters, json.dumps(notice, ensure_ascii=False).encode(),
            (doc["subject"] or str(doc["position"])).encode(),
            reason=doc["reason"][:500], consumer=f"relay:{self.app.service}",
            origin={"topic": self.topic, "position": str(doc["position"])},
            headers={"content-type": "application/json"},
        )
        doc["dead_lettered"] = True
        await asyncio.to_thread(self.state.park, doc)

    async def _retry_parked(self) -> None:
        """Publish what an operator marked for retry; send notices that did not go out."""
        await asyncio.to_thread(self._load_parked)
        for position, doc in sorted(self._parked.items()):
            if not doc.get("dead_lettered"):
                await self._dead_letter(doc)
            if doc["status"] != "retry":
                continue
            notification = next(iter(await asyncio.to_thread(self.app.notifications, position - 1, 1)), None)
            if notification is None or notification.id != position:
                continue
            event = self.app.envelope(notification)
            try:
                results = await asyncio.gather(*await self._send_alone(event))
            except UNPUBLISHABLE as error:
                doc.update(status="parked", reason=f"retried, refused again: {error!r}"[:2000])
                await asyncio.to_thread(self.state.park, doc)
                self.log.error("parked event refused again", position=position, reason=doc["reason"])
                continue
            self._raise_floors(lowest_offsets(results))
            doc.update(status="published", published_at=datetime.now(UTC).isoformat())
            await asyncio.to_thread(self.state.park, doc)
            del self._parked[position]
            self.log.info("parked event published on retry", position=position, event_id=event.id)

    # -- health ---------------------------------------------------------------------------
    def status(self, stored: int) -> dict[str, Any]:
        """What ``health`` shows of this relay, and what makes it degraded."""
        stuck = [
            {k: d[k] for k in ("position", "event_id", "type", "reason", "status")}
            for d in self._parked.values() if d["status"] in ("parked", "retry")
        ]
        lag = max(0, stored - self._position)
        problems = []
        if stuck:
            problems.append(f"{len(stuck)} event(s) parked, first at position {stuck[0]['position']}")
        if lag > self.settings.relay_lag_alert:
            problems.append(f"{lag} events not yet published")
        failing = self.failing_for()
        if failing is not None and failing > STUCK_AFTER:
            problems.append(f"publishing has failed for {failing:.0f}s"
                            f" at position {self._position + 1}: {self.last_error}")
        return {
            "stored": stored, "published": self._position, "lag": lag,
            "republishing": bool(self._republish_until), "parked": stuck,
            "last_error": self.last_error, "problems": problems,
        }
