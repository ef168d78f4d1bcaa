"""HTTP conventions of the contract: 201 with an id, 404, 409 with why, 422 naming field and rule.

Every error, including the framework's own (unknown route, wrong method, a body
too large or not UTF-8), answers in one shape: ``{"detail", "rule", "errors"?}``.
"""

from __future__ import annotations

import asyncio
import unicodedata
from typing import Any
from urllib.parse import unquote

import orjson
from fastapi import Depends, FastAPI, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from eventsourcing.persistence import InterfaceError, OperationalError, RecordConflictError
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from shared import idempotency
from shared.domain import EventTooLarge, NotFound, Refused


class Command(BaseModel):
    """Base of every request body: unknown fields are a mistake worth reporting."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Created(BaseModel):
    id: str


class Problem(BaseModel):
    """An error body: ``detail`` for people, ``rule`` and ``errors`` for programs."""

    detail: str
    rule: str | None = None
    errors: list[dict[str, Any]] | None = None


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "Unknown id"},
    409: {"model": Problem, "description": "Not allowed in the current state; says why"},
    408: {"model": Problem, "description": "The request body did not arrive in time (rule body_timeout)"},
    413: {"model": Problem, "description": "Request body larger than the service accepts"},
    422: {"model": Problem, "description": "Malformed request; names each field and rule"},
    429: {"model": Problem, "description": "Too many requests from this caller (rule rate_limited)",
          "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}},
    503: {"model": Problem, "description": "At capacity: load shed before anything was read (rule overloaded); "
                                           "or the store cannot serve requests now, a full disk say "
                                           "(rule store_unavailable)",
          "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}}},
}

#: Seconds a caller is asked to wait when the store could not serve its request.
STORE_RETRY_AFTER = 5

#: Every route's error answers, with those of access (``shared.access``): a bad token is
#: refused (401) on any route, a role or body that may not act (403) on protected ones.
ACCESS_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    401: {"model": Problem, "description": "No valid bearer token (rule unauthenticated)",
          "headers": {"WWW-Authenticate": {"description": "Bearer challenge", "schema": {"type": "string"}}}},
    403: {"model": Problem, "description": "Not for this caller: its role (role_not_allowed), a body field "
                                           "naming another actor (acting_for_another), a record not its own "
                                           "(not_yours) or a confidential one (confidential)"},
}

#: What the framework's own refusals mean, in the contract's terms.
_HTTP_RULES = {404: "not_found", 405: "method_not_allowed", 408: "body_timeout", 413: "body_too_large",
               415: "unsupported_media_type"}


def field_error(e: dict[str, Any]) -> dict[str, Any]:
    """One pydantic error as the contract names it: field, rule, message."""
    if e.get("type") == "json_invalid":
        # FastAPI puts the character position where the field would be.
        position = e.get("loc", ("body", "?"))[-1]
        reason = (e.get("ctx") or {}).get("error", "invalid JSON")
        return {"field": "body", "rule": "json_invalid",
                "message": f"not valid JSON ({reason} at character {position})"}
    return {"field": _field(tuple(e.get("loc", ()))), "rule": e.get("type"), "message": e.get("msg")}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def _problem(status: int, detail: str, rule: str, field: str | None = None) -> JSONResponse:
    content: dict[str, Any] = {"detail": detail, "rule": rule}
    if field is not None:
        content["errors"] = [{"field": field, "rule": rule, "message": detail}]
    return JSONResponse(status_code=status, content=content)


async def idempotency_key(request: Request, key: str | None = Header(
        None, alias=idempotency.HEADER, json_schema_extra={"pattern": idempotency.KEY_PATTERN},
        description="Optional: a key of the client's own (a UUID, say) for this request. Sent again "
                    "with the same key and body by the same caller, the request creates nothing more "
                    "and is answered with what the first one created (header Idempotent-Replayed).")) -> None:
    """A creating route's request with an ``Idempotency-Key``: the ids it makes derive from it
    (``shared.idempotency``). Runs after the route's access check, which names the caller."""
    if key is None:
        return
    if not idempotency.is_key(key):
        raise RequestValidationError([{
            "type": "idempotency_key", "loc": ("header", idempotency.HEADER), "input": key[:300],
            "msg": "an Idempotency-Key is 1 to 255 visible ASCII characters: letters, digits and "
                   "punctuation, no spaces (a UUID, say)"}])
    principal = request.scope.get("state", {}).get("principal")
    ids = idempotency.RequestIds(principal.key if principal is not None else "", request.method,
                                 request.url.path, key, await request.body())
    idempotency.current.set(ids)
    request.scope.setdefault("state", {})["idempotency"] = ids


