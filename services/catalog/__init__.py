"""Catalog: consultation topics (议题) and annual plans (年度协商计划 / 政府协商事项目录)."""

from shared.service import ServiceSpec

from services.catalog.api import routes
from services.catalog.application import CatalogApplication
from services.catalog.messaging import KAFKA_PROJECTIONS, REACTIONS, INBOUND
from services.catalog.projections import CatalogViews

SPEC = ServiceSpec(
    name="catalog",
    application=CatalogApplication,
    routes=routes,
    own_projections=(CatalogViews,),
    kafka_projections=KAFKA_PROJECTIONS,
    reactions=REACTIONS,
    inbound=INBOUND,
)
