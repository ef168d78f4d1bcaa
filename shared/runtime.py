"""Assembling services into one ASGI application (one, or all four on one port)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI

from shared.clock import Clock
from shared.config import Settings
from shared.http import install_error_handlers
from shared.service import Service, ServiceSpec

SERVICE_NAMES = ("catalog", "sessions", "proposals", "feedback")


def spec(name: str) -> ServiceSpec:
    if name not in SERVICE_NAMES:
        raise ValueError(f"unknown service {name!r}; choose from {', '.join(SERVICE_NAMES)}")
    return importlib.import_module(f"services.{name}").SPEC


def create_app(
    settings: Settings, names: Sequence[str] = SERVICE_NAMES, clock: Clock | None = None
) -> FastAPI:
    """Opens the stores now; connects to the broker when the app starts.

    ``clock`` decides what "today" is for deadlines (tests and drills move it).
    """
    services = {name: Service(spec(name), settings, clock) for name in names}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for service in services.values():
            await service.start()
        try:
            yield
        finally:
            for service in services.values():
                await service.stop()

    app = FastAPI(
        title="Public consultation (协商)",
        version="1",
        description="Topics, plans, sessions, proposals, opinions, feedback and traces.",
        lifespan=lifespan,
    )
    app.state.services = services
    for service in services.values():
        app.include_router(service.router())
    install_error_handlers(app)
    return app


def serve(settings: Settings, names: Sequence[str], host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings, names), host=host, port=port, log_level="warning")
