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
import json
import math
import time
from collections import deque

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

    Places pass first come, first served. A request that finds a place free takes it without
    waiting for anything; the others wait on a future of their own, and one timer, not one
    per request, refuses those whose time is up. At twice the capacity half the requests
    are refused, and ``asyncio.wait_for`` (a task, a timer and a cancellation each) with a
    rendered JSON response made refusing cost a sixth of the event loop's time.
    """

    def __init__(self, app: ASGIApp, limit: int, wait: float):
        self.app, self.limit, self.wait = app, limit, wait
        self.busy = 0
        #: (deadline, future) of the requests waiting, oldest first; a future's result says
        #: whether it got a place (handed over by the request that left it) or was refused.
        self.waiting: deque[tuple[float, asyncio.Future[bool]]] = deque()
        self._sweeper: asyncio.TimerHandle | None = None
        body = json.dumps({"detail": f"The service is at capacity ({limit} requests in progress); nothing was "
                                     "read or stored. Try again in 1 s.", "rule": "overloaded"}).encode()
        self._refusal = ({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1")]}, {"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").endswith("/health"):
            await self.app(scope, receive, send)
            return
        if self.busy < self.limit and not self.waiting:
            self.busy += 1
        elif not await self._place():
            start, body = self._refusal
            await send(start)
            await send(body)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self._leave()

    async def _place(self) -> bool:
        """Wait for a place: True once one is handed over, False when time is up first."""
        if self.wait <= 0:
            return False
        loop = asyncio.get_running_loop()
        placed: asyncio.Future[bool] = loop.create_future()
        self.waiting.append((loop.time() + self.wait, placed))
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.wait, self._sweep)
        try:
            return await placed
        except asyncio.CancelledError:
            if placed.done() and not placed.cancelled() and placed.result():
                self._leave()  # handed a place as it was cancelled: pass it on
            raise

    def _leave(self) -> None:
        """A request is done: its place goes to the oldest one waiting, else it is free."""
        while self.waiting:
            _, placed = self.waiting.popleft()
            if not placed.done():
                placed.set_result(True)
                return
        self.busy -= 1

    def _sweep(self) -> None:
        """Refuse every request that has waited its time; come back for the next one due."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self.waiting and (self.waiting[0][0] <= now or self.waiting[0][1].done()):
            _, placed = self.waiting.popleft()
            if not placed.done():
                placed.set_result(False)
        # Each request waits at most ``wait`` and at most a twentieth of it more.
        self._sweeper = (loop.call_at(max(self.waiting[0][0], now + self.wait / 20), self._sweep)
                         if self.waiting else None)


def caller_of(scope: Scope) -> str:
    """The authenticated principal (``shared.access``), else the client's address."""
    principal = scope.get("state", {}).get("principal")
    if principal is not None:
        return principal.key
    client = scope.get("client")
    return f"address|{client[0]}" if client else "unknown"
