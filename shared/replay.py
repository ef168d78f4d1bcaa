"""Rebuilding read models from events into fresh storage, and comparing them with the live ones.

Every view is a projection; replaying the events into an empty view store must give the
same documents as the live one. Operators use this to audit the views
(``consult audit replay``): a view changed by hand, or a projection that drifted, shows
as a difference naming the view, the key and the field.

Events are applied 2,000 to a transaction (the batch's last event tracked), every
projection in the same one; the same batched path the live followers take when behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

from shared.application import ServiceApplication
from shared.config import SERVICE_TOPICS
from shared.envelope import CloudEvent
from shared.projection import ViewProjection, applied_together
from shared.stores import ViewStore, open_view_store

#: Events a rebuild reads and applies at a time: one commit each (500 made commits a
#: tenth of a rebuild on SQLite).
BATCH = 2_000


def batches(app: ServiceApplication, size: int = BATCH) -> Iterator[list[CloudEvent]]:
    """A service's whole log as envelopes, in order, ``size`` at a time."""
    after = 0
    while notifications := app.notifications(after, size):
        yield app.envelopes(notifications)
        after = notifications[-1].id


def apply(projections: list[ViewProjection], own_service: str, events: Iterable[list[CloudEvent]],
          progress: Callable[[int], None] | None = None) -> int:
    """Apply each batch (one service's events) to every projection that follows that service;
    returns the events read."""
    done = 0
    for batch in events:
        if not batch:
            continue
        apply_batch([p for p in projections if _follows(p, own_service, batch[-1])], batch)
        done += len(batch)
        if progress:
            progress(len(batch))
    return done


def _follows(projection: ViewProjection, own_service: str, event: CloudEvent) -> bool:
    """Own-log projections take their service's events; Kafka-fed ones, their topics' services'."""
    topics = projection.kafka_topics
    return SERVICE_TOPICS[event.service] in topics if topics else event.service == own_service


def sources(projections: list[type[ViewProjection]], own_service: str) -> list[str]:
    """The services whose events these projections read."""
    wanted = {own_service}
    for projection in projections:
        wanted |= {service for service, topic in SERVICE_TOPICS.items() if topic in projection.kafka_topics}
    return [service for service in SERVICE_TOPICS if service in wanted]


def rebuild(
    app: ServiceApplication, projections: list[type[ViewProjection]], label: str | None = None
) -> tuple[ViewStore, int]:
    """Replay ``app``'s whole log through ``projections`` into a new view store (one made
    to be compared and thrown away: it does not wait for the disk on commit)."""
    store = open_view_store(app.settings, app.service, label or f"rebuild_{uuid.uuid4().hex[:8]}", durable=False)
    running = [p(store) for p in projections]
    # Here every projection takes this service's log, whatever it follows live.
    replayed = 0
    for batch in batches(app):
        apply_batch(running, batch)
        replayed += len(batch)
    store.drain()  # every batch committed before the store is handed on
    return store, replayed


def apply_batch(projections: list[ViewProjection], batch: list[CloudEvent]) -> None:
    """One batch through every projection, in one transaction when they share a store (a
    rebuild's do): one commit per batch, not one per projection. Should any of them not
    take it so, each takes it on its own, as it would alone."""
    last = batch[-1]
    if (len(projections) > 1 and len({id(p.view) for p in projections}) == 1
            and applied_together(projections[0].view, [p.position_tracking(last) for p in projections],
                                 [(p, batch) for p in projections])):
        return
    for projection in projections:
        projection.handle_batch(batch, projection.position_tracking(last))


def differences(live: dict[Any, Any], rebuilt: dict[Any, Any]) -> list[str]:
    """Keys whose documents differ, are missing, or are extra."""
    out = [f"missing from rebuild: {k}" for k in live.keys() - rebuilt.keys()]
    out += [f"only in rebuild: {k}" for k in rebuilt.keys() - live.keys()]
    out += [f"differs: {k}" for k in live.keys() & rebuilt.keys() if live[k] != rebuilt[k]]
    return sorted(out)


def text_differences(live: dict[tuple[str, str], str],
                     rebuilt: dict[tuple[str, str], str]) -> list[tuple[str, str, str, Any, Any]]:
    """``field_differences`` of two stores' documents as stored (``ViewStore.dump_text``).

    A document is written by one encoder with its keys sorted, so the same document is the
    same text: only the documents whose text differs are decoded and compared field by field
    (one written by an earlier release's encoder may differ in text alone, and is found
    equal then). Decoding every document of both stores was half of an audit replay.
    """
    differing = [key for key, text in live.items() if rebuilt.get(key) != text]
    differing += [key for key in rebuilt.keys() - live.keys()]
    return field_differences({k: orjson.loads(live[k]) for k in differing if k in live},
                             {k: orjson.loads(rebuilt[k]) for k in differing if k in rebuilt})


def field_differences(live: dict[tuple[str, str], dict[str, Any]],
                      rebuilt: dict[tuple[str, str], dict[str, Any]]) -> list[tuple[str, str, str, Any, Any]]:
    """(view, key, field, live value, rebuilt value) for every field that differs; a document
    missing on one side shows as field ``*``."""
    out: list[tuple[str, str, str, Any, Any]] = []
    for view, key in sorted(live.keys() | rebuilt.keys()):
        a, b = live.get((view, key)), rebuilt.get((view, key))
        if a is None or b is None:
            out.append((view, key, "*", a, b))
            continue
        out += [(view, key, f, a.get(f), b.get(f)) for f in sorted(a.keys() | b.keys()) if a.get(f) != b.get(f)]
    return out
