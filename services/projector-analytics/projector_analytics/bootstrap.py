"""Composition root of projector-analytics."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar

from projector_analytics.adapters.counters import AnalyticsReadModel
from projector_analytics.settings import Settings
from shop.projection.app import projector_app
from shop.read_models import ANALYTICS, analytics_redis


def create_app(settings: Settings) -> Litestar:
    @asynccontextmanager
    async def open_read_model() -> AsyncIterator[AnalyticsReadModel]:
        redis = analytics_redis(settings.redis_url, settings.redis_password, "projector-analytics")
        try:
            yield AnalyticsReadModel(redis, settings.analytics_prefix)
        finally:
            await redis.aclose()

    return projector_app(ANALYTICS, settings, open_read_model)