#: ``dependencies=[*allow(...), IDEMPOTENT]`` on a route that creates: it takes an
#: ``Idempotency-Key`` (after the access check, which names the caller).
IDEMPOTENT = Depends(idempotency_key)


class IdempotentRoute(APIRoute):
    """A route that says so (``Idempotent-Replayed: true``) when it answered a request sent
    again, whose first attempt had done the work (``shared.idempotency``)."""

    def get_route_handler(self) -> Any:
        handle = super().get_route_handler()

        async def handled(request: Request) -> Response:
            response: Response = await handle(request)
            ids = request.scope.get("state", {}).get("idempotency")
            if ids is not None and ids.replayed:
                response.headers[idempotency.REPLAYED] = "true"
            return response

        return handled


class RequestGuard:
    """Refuses, before any route runs, what no route should see.

    - A path with NUL or another control character names nothing here (404):
      without this, such a path reaches the stores, and PostgreSQL refuses NUL
      in text with an error that would surface as a 500.
    - A query with control characters is malformed (422).
    - A body larger than ``max_body`` bytes is refused (413), whether its size is
      announced or it is streamed.
    - A body that takes longer than ``body_timeout`` seconds to arrive is refused (408),
      and the connection closed: trickled a byte at a time, it would hold one of the
      places ``shared.ratelimit.Shed`` grants for as long as the client liked.
    """

    def __init__(self, app: ASGIApp, max_body: int, body_timeout: float = 30.0):
        self.app = app
        self.max_body = max_body
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = unquote(scope.get("query_string", b"").decode("latin-1"))
        if _has_control(scope.get("path", "")):
            refusal = _problem(404, "No resource has a name with control characters.", "not_found")
        elif _has_control(query):
            refusal = _problem(422, "query: must not contain control characters", "control_character", "query")
        elif int(dict(scope.get("headers", ())).get(b"content-length", b"0") or 0) > self.max_body:
            refusal = _too_large(self.max_body)
        else:
            await self.app(scope, self._counting(receive), send)
            return
        await refusal(scope, receive, send)

    def _counting(self, receive: Receive) -> Receive:
        seen = 0
        deadline: float | None = None  # set at the first read; None again once the body is whole
        whole = False

        async def counted() -> Any:
            nonlocal seen, deadline, whole
            if whole:  # after the body, only a disconnect can come: no deadline for that
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.body_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, f"The request body did not arrive within {self.body_timeout:g} s; "
                                         "nothing was read or stored.", headers={"Connection": "close"}) from None
            whole = message.get("type") != "http.request" or not message.get("more_body", False)
            seen += len(message.get("body", b""))
            if seen > self.max_body:
                raise HTTPException(413)
            return message

        return counted


def _too_large(limit: int) -> JSONResponse:
    return _problem(413, f"The request body is larger than the {limit:,} bytes this service accepts.",
                    "body_too_large", "body")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in text)


#: The answer to bytes that are not an HTTP/1.1 request (uvicorn's parser refuses them before
#: any route runs): the contract's error shape instead of uvicorn's plain text.
_MALFORMED = orjson.dumps({
    "detail": "The request is not valid HTTP/1.1: its request line, a header or its framing "
              "(Content-Length, Transfer-Encoding) could not be read. Nothing was done.",
    "rule": "malformed_http",
    "errors": [{"field": "request", "rule": "malformed_http", "message": "not valid HTTP/1.1"}]})


