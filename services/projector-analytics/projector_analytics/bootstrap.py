"""Composition root of projector-analytics."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from redis.asyncio import Redis

from projector_analytics.adapters.counters import AnalyticsProjection
from projector_analytics.settings import Settings
from shop.projection import projector_app
from shop.read_models import ANALYTICS, AnalyticsKeys


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def open_store() -> AsyncIterator[tuple[AnalyticsProjection, dict]]:
        redis = Redis.from_url(settings.redis_url, socket_timeout=5, health_check_interval=30)
        try:
            yield AnalyticsProjection(redis, AnalyticsKeys(settings.analytics_prefix)), {"redis": redis.ping}
        finally:
            await redis.aclose()

    return projector_app(ANALYTICS, settings, open_store)
