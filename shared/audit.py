"""``consult audit``: seal the ledgers, verify them, and hand auditors the public key.

- ``consult audit seal [--service S] [--digests FILE]``: chain what is not chained yet, sign a
  digest of each head, keep it beside the chain, publish it to ``consultation.audit.v1`` and,
  with ``--digests``, append it to the auditor's own file.
- ``consult audit verify [--service S] [--digests FILE] [--public-key FILE]``: recompute every
  chain from its store and check it against the chained records and the digests (read back
  from Kafka, or from the file); exits 1 naming service, position and event id of anything
  altered, deleted, inserted or moved, or a digest that does not verify.
- ``consult audit public-key``: the key auditors verify digests with (PEM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from shared.config import AUDIT_TOPIC, Settings
from shared.ledger import Ledger, Report, Signer, read_digests_file, verify
from shared.relay import RelayState
from shared.runtime import SERVICE_NAMES, spec


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

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, request_timeout_ms=5000)
    await producer.start()
    try:
        for digest in digests:
            await producer.send_and_wait(settings.topic(AUDIT_TOPIC), json.dumps(digest).encode(),
                                         key=digest["service"].encode())
    finally:
        await producer.stop()


async def _read(settings: Settings) -> list[dict[str, Any]] | None:
    """Every digest on the audit topic; None when the topic does not exist."""
    from aiokafka import AIOKafkaConsumer

    topic = settings.topic(AUDIT_TOPIC)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False, request_timeout_ms=5000)
    await consumer.start()
    try:
        if topic not in await consumer.topics():
            return None
        consumer.subscribe([topic])
        found: list[dict[str, Any]] = []
        idle, deadline = 0, time.monotonic() + 15
        while idle < 3 and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            records = [r for rs in batch.values() for r in rs]
            idle = 0 if records else idle + 1
            for record in records:
                try:
                    found.append(json.loads(record.value))
                except (TypeError, ValueError):
                    continue  # not a digest: verify says what it checked, not what it skipped
        return found
    finally:
        await consumer.stop()


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


def command(args: argparse.Namespace, settings: Settings) -> int:
    names = [args.service] if args.service else list(SERVICE_NAMES)
    if args.action == "public-key":
        print(Signer.for_settings(settings).public_pem(), end="")
        return 0
    digests = Path(args.digests) if args.digests else None
    if args.action == "seal":
        return seal(settings, names, digests)
    return check(settings, names, digests, Path(args.public_key) if args.public_key else None)


def add_parser(commands: Any, defaults: dict[str, Any]) -> None:
    p = commands.add_parser("audit", help="the tamper-evident ledger: seal, verify, public-key",
                            description=__doc__.split("\n\n")[1] if __doc__ else None)
    p.add_argument("action", choices=["seal", "verify", "public-key"])
    p.add_argument("--service", choices=SERVICE_NAMES)
    p.add_argument("--digests", help="a file of digests, one JSON a line (seal appends, verify reads)")
    p.add_argument("--public-key", help="verify with this PEM public key, not the data directory's")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(**defaults)
