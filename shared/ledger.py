"""The audit ledger: a hash chain over each service's notification log, sealed by signed digests.

eventsourcing has no hash chain (its AES-GCM tags are per event: they do not
notice an event deleted or moved). So each service keeps one here, fed like the
relay from the notification log with its own position: link N covers link N-1
and the stored record at position N exactly as stored (position, aggregate id,
version, topic, state bytes). At intervals, and on demand, the chain head is
sealed into a digest (service, position, head, time) signed with an Ed25519 key
the data directory holds; digests are kept beside the chain and published to
``consultation.audit.v1``, so copies live outside the store.

``verify`` recomputes every chain from the store and reports, by service,
position and event id, what was altered, deleted, inserted or moved since it
was chained, and whether the sealed heads still match. Erasing a person destroys
only their key in the vault (``shared.vault``): no stored byte changes, so the
chain stays whole.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.application import ServiceApplication
from shared.config import Settings
from shared.envelope import event_id
from shared.follower import LogFollower
from shared.pseudonyms import local_key
from shared.stores import ViewStore

GENESIS = "0" * 64


def record_hash(position: int, originator_id: Any, version: int, topic: str, state: bytes) -> str:
    """A SHA-256 over one stored record exactly as stored."""
    digest = hashlib.sha256()
    for part in (str(position).encode(), str(originator_id).encode(), str(version).encode(), topic.encode(),
                 bytes(state)):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def link(previous: str, record: str) -> str:
    """The chain's next link: it covers the previous link and the record."""
    return hashlib.sha256(bytes.fromhex(previous) + bytes.fromhex(record)).hexdigest()


def _record(n: Any) -> str:
    return record_hash(n.id, n.originator_id, n.originator_version, n.topic, n.state)


# -- signing -----------------------------------------------------------------------------------

class Signer:
    """The Ed25519 key that signs digests, kept owner-only in the data directory."""

    def __init__(self, key: Ed25519PrivateKey):
        self.key = key

    @classmethod
    def for_settings(cls, settings: Settings) -> Signer:
        path = settings.audit_signing_key_file or settings.data_dir / "audit-signing.key"
        return cls(ed25519_key(path))

    def public_pem(self) -> str:
        return self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    def sign(self, digest: dict[str, Any]) -> dict[str, Any]:
        return {**digest, "signature": base64.b64encode(self.key.sign(_signed_bytes(digest))).decode()}


