"""Composition root of the query-service."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from opensearchpy import AsyncOpenSearch

from query_service.adapters.positions import ProjectionPositions
from query_service.adapters.read_models import AnalyticsCounters, SearchDocuments
from query_service.handlers import QueryHandlers
from query_service.settings import Settings
from shop import messaging
from shop.ops import Readiness, ops_app
from shop.read_models import ANALYTICS, CATALOG, ORDER_LIST, ORDERS_ALIAS, PRODUCTS_ALIAS, analytics_redis

log = structlog.get_logger()


def create_app(settings: Settings) -> Litestar:
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        search = AsyncOpenSearch(hosts=[settings.opensearch_url], timeout=10)
        redis = analytics_redis(settings.redis_url, settings.redis_password, "query-service")
        nc = await messaging.connect(settings.nats_url, "query-service", settings.nats_password)
        try:
            await messaging.ensure_streams(nc, settings.nats_stream_replicas)
            prefix, partitions = settings.index_prefix, settings.projection_partitions
            orders = SearchDocuments(search, prefix + ORDERS_ALIAS, prefix, ORDER_LIST, partitions)
            products = SearchDocuments(search, prefix + PRODUCTS_ALIAS, prefix, CATALOG, partitions)
            analytics = AnalyticsCounters(redis, settings.analytics_prefix, ANALYTICS, partitions)
            positions = ProjectionPositions(
                nc,
                {ORDER_LIST: orders.checkpoints, CATALOG: products.checkpoints, ANALYTICS: analytics.checkpoints},
                {ORDER_LIST: orders.refresh, CATALOG: products.refresh},
                partitions,
            )
            await positions.start()
            handlers = QueryHandlers(orders, products, analytics, positions, settings.consistency_wait)
            responder = messaging.Responder(nc, settings.actor_key)
            await responder.serve("qry.>", "query-service", handlers.answer)
            readiness.checks.update(
                nats=lambda: nc.flush(timeout=1), orders=orders.ping, products=products.ping, redis=analytics.ping
            )
            log.info("started", port=settings.http_port)
            yield
            readiness.checks.clear()
            await responder.drain(settings.shutdown_timeout)
            await positions.stop()
        finally:
            await nc.drain()
            await search.close()
            await redis.aclose()
            log.info("stopped")

    return ops_app(readiness, lifespan)
