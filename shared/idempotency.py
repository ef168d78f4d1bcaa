"""A request sent again (``Idempotency-Key``): what it created the first time is not created twice.

A department's system that posts a topic, an opinion or a proposal and loses the answer
(a timeout, a dropped connection, a 503 while the commit was in fact done) cannot tell
whether it was stored, and sends it again. With an ``Idempotency-Key`` header (IETF
draft-ietf-httpapi-idempotency-key-header) on a route that creates (201), each aggregate
the request creates gets an id derived from the request: the caller (issuer and subject of
the token), the method and path, the key, the body's SHA-256, and the aggregate's place
among those the request creates. Sent again, the command runs again, makes the same ids,
and its save finds the first one's events there: nothing more is stored, and the answer
is the first one's (the same ids), with ``Idempotent-Replayed: true``.

So the event store itself is the record of what was done, as for the e-government bus's
commands (``shared.inbound``): no table of keys to keep, expire or lose. The same key
with another body, on another path or from another caller is another request.
"""

from __future__ import annotations

import hashlib
import re
from contextvars import ContextVar
from uuid import UUID, uuid5

_NAMESPACE = UUID("5d0c6f3e-8a41-4f6b-9c2e-7b1a3e9d4c60")
#: The header's value: 1-255 visible ASCII characters (a UUID is what clients usually send).
KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_PATTERN)
HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"


def is_key(value: str) -> bool:
    return _KEY.fullmatch(value) is not None


class RequestIds:
    """The ids of the aggregates one request creates, in the order it creates them."""

    __slots__ = ("issued", "replayed", "scope")

    def __init__(self, caller: str, method: str, path: str, key: str, body: bytes):
        self.scope = "\n".join((caller, method, path, key, hashlib.sha256(body).hexdigest()))
        self.issued: list[UUID] = []
        #: Set when a save found this request's first attempt stored.
        self.replayed = False

    def next(self) -> UUID:
        made = self.peek()
        self.issued.append(made)
        return made

    def peek(self, place: int | None = None) -> UUID:
        """The id of the aggregate made ``place``-th (by default, the next one)."""
        return uuid5(_NAMESPACE, f"{self.scope}\n{len(self.issued) if place is None else place}")

    def release(self, ids: list[UUID]) -> None:
        """Give back the ids of a save that failed: the command's next try makes them again."""
        self.issued = [made for made in self.issued if made not in ids]


#: The request being served, when it came with a key (copied into the command's thread
#: by ``asyncio.to_thread``).
current: ContextVar[RequestIds | None] = ContextVar("idempotent_request", default=None)


def replayed() -> None:
    """Note that the request being served was found done already (answered as replayed)."""
    request = current.get()
    if request is not None:
        request.replayed = True
