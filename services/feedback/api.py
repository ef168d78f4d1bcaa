"""Feedback HTTP routes under ``/feedback``."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter

from shared.domain import NotFound
from shared.http import ERROR_RESPONSES
from shared.service import Service

from services.feedback.projections import trace


def routes(service: Service) -> APIRouter:
    r = APIRouter(responses=ERROR_RESPONSES)

    @r.get("/traces/{topic_id}", summary="Everything that happened to a topic, in order")
    async def get_trace(topic_id: str) -> dict[str, Any]:
        steps = await asyncio.to_thread(trace, service.views, topic_id)
        if steps is None:
            raise NotFound(f"No events are known for topic {topic_id}")
        return {"topic_id": topic_id, "steps": steps}

    return r
