"""The whole process of a projector: its read model, the consume loop, rebuilds, ops endpoints."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from litestar import Litestar

from shop import messaging
from shop.ops import Readiness, ops_app
from shop.projection import Projector
from shop.rebuild import ReadModel, Rebuild, rebuild_handlers
from shop.settings import CommonSettings

log = structlog.get_logger()


def projector_app(
    name: str, settings: CommonSettings, open_read_model: Callable[[], AbstractAsyncContextManager[ReadModel]]
) -> Litestar:
    """The whole process of a projector: its read model, the consume loop, rebuilds, ops endpoints,
    graceful stop."""
    readiness = Readiness()
    rebuilds: list[Rebuild] = []  # the one of this process, once it has started

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_read_model() as read_model:
            nc = await messaging.connect(settings.nats_url, f"projector-{name}")
            await messaging.ensure_streams(nc)
            projector = Projector(nc, name, read_model.live)
            await projector.start()
            rebuilds.append(Rebuild(nc, name, read_model))
            readiness.checks.update(
                read_model.checks, nats=lambda: nc.flush(timeout=1), consumer=projector.consumer_ready
            )
            log.info("started", projector=name, position=projector.position, port=settings.http_port)
            try:
                yield
            finally:
                readiness.checks.clear()
                await rebuilds.pop().stop()
                await projector.stop(settings.shutdown_timeout)
                await nc.drain()
                log.info("stopped", projector=name, position=projector.position)

    return ops_app(readiness, lifespan, rebuild_handlers(rebuilds))