class _Corked:
    """A connection's transport whose writes in one turn of the event loop leave in one send.

    uvicorn writes an answer's head and its body separately, each a system call that, on
    the loopback, also wakes the client: under load the two were a twelfth of the serving
    thread's time. Written at the end of the turn, they go together; nothing waits longer
    than the turn. Closing sends what is held first; aborting drops it, as it drops the
    transport's own buffer.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport):
        self._transport, self._loop = transport, asyncio.get_running_loop()
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._send)
        else:
            self._held.append(data)

    def _send(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def write_eof(self) -> None:
        self._send()
        self._transport.write_eof()

    def close(self) -> None:
        self._send()
        self._transport.close()

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:  # everything else is the transport's own
        return getattr(self._transport, name)


#: The answer to a request whose head (request line and headers) did not arrive in time.
_HEAD_TOO_SLOW = orjson.dumps({
    "detail": "The request's line and headers did not arrive in time; the connection is closed. "
              "Nothing was done.",
    "rule": "head_timeout",
    "errors": [{"field": "request", "rule": "head_timeout", "message": "headers not received in time"}]})


def http_protocol(head_timeout: float = 10.0) -> Any:
    """uvicorn's HTTP protocol for this service: httptools, answering a request it cannot
    parse (``Content-Length: abc``, a bare LF, a space in a header name) with 400 in the
    contract's error shape and closing the connection, as uvicorn does; an answer's head and
    body in one send (``_Corked``); a connection whose request head has not arrived within
    ``head_timeout`` seconds closed, with 408 if part of it came.

    uvicorn times out only a connection idle between requests. One opened and left silent,
    or sent its headers a byte at a time, stayed open for good: a few thousand of them
    (slowloris) used up the process's file descriptors, and no one else got in.
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # no httptools on this platform: uvicorn's own choice and answer
        return "auto"

    class ProblemHttpToolsProtocol(HttpToolsProtocol):
        _head_timer: asyncio.TimerHandle | None = None
        _head_begun = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(_Corked(transport))  # type: ignore[arg-type]
            self._await_head()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_begun = True
            if self._head_timer is None:  # the next request on a kept-alive connection
                self._await_head()

        def on_headers_complete(self) -> None:
            self._head_arrived()
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._head_arrived()
            super().connection_lost(exc)

        def _await_head(self) -> None:
            self._head_timer = self.loop.call_later(head_timeout, self._head_too_slow)

        def _head_arrived(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
            self._head_timer, self._head_begun = None, False

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                self._await_head()  # a pipelined head behind an answer still being made: after it
                return
            if self._head_begun:
                self._answer(b"408 Request Timeout", _HEAD_TOO_SLOW)
            else:
                self.transport.close()  # nothing was asked: nothing to answer

        def send_400_response(self, msg: str) -> None:
            self._answer(b"400 Bad Request", _MALFORMED)

        def _answer(self, status: bytes, body: bytes) -> None:
            """An error in the contract's shape, then the connection closed."""
            head = [b"HTTP/1.1 " + status + b"\r\n"]
            head += [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
            head += [b"content-type: application/json\r\n",
                     b"content-length: " + str(len(body)).encode() + b"\r\n",
                     b"connection: close\r\n\r\n"]
            self.transport.write(b"".join(head) + body)
            self.transport.close()

    return ProblemHttpToolsProtocol


def install_error_handlers(app: FastAPI, max_body: int, body_timeout: float = 30.0) -> None:
    app.add_middleware(RequestGuard, max_body=max_body, body_timeout=body_timeout)

    @app.exception_handler(HTTPException)
    async def framework(_: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:
            # FastAPI answers 400 for a body it cannot decode (not UTF-8, say);
            # the contract says 422 for any malformed request.
            return _problem(422, "body: must be JSON text in UTF-8", "json_invalid", "body")
        if exc.status_code == 413:
            return _too_large(max_body)
        rule = _HTTP_RULES.get(exc.status_code, "http_error")
        detail = {404: "No such resource."}
        return JSONResponse(
            status_code=exc.status_code,
            content={"detail": detail.get(exc.status_code, str(exc.detail)), "rule": rule},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(EventTooLarge)
    async def too_large(_: Request, exc: EventTooLarge) -> JSONResponse:
        return _problem(422, str(exc), "event_too_large", "body")

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [field_error(e) for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return JSONResponse(
            status_code=422,
            content={"detail": detail, "rule": errors[0]["rule"] if errors else None, "errors": errors},
        )

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": exc.message, "rule": exc.rule})

    @app.exception_handler(NotFound)
    async def not_found(_: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc), "rule": "not_found"})

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def store_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # The database cannot serve now (a full disk, a connection lost, a lock held past its
        # timeout): the request was not wrong, so not 500. A failed save is rolled back,
        # so nothing of it was stored. The service remembers it for health.
        text = str(exc).strip()
        reason = text.splitlines()[0] if text else type(exc).__name__
        service = getattr(request.app.state, "services", {}).get(request.url.path.split("/")[1])
        if service is not None:
            service.refusals.note(reason, f"{request.method} {request.url.path}")
        return JSONResponse(status_code=503, headers={"Retry-After": str(STORE_RETRY_AFTER)}, content={
            "detail": f"The store cannot serve requests at the moment ({reason}); nothing was stored. "
                      f"Try again in {STORE_RETRY_AFTER} s.",
            "rule": "store_unavailable"})

    @app.exception_handler(RecordConflictError)
    async def conflict(_: Request, exc: RecordConflictError) -> JSONResponse:
        # Two commands changed the same record at once; the other one won. Nothing of
        # this one was stored, so repeating it is safe.
        return JSONResponse(status_code=409, content={
            "detail": "The record was changed by another request at the same moment; "
                      "nothing was stored. Reload it and try again.",
            "rule": "concurrent_change",
        })
