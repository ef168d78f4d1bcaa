"""A running service: its store, views, relay, projections, consumers and routes.

Each ``services/<name>/__init__.py`` declares a :class:`ServiceSpec`; this module
turns it into the running parts, the same way for all four services.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from shared.application import ServiceApplication
from shared.clock import Clock
from shared.config import AUDIT_TOPIC, Settings
from shared.consumer import attach, consumer_state
from shared.follower import STUCK_AFTER, LogFollower, ProjectionFollower
from shared.http import IdempotentRoute
from shared.inbound import DESK, InboundCommand, Intake, attach_intake
from shared.kafka import BrokerProbe, ensure_topics, make_broker
from shared.ledger import LedgerFollower
from shared.logs import get_logger
from shared.projection import ViewProjection, start_over_if_changed
from shared.reactions import Reaction
from shared.relay import Relay
from shared.stores import open_view_store
from shared.watchdog import ConsumerWatchdog

if TYPE_CHECKING:
    from faststream.kafka import KafkaBroker


async def settle_threads(timeout: float = 15.0) -> None:
    """Wait for the work handed to threads (``asyncio.to_thread``) to finish.

    Cancelling a task that waits on a thread does not stop the thread: a follower's query
    or a consumer's projection may still be running in it. Closing a store under it can
    crash the process (SQLite's C library does not expect a connection closed from another
    thread mid-query), so the stores close only after this.
    """
    with contextlib.suppress(TimeoutError, RuntimeError):
        await asyncio.wait_for(asyncio.get_running_loop().shutdown_default_executor(), timeout)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    application: type[ServiceApplication]
    #: Builds the service's HTTP routes given the running service (on ``service.api_router()``).
    routes: Callable[[Service], APIRouter]
    #: Views fed from this service's own log.
    own_projections: tuple[type[ViewProjection], ...] = ()
    #: Views fed from Kafka topics (other services' events, or all of them).
    kafka_projections: tuple[type[ViewProjection], ...] = ()
    #: Other services' events this service acts on (``shared.reactions``).
    reactions: tuple[type[Reaction], ...] = ()
    #: Background jobs started with the service: ``job(service) -> coroutine``.
    jobs: tuple[Callable[[Service], Any], ...] = field(default=())
    #: Commands from the e-government bus this service takes in (``shared.inbound``).
    inbound: dict[str, InboundCommand] = field(default_factory=dict)


class StoreRefusals:
    """Requests the store could not serve lately (a full disk, a lost connection, a lock held
    too long): each was answered 503, and health names the trouble for ``SHOWN`` seconds.

    Reads still work when a disk is full, so without this health said ``ok`` while every
    command failed. The log has one line when the trouble starts and one every ``LOG_EVERY``
    seconds while it lasts, with the count, rather than one per refused request.
    """

    SHOWN = 60.0
    LOG_EVERY = 10.0

    def __init__(self, log: Any):
        self.log = log
        self.count = 0
        self.reason: str | None = None
        self._since = self._last = self._logged = 0.0

    def note(self, reason: str, route: str) -> None:
        now = time.monotonic()
        if now - self._last > self.SHOWN:
            self.count, self._since, self._logged = 0, now, 0.0
        self.count += 1
        self.reason, self._last = reason, now
        if now - self._logged >= self.LOG_EVERY:
            self._logged = now
            self.log.error("the store could not serve a request; answered 503", reason=reason, route=route,
                           refused=self.count, since_s=round(now - self._since, 1))

    def problem(self) -> str | None:
        ago = time.monotonic() - self._last
        if not self.count or ago > self.SHOWN:
            return None
        return f"the store could not serve {self.count} request(s), the last {ago:.0f} s ago: {self.reason}"


class Service:
    def __init__(self, spec: ServiceSpec, settings: Settings, clock: Clock | None = None):
        self.spec = spec
        self.name = spec.name
        self.settings = settings
        self.log = get_logger("service", service=spec.name)
        # The application owns "today" (app.clock); the real clock unless one is injected.
        self.app = spec.application(settings, clock)
        self.views = open_view_store(settings, spec.name)
        self.projections: dict[str, ViewProjection] = {
            p.name: p(self.views) for p in (*spec.own_projections, *spec.kafka_projections)
        }
        owners: dict[str, str] = {}
        for projection in self.projections.values():  # what one forgets must be its own alone
            for view in projection.views:
                if owners.setdefault(view, projection.name) != projection.name:
                    raise TypeError(f"{spec.name}: view {view!r} is written by both {owners[view]} "
                                    f"and {projection.name}")
        self.broker: KafkaBroker = make_broker(settings, client_id=f"consult-{spec.name}")
        self.subscribers = [
            (self.projections[cls.name], self.group_id(cls.name, cls.version),
             attach(self.broker, settings, self.projections[cls.name], self.group_id(cls.name, cls.version)))
            for cls in spec.kafka_projections
        ]
        for cls in spec.reactions:
            reaction = cls(self.app, self.views)
            group = self.group_id(cls.name)
            self.subscribers.append((reaction, group, attach(self.broker, settings, reaction, group)))
        if spec.inbound or spec.name == DESK:
            intake = Intake(self, spec.inbound)
            group = self.group_id(intake.name)
            self.subscribers.append((intake, group, attach_intake(self.broker, settings, intake, group)))
        self.relay = Relay(self.app, settings, self.broker)
        self.watchdog = ConsumerWatchdog(settings, self.subscribers)
        self.followers: list[LogFollower] = [
            ProjectionFollower(self.app, settings, self.projections[p.name])
            for p in spec.own_projections
        ]
        # The audit ledger lives beside the relay's records (operational state, not a view).
        self.ledger = LedgerFollower(self.app, settings, self.relay.state.store, self._publish_digest)
        self.followers.append(self.ledger)
        self._unpublished_digests: list[dict[str, Any]] = []
        self.broker_connected = False
        self._tasks: list[asyncio.Task[Any]] = []
        self.refusals = StoreRefusals(self.log)
        #: History topics that keep events for less time than configured (``_check_retention``).
        self.short_retention: list[str] = []
        self.retention_checks = 0
        #: Projections building their views again from the start, since a release changed
        #: them (name → version), until they catch up.
        self.rebuilding: dict[str, int] = {}

    def group_id(self, projection: str, version: int = 1) -> str:
        """A consumer's group. A Kafka-fed view of version 2 or more has a group of its own:
        new to the cluster, it reads its topics from the start (``start_over_if_changed``)."""
        group = f"{self.settings.group_prefix}.{self.name}.{projection}"
        return group if version == 1 else f"{group}.v{version}"

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        # Before any follower or consumer applies an event: a changed projection forgets first.
        await asyncio.to_thread(self._start_over_changed)
        spawn = asyncio.get_running_loop().create_task
        self._tasks += [spawn(f.run(), name=f.name) for f in self.followers]
        self._tasks += [spawn(job(self), name=getattr(job, "__name__", "job")) for job in self.spec.jobs]
        self._tasks.append(spawn(self._connect(), name="connect"))

    def _start_over_changed(self) -> None:
        for projection in self.projections.values():
            was = start_over_if_changed(projection)
            if was is not None:
                self.rebuilding[projection.name] = projection.version
                self.log.warning("a view is built again from the first event: its projection changed",
                                 projection=projection.name, was_version=was, version=projection.version,
                                 views=list(projection.views))

    def _rebuilding(self, consumers: list[dict[str, Any]]) -> list[str]:
        """Views still being built again from the start, in words for health."""
        behind = {c["projection"]: c["behind"] for c in consumers}
        caught_up = {f.projection.name for f in self.followers
                     if isinstance(f, ProjectionFollower) and f.caught_up.is_set()}
        caught_up |= {name for name, lag in behind.items() if lag == 0}
        for name in caught_up & self.rebuilding.keys():
            self.log.info("a view built again has caught up", projection=name, version=self.rebuilding.pop(name))
        return [f"{name} (version {version}) is being built again from the first event: its views "
                f"({', '.join(self.projections[name].views)}) are incomplete until it catches up"
                for name, version in sorted(self.rebuilding.items())]

    async def _connect(self) -> None:
        """Reach the broker, however long it takes; commands are stored meanwhile."""
        delay = 0.2
        while True:
            try:
                await ensure_topics(self.settings)
                await self.broker.start()
                break
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001
                self.log.warning("broker not reachable yet", error=repr(error))
                with contextlib.suppress(Exception):
                    await self.broker.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.broker_connected = True
        self.log.info("broker connected", bootstrap=self.settings.kafka_bootstrap_servers)
        spawn = asyncio.get_running_loop().create_task
        self._tasks.append(spawn(self._watch_retention(), name="retention"))
        if self.subscribers:
            self._tasks.append(spawn(self.watchdog.run(), name=self.watchdog.name))
        if self.settings.relay_enabled:
            self._tasks.append(spawn(self.relay.run(), name="relay"))

    #: Seconds between looks at the history topics' retention (an operator may change it).
    RETENTION_CHECK_EVERY = 600.0

    async def _watch_retention(self) -> None:
        while True:
            await self._check_retention()
            await asyncio.sleep(self.RETENTION_CHECK_EVERY)

    async def _check_retention(self) -> None:
        """Name the history topics that forget events sooner than configured (health, log)."""
        probe = BrokerProbe(self.settings)
        try:
            short = await probe.short_retention()
        except Exception as error:  # noqa: BLE001 - a check, not a condition of running
            self.log.info("topic retention not checked", error=repr(error))
            return
        finally:
            await probe.close()
        before = self.short_retention
        self.retention_checks += 1
        self.short_retention = [
            f"topic {topic} keeps events {kept / 86_400_000:g} days (retention.ms={kept}), not "
            f"{'for good' if self.settings.kafka_event_retention_ms == -1 else 'as long as configured'}: "
            "older events cannot be read again (views rebuilt from Kafka, new subscribers); "
            "see deploy/SCALING.md" for topic, kept in sorted(short.items())]
        for problem in set(self.short_retention) - set(before):
            self.log.warning("a history topic keeps events too briefly", problem=problem)

    async def _publish_digest(self, digest: dict[str, Any]) -> None:
        """A copy of each sealed digest outside the store; kept and sent later if the broker is away."""
        self._unpublished_digests.append(digest)
        if not self.broker_connected:
            return
        while self._unpublished_digests:
            await self.broker.publish(json.dumps(self._unpublished_digests[0]).encode(),
                                      self.settings.topic(AUDIT_TOPIC), key=self.name.encode())
            self._unpublished_digests.pop(0)

    async def stop(self) -> None:
        await self.halt()
        await settle_threads()
        self.close()

    async def halt(self) -> None:
        """Stop followers, jobs, relay and consumers; the stores stay open."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.broker.stop()
        with contextlib.suppress(Exception):
            await self.relay.probe.close()
        with contextlib.suppress(Exception):
            await self.watchdog.close()

    def close(self) -> None:
        """Close the stores: only once nothing works in them any more (``settle_threads``)."""
        self.relay.close()
        self.app.close()
        with contextlib.suppress(Exception):
            self.views.datastore.close()

    # -- health ----------------------------------------------------------------
    async def health(self) -> tuple[dict[str, Any], int]:
        """200 when the store and the broker answer (the contract); ``status`` says
        ``degraded`` with the ``problems`` when events are parked, the relay is far
        behind or stuck, a consumer stopped or stalled, a view's follower keeps failing,
        or the store lately could not serve a request (a full disk, say)."""
        stored: int | None = None
        with contextlib.suppress(Exception):
            stored = await asyncio.to_thread(self.app.max_position)
        broker = False
        if self.broker_connected:
            with contextlib.suppress(Exception):
                broker = bool(await self.broker.ping(timeout=2.0))
        problems = [] if stored is not None else ["the store does not answer"]
        if not broker:
            problems.append("the broker does not answer")
        relay = self.relay.status(stored or 0)
        if not self.settings.relay_enabled:
            relay["problems"].append("the relay is turned off on this node (CONSULT_RELAY_ENABLED)")
        problems += relay.pop("problems")
        consumers = [consumer_state(sub, p, g) | self.watchdog.state(g) for p, g, sub in self.subscribers]
        followers = [{"name": f.name, "last_error": f.last_error,
                      "failing_for": None if (s := f.failing_for()) is None else round(s, 1)}
                     for f in self.followers]
        problems += [f"{f['name']} has failed for {f['failing_for']:.0f} s: {f['last_error']}"
                     for f in followers if f["failing_for"] is not None and f["failing_for"] > STUCK_AFTER]
        if (refused := self.refusals.problem()) is not None:
            problems.append(refused)
        problems += self.short_retention
        problems += self._rebuilding(consumers)
        if self.broker_connected:
            problems += [f"consumer {c['group']} is not running" for c in consumers if not c["running"]]
            problems += [f"consumer {c['group']} is {c['behind']} behind and has committed nothing "
                         f"for {c['stalled_for']} s" for c in consumers if c["running"] and c["stalled_for"]]
        reachable = stored is not None and broker
        body = {
            "service": self.name, "status": "ok" if not problems else "degraded",
            "store": stored is not None, "broker": broker, "problems": problems,
            "relay": relay, "consumers": consumers, "followers": followers,
        }
        return body, 200 if reachable else 503

    # -- HTTP ----------------------------------------------------------------------
    def api_router(self, **options: Any) -> APIRouter:
        """A router whose routes carry the service's prefix and tag from the start.

        Routes made flat, not included under a prefix: FastAPI matches an included
        router's routes again at each level of inclusion on every request, which was a
        tenth of the server's time under load (bench/README.md).
        """
        return APIRouter(prefix=f"/{self.name}", tags=[self.name], route_class=IdempotentRoute, **options)

    def routes(self) -> list[Any]:
        """Every HTTP route of the service, with its prefix: health, then the spec's."""
        router = self.api_router()

        @router.get("/health", summary=f"{self.name}: store and broker reachable; relay lag and consumers",
                    responses={503: {"description": "The store or the broker does not answer (same body)"}})
        async def health() -> JSONResponse:
            return JSONResponse(*await self.health())

        return [*router.routes, *self.spec.routes(self).routes]
