"""HTTP conventions of the contract: 201 with an id, 404, 409 with why, 422 naming field and rule."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from eventsourcing.persistence import RecordConflictError
from pydantic import BaseModel, ConfigDict

from shared.domain import NotFound, Refused


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
    422: {"model": Problem, "description": "Malformed request; names each field and rule"},
}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(tuple(e.get("loc", ()))), "rule": e.get("type"), "message": e.get("msg")}
            for e in exc.errors()
        ]
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

    @app.exception_handler(RecordConflictError)
    async def conflict(_: Request, exc: RecordConflictError) -> JSONResponse:
        # Two commands changed the same record at once; the other one won. Nothing of
        # this one was stored, so repeating it is safe.
        return JSONResponse(status_code=409, content={
            "detail": "The record was changed by another request at the same moment; "
                      "nothing was stored. Reload it and try again.",
            "rule": "concurrent_change",
        })
