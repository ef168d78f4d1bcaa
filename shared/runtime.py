"""Assembling services into one ASGI application (one, or all four on one port)."""

from __future__ import annotations

import gc
import importlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from shared import access
from shared.clock import Clock
from shared.config import Settings
from shared.http import http_protocol, install_error_handlers
from shared.ratelimit import RateLimit, Shed
from shared.service import Service, ServiceSpec, settle_threads

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
            # All services halt, then the threads they used settle, then the stores close.
            for service in services.values():
                await service.halt()
            await settle_threads()
            for service in services.values():
                service.close()

    app = FastAPI(
        title="Public consultation (协商)",
        version="1",
        description="Topics, plans, sessions, proposals, opinions, feedback and traces.",
        lifespan=lifespan,
        # Swagger UI from the installed package, not a CDN: government networks are often closed.
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/docs-assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json", title=f"{app.title} — API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon-32x32.png",
        )
    app.state.services = services
    for service in services.values():
        app.router.routes.extend(service.routes())
    install_error_handlers(app, settings.max_body_bytes, settings.body_timeout)
    verifier = access.install(app, settings)
    # A caller over its budget is refused before its body is read; the budget is the
    # principal's, so the caller is named first (outermost), and 401 costs nothing more.
    app.add_middleware(RateLimit, writes=settings.rate_limit_writes, reads=settings.rate_limit_reads)
    app.add_middleware(access.Authenticate, verifier=verifier)
    # Outermost: past capacity, a request is refused (503) before anything is spent on it.
    app.add_middleware(Shed, limit=settings.max_in_flight, wait=settings.shed_after)
    return app


def tune_gc() -> None:
    """Set Python's cycle collector for a process that turns over many small objects.

    Every event relayed, applied or rebuilt makes and drops a few dicts and models. At
    Python's default (a young collection every 700 net allocations) a batch of 500 in
    flight set off hundreds of collections, and the full ones, walking every object the
    process holds, took a fifth of a rebuild (measured: bench/README.md). What exists at
    start-up (modules, the application, its models) lives as long as the process, so it
    is frozen out of every later collection; young collections wait for 20,000
    allocations, still a few megabytes. Reference counting frees everything else at once.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def serve(settings: Settings, names: Sequence[str], host: str, port: int) -> None:
    import uvicorn

    app = create_app(settings, names)
    tune_gc()
    # log_config=None: uvicorn's own lines go through the structured logs (shared.logs).
    uvicorn.run(app, host=host, port=port, log_level="warning", log_config=None,
                http=http_protocol(settings.head_timeout))


def openapi_of(name: str) -> dict:
    """One service's OpenAPI document, as ``consult docs`` publishes it.

    The routes are built by the running service, so it is assembled (on throwaway
    SQLite stores, never started) and taken down again.
    """
    import asyncio
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=tmp, store="sqlite")
        app = create_app(settings, [name])
        try:
            document = app.openapi()
        finally:
            for service in app.state.services.values():
                asyncio.run(service.stop())
    document["info"]["title"] = f"Public consultation (协商): {name}"
    return document
