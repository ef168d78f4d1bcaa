"""``consult audit``: seal the ledgers, verify them, and hand auditors the public key.

- ``consult audit seal [--service S] [--digests FILE]``: chain what is not chained yet, sign a
  digest of each head, keep it beside the chain, publish it to ``consultation.audit.v1`` and,
  with ``--digests``, append it to the auditor's own file.
- ``consult audit verify [--service S] [--digests FILE] [--public-key FILE]``: recompute every
  chain from its store and check it against the chained records and the digests (read back
  from Kafka, or from the file); exits 1 naming service, position and event id of anything
  altered, deleted, inserted or moved, or a digest that does not verify.
- ``consult audit public-key``: the key auditors verify digests with (PEM).
- ``consult audit replay [--service S] [--from-kafka]``: rebuild every read model from the
  stores (or the Kafka topics) into fresh storage, with a progress bar, and print every
  difference from the live read models (view, key, field); exits 1 on any. Run it on a quiet
  system: views that are still catching up differ by what they have not applied yet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shared.config import AUDIT_TOPIC, SERVICE_TOPICS, Settings
from shared.envelope import CloudEvent, origin_problem
from shared.ledger import Ledger, Report, Signer, read_digests_file, verify
from shared.relay import RelayState
from shared.replay import BATCH, apply, batches, sources, text_differences
from shared.runtime import SERVICE_NAMES, spec
from shared.stores import ViewStore, open_view_store, schema_name


def _ledgers(settings: Settings, names: list[str]) -> list[tuple[Ledger, Any, RelayState]]:
    opened = []
    for name in names:
        app = spec(name).application(settings)
        state = RelayState.open(settings, name)
        opened.append((Ledger(app, state.store), app, state))
    return opened


def _close(opened: list[tuple[Ledger, Any, RelayState]]) -> None:
    for _, app, state in opened:
        state.close()
        app.close()


async def _publish(settings: Settings, digests: list[dict[str, Any]]) -> None:
    from aiokafka import AIOKafkaProducer

    from shared.kafka import kafka_options

    producer = AIOKafkaProducer(**kafka_options(settings), request_timeout_ms=5000)
    await producer.start()
    try:
        for digest in digests:
            await producer.send_and_wait(settings.topic(AUDIT_TOPIC), json.dumps(digest).encode(),
                                         key=digest["service"].encode())
    finally:
        await producer.stop()


async def _records(settings: Settings, topic: str, deadline: float | None = None) -> list[bytes] | None:
    """Every record value on ``topic`` from the beginning (None when the topic does not exist),
    read until the topic stays quiet, or until ``deadline`` seconds have passed."""
    from aiokafka import AIOKafkaConsumer

    from shared.kafka import kafka_options

    consumer = AIOKafkaConsumer(**kafka_options(settings), group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False, request_timeout_ms=5000)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return None
        consumer.subscribe([topic])
        values: list[bytes] = []
        idle, stop = 0, time.monotonic() + deadline if deadline else None
        while idle < 3 and (stop is None or time.monotonic() < stop):
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            records = [r for rs in batch.values() for r in rs]
            idle = 0 if records else idle + 1
            values += [r.value or b"" for r in records]
        return values
    finally:
        await consumer.stop()


async def _read(settings: Settings) -> list[dict[str, Any]] | None:
    """Every digest on the audit topic; None when the topic does not exist."""
    values = await _records(settings, settings.topic(AUDIT_TOPIC), deadline=15)
    if values is None:
        return None
    found: list[dict[str, Any]] = []
    for value in values:
        try:
            found.append(json.loads(value))
        except (TypeError, ValueError):
            continue  # not a digest: verify says what it checked, not what it skipped
    return found


def seal(settings: Settings, names: list[str], digests_file: Path | None) -> int:
    signer = Signer.for_settings(settings)
    opened = _ledgers(settings, names)
    try:
        sealed = [ledger.seal(signer) for ledger, _, _ in opened]
    finally:
        _close(opened)
    for digest in sealed:
        print(json.dumps(digest))
    if digests_file is not None:
        with digests_file.open("a", encoding="utf-8") as out:
            out.writelines(json.dumps(d) + "\n" for d in sealed)
    try:
        asyncio.run(_publish(settings, sealed))
    except Exception as error:  # noqa: BLE001 - sealed and kept; publishing is a copy
        print(f"consult audit seal: sealed and kept, but not published to {settings.topic(AUDIT_TOPIC)}: "
              f"{error!r}", file=sys.stderr)
    return 0


def check(settings: Settings, names: list[str], digests_file: Path | None, public_key: Path | None) -> int:
    started = time.monotonic()
    if digests_file is not None:
        digests = read_digests_file(digests_file)
        origin = str(digests_file)
    else:
        try:
            read = asyncio.run(_read(settings))
        except Exception as error:  # noqa: BLE001
            print(f"consult audit verify: cannot read digests from Kafka ({settings.kafka_bootstrap_servers}): "
                  f"{error!r}; give --digests FILE", file=sys.stderr)
            return 2
        if read is None:
            print(f"consult audit verify: the topic {settings.topic(AUDIT_TOPIC)} does not exist: nothing was "
                  "sealed and published yet (consult audit seal), or give --digests FILE", file=sys.stderr)
            return 2
        digests, origin = read, settings.topic(AUDIT_TOPIC)
    pem = public_key.read_text() if public_key else Signer.for_settings(settings).public_pem()
    opened = _ledgers(settings, names)
    try:
        reports: list[Report] = [verify(ledger, digests, pem) for ledger, _, _ in opened]
    finally:
        _close(opened)
    problems = [f for r in reports for f in r.findings]
    for finding in problems:
        print(finding.line())
    for r in reports:
        print(f"{r.service}: {r.events} events recomputed, {r.digests} digests checked, "
              f"{r.unchained} stored after the last link, {len(r.findings)} problem(s)")
    print(f"checked against {origin} in {time.monotonic() - started:.1f} s: "
          f"{'TAMPERED' if problems else 'intact'}")
    return 1 if problems else 0


async def _topic_events(settings: Settings, service: str) -> list[CloudEvent]:
    """A service's events as its Kafka topic holds them: genuine ones, once each, in log order."""
    from pydantic import ValidationError

    events: dict[str, CloudEvent] = {}
    for value in await _records(settings, settings.topic(SERVICE_TOPICS[service])) or []:
        try:
            event = CloudEvent.model_validate_json(value)
        except ValidationError:
            continue
        if origin_problem(event, frozenset(SERVICE_TOPICS), service) is None:
            events[event.id] = event  # a republished copy is the same event
    return sorted(events.values(), key=lambda e: e.sequence)


