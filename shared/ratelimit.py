"""Rate limits per caller, and load shedding: 429 or 503 with ``Retry-After`` rather than a
queue that times out.

Each caller has a budget of commands (POST) and of reads (GET) over a moving window,
counted with the ``limits`` library. The caller is the principal its token names
(``shared.access``); for the open routes (public views), the client's address
(``X-Forwarded-For`` is not trusted: behind a proxy, set the proxy to pass the real
address to uvicorn with ``--forwarded-allow-ips``). Health checks are
never limited. Counts are kept per process: with several nodes behind a balancer, each
node grants the budget, so divide it by the number of nodes.
"""

from __future__ import annotations

import asyncio
import math
import time

from fastapi.responses import JSONResponse
from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Receive, Scope, Send

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class RateLimit:
    """ASGI middleware: refuses a caller's request beyond its budget with 429 and Retry-After."""

    def __init__(self, app: ASGIApp, writes: str, reads: str):
        self.app = app
        # "50/second", "1000 per minute": the ``limits`` notation (Settings checked it).
        self.writes, self.reads = parse(writes), parse(reads)
        self.limiter = MovingWindowRateLimiter(MemoryStorage())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").endswith("/health"):
            await self.app(scope, receive, send)
            return
        caller = caller_of(scope)
        limit = self.writes if scope.get("method") in _WRITES else self.reads
        if self.limiter.hit(limit, caller):
            await self.app(scope, receive, send)
            return
        reset = self.limiter.get_window_stats(limit, caller).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        kind = "commands" if limit is self.writes else "reads"
        refusal = JSONResponse(status_code=429, headers={"Retry-After": str(retry)}, content={
            "detail": f"Too many {kind} from this caller: at most {limit.amount} per "
                      f"{limit.multiples} {limit.GRANULARITY.name}. Try again in {retry} s.",
            "rule": "rate_limited"})
        await refusal(scope, receive, send)


class Shed:
    """ASGI middleware: at most ``limit`` requests in progress in this process; one more waits
    up to ``wait`` seconds for a place, then gets 503 with ``Retry-After`` at once.

    Under load a queue that grows without bound turns every request into a timeout; a
    prompt 503 tells a client (or the e-government bus) to come back, and what is in
    progress finishes in its normal time. Nothing of a refused request was read or stored.
    """

    def __init__(self, app: ASGIApp, limit: int, wait: float):
        self.app, self.wait = app, wait
        self.places = asyncio.Semaphore(limit)
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").endswith("/health"):
            await self.app(scope, receive, send)
            return
        try:
            await asyncio.wait_for(self.places.acquire(), self.wait)
        except TimeoutError:
            refusal = JSONResponse(status_code=503, headers={"Retry-After": "1"}, content={
                "detail": f"The service is at capacity ({self.limit} requests in progress); nothing was "
                          "read or stored. Try again in 1 s.", "rule": "overloaded"})
            await refusal(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.places.release()


def caller_of(scope: Scope) -> str:
    """The authenticated principal (``shared.access``), else the client's address."""
    principal = scope.get("state", {}).get("principal")
    if principal is not None:
        return principal.key
    client = scope.get("client")
    return f"address|{client[0]}" if client else "unknown"