def ed25519_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 key in ``path`` (PEM), made owner-only on first use."""
    def make() -> str:
        return Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()).decode()

    key = serialization.load_pem_private_key(local_key(path, make), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _signed_bytes(digest: dict[str, Any]) -> bytes:
    return json.dumps({k: digest[k] for k in ("service", "position", "head", "time")},
                      sort_keys=True, separators=(",", ":")).encode()


def signature_valid(public_pem: str, digest: dict[str, Any]) -> bool:
    key = serialization.load_pem_public_key(public_pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    try:
        key.verify(base64.b64decode(digest["signature"]), _signed_bytes(digest))
    except (InvalidSignature, KeyError, ValueError):
        return False
    return True


# -- the chain beside a service's store ----------------------------------------------------------

class Ledger:
    """One service's chain, in its relay's store (operational records, not a projection)."""

    LINKS, HEAD, DIGESTS = "ledger_link", "ledger_head", "ledger_digest"

    def __init__(self, app: ServiceApplication, store: ViewStore):
        self.app = app
        self.store = store

    def head(self) -> tuple[int, str]:
        doc = self.store.get(self.HEAD, "head")
        return (doc["position"], doc["hash"]) if doc else (0, GENESIS)

    def extend(self, notifications: list[Any]) -> tuple[int, str]:
        """Chain these notifications (in log order) and store the links with the new head."""
        position, head = self.head()
        links = []
        for n in notifications:
            if n.id <= position:
                continue
            record = _record(n)
            head = link(head, record)
            position = n.id
            links.append({"position": n.id, "event_id": event_id(self.app.service, str(n.originator_id),
                                                                 n.originator_version),
                          "record": record, "hash": head})
        if links:
            with self.store.transaction() as txn:
                for doc in links:
                    txn.put(self.LINKS, f"{doc['position']:012d}", doc)
                txn.put(self.HEAD, "head", {"position": position, "hash": head})
        return position, head

    def catch_up(self, batch: int = 1000) -> tuple[int, str]:
        while notifications := self.app.notifications(self.head()[0], batch):
            self.extend(notifications)
        return self.head()

    def seal(self, signer: Signer) -> dict[str, Any]:
        """A signed digest of the chain as it stands, kept beside the chain."""
        position, head = self.catch_up()
        digest = signer.sign({"service": self.app.service, "position": position, "head": head,
                              "time": datetime.now(UTC).isoformat()})
        with self.store.transaction() as txn:
            txn.put(self.DIGESTS, f"{position:012d}", digest)
        return digest

    def digests(self) -> list[dict[str, Any]]:
        return self.store.list(self.DIGESTS)

    def links(self) -> dict[int, dict[str, Any]]:
        return {doc["position"]: doc for doc in self.store.list(self.LINKS)}


@dataclass
class Finding:
    service: str
    kind: str  # altered | deleted | inserted | moved | digest_mismatch | bad_signature
    position: int | None
    event_id: str | None
    detail: str

    def line(self) -> str:
        where = f"position {self.position}" if self.position is not None else "-"
        return f"{self.service}: {self.kind} at {where} (event {self.event_id or '-'}): {self.detail}"


@dataclass
class Report:
    service: str
    events: int = 0
    digests: int = 0
    #: Records stored after the chain's last link (a follower that has not caught up yet).
    unchained: int = 0
    findings: list[Finding] = field(default_factory=list)


def verify(ledger: Ledger, digests: list[dict[str, Any]], public_pem: str) -> Report:
    """Recompute the chain from the store; compare it with the stored links and the digests."""
    service = ledger.app.service
    report = Report(service)
    chained = ledger.links()
    chained_ids = {doc["event_id"] for doc in chained.values()}
    end = max(chained, default=0)
    head, heads = GENESIS, {0: GENESIS}
    seen: set[int] = set()
    after = 0
    while notifications := ledger.app.notifications(after, 1000):
        for n in notifications:
            record = _record(n)
            head = link(head, record)
            heads[n.id] = head
            seen.add(n.id)
            eid = event_id(service, str(n.originator_id), n.originator_version)
            known = chained.get(n.id)
            if known is None:
                if n.id < end:
                    report.findings.append(Finding(service, "inserted", n.id, eid,
                                                   "a record the chain never covered, among chained ones"))
                else:
                    report.unchained += 1  # stored after the chain was last extended
            elif known["event_id"] != eid:
                kind, why = ("moved", "an event chained at another position") if eid in chained_ids else (
                    "inserted", "an event the chain never covered")
                report.findings.append(Finding(service, kind, n.id, eid,
                                               f"{why}; the chain recorded event {known['event_id']} here"))
            elif known["record"] != record:
                report.findings.append(Finding(service, "altered", n.id, eid,
                                               "the stored record differs from the one chained"))
        report.events += len(notifications)
        after = notifications[-1].id
    for position in sorted(set(chained) - seen):
        report.findings.append(Finding(service, "deleted", position, chained[position]["event_id"],
                                       "a chained record is no longer in the store"))
    for digest in sorted(digests, key=lambda d: d.get("position", 0)):
        if digest.get("service") != service:
            continue
        report.digests += 1
        position = digest.get("position")
        if not signature_valid(public_pem, digest):
            report.findings.append(Finding(service, "bad_signature", position, None,
                                           "the digest's signature does not verify with the public key"))
        elif heads.get(position) != digest.get("head"):
            report.findings.append(Finding(service, "digest_mismatch", position, None,
                                           "the chain recomputed from the store does not reach the sealed head"))
    return report


# -- following the log -----------------------------------------------------------------------------

class LedgerFollower(LogFollower):
    """Chains each service's events as they are stored, and seals the head at intervals."""

    def __init__(self, app: ServiceApplication, settings: Settings, store: ViewStore,
                 publish: Any = None):
        super().__init__(app, settings, "ledger")
        self.ledger = Ledger(app, store)
        self.signer = Signer.for_settings(settings)
        self.publish = publish
        self._sealed_at = time.monotonic()
        self._sealed_position = self.ledger.head()[0]

    async def position(self) -> int:
        return (await asyncio.to_thread(self.ledger.head))[0]

    async def process(self, notifications: list[Any]) -> None:
        await asyncio.to_thread(self.ledger.extend, notifications)

    async def idle(self) -> None:
        if time.monotonic() - self._sealed_at < self.settings.audit_seal_interval:
            return
        self._sealed_at = time.monotonic()
        if self.ledger.head()[0] == self._sealed_position:
            return
        digest = await asyncio.to_thread(self.ledger.seal, self.signer)
        self._sealed_position = digest["position"]
        if self.publish is not None:
            await self.publish(digest)


def read_digests_file(path: Path) -> list[dict[str, Any]]:
    """Digests an auditor kept, one JSON object a line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