def _chunks(events: list[CloudEvent]) -> Iterator[list[CloudEvent]]:
    for start in range(0, len(events), BATCH):
        yield events[start:start + BATCH]


def _drop(settings: Settings, store: ViewStore, service: str, label: str) -> None:
    with contextlib.suppress(Exception):  # what its writer failed at was raised already, or no longer matters
        store.drain()
    store.datastore.close()
    if settings.postgres:
        from shared.stores import admin_connection

        with admin_connection(settings) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema_name(settings, service, label)}" CASCADE')
    else:
        (settings.data_dir / f"{service}-{label}.sqlite").unlink(missing_ok=True)


def replay(settings: Settings, names: list[str], from_kafka: bool) -> int:
    from tqdm import tqdm

    found = 0
    for name in names:
        service = spec(name)
        classes = [*service.own_projections, *service.kafka_projections]
        label = f"replay_{uuid.uuid4().hex[:8]}"
        fresh = open_view_store(settings, name, label, durable=False)  # thrown away at the end
        running = [cls(fresh) for cls in classes]
        started = time.monotonic()
        try:
            feeds: list[tuple[int, Iterator[list[CloudEvent]]]] = []
            apps = []
            for source in sources(classes, name):
                if from_kafka:
                    events = asyncio.run(_topic_events(settings, source))
                    feeds.append((len(events), _chunks(events)))
                else:
                    app = spec(source).application(settings)
                    apps.append(app)
                    feeds.append((app.max_position(), batches(app)))
            with tqdm(total=sum(n for n, _ in feeds), unit="event", desc=f"{name}: replay", file=sys.stderr,
                      mininterval=0.5) as bar:
                done = sum(apply(running, name, feed, bar.update) for _, feed in feeds)
            for app in apps:
                app.close()
            live = open_view_store(settings, name)
            try:
                diffs = text_differences(live.dump_text(), fresh.dump_text())
            finally:
                live.datastore.close()
        finally:
            _drop(settings, fresh, name, label)
        for view, key, field, was, rebuilt in diffs:
            print(json.dumps({"service": name, "view": view, "key": key, "field": field, "live": was,
                              "rebuilt": rebuilt}, ensure_ascii=False, default=str))
        elapsed = time.monotonic() - started
        print(f"{name}: {done} events replayed from {'Kafka' if from_kafka else 'the stores'} in {elapsed:.1f} s "
              f"({done / max(elapsed, 1e-6):,.0f}/s), {len(diffs)} difference(s)")
        found += len(diffs)
    return 1 if found else 0


def command(args: argparse.Namespace, settings: Settings) -> int:
    names = [args.service] if args.service else list(SERVICE_NAMES)
    if args.action == "public-key":
        print(Signer.for_settings(settings).public_pem(), end="")
        return 0
    digests = Path(args.digests) if args.digests else None
    if args.action == "seal":
        return seal(settings, names, digests)
    if args.action == "replay":
        return replay(settings, names, args.from_kafka)
    return check(settings, names, digests, Path(args.public_key) if args.public_key else None)


def add_parser(commands: Any, defaults: dict[str, Any]) -> None:
    p = commands.add_parser("audit", help="the tamper-evident ledger (seal, verify, public-key) and replay",
                            description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("action", choices=["seal", "verify", "public-key", "replay"])
    p.add_argument("--from-kafka", action="store_true", help="replay: read the events from the Kafka topics")
    p.add_argument("--service", choices=SERVICE_NAMES)
    p.add_argument("--digests", help="a file of digests, one JSON a line (seal appends, verify reads)")
    p.add_argument("--public-key", help="verify with this PEM public key, not the data directory's")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(**defaults)
