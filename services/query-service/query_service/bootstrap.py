"""Composition root of the query-service."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from redis.asyncio import Redis

from query_service.adapters.positions import ProjectionPositions
from query_service.adapters.read_models import AnalyticsCounters, SearchDocuments
from query_service.handlers import QueryHandlers
from query_service.settings import Settings
from shop import messaging
from shop.ops import Readiness, ops_app
from shop.read_models import ORDERS_ALIAS, PRODUCTS_ALIAS
from shop.search_index import open_client

log = structlog.get_logger()


def create_app(settings: Settings) -> Litestar:
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        search = open_client(settings.opensearch_url)
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, health_check_interval=30)
        nc = await messaging.connect(settings.nats_url, "query-service")
        try:
            await messaging.ensure_streams(nc)
            positions = ProjectionPositions(nc)
            await positions.start()
            orders = SearchDocuments(search, settings.index_prefix + ORDERS_ALIAS)
            products = SearchDocuments(search, settings.index_prefix + PRODUCTS_ALIAS)
            analytics = AnalyticsCounters(redis, settings.analytics_prefix)
            handlers = QueryHandlers(orders, products, analytics, positions, settings.consistency_wait)
            responder = messaging.Responder(nc)
            await responder.serve("qry.>", "query-service", handlers.answer)
            readiness.checks.update(
                nats=lambda: nc.flush(timeout=1), orders=orders.ping, products=products.ping, redis=analytics.ping
            )
            log.info("started", port=settings.http_port)
            yield
            readiness.checks.clear()
            await responder.drain(settings.shutdown_timeout)
        finally:
            await nc.drain()
            await search.close()
            await redis.aclose()
            log.info("stopped")

    return ops_app(readiness, lifespan)
