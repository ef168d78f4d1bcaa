"""Proposals HTTP routes under ``/proposals``."""

from fastapi import APIRouter

from shared.http import ERROR_RESPONSES
from shared.service import Service


def routes(service: Service) -> APIRouter:
    return APIRouter(responses=ERROR_RESPONSES)
