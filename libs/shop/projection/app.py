"""The whole process of a projector: its read model, the consume loop, rebuilds, dead letters, ops."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from litestar import Litestar

from shop import messaging
from shop.ops import Readiness, ops_app, ops_token_guard
from shop.projection.dlq import redrive_handler
from shop.projection.engine import Projector
from shop.projection.rebuild import ReadModel, Rebuild, rebuild_handlers
from shop.settings import ProjectorSettings

log = structlog.get_logger()


def projector_app(
    name: str, settings: ProjectorSettings, open_read_model: Callable[[], AbstractAsyncContextManager[ReadModel]]
) -> Litestar:
    """The whole process of a projector, with a graceful stop: the batch in hand is finished."""
    readiness = Readiness()
    rebuilds: list[Rebuild] = []  # the one of this process, once it has started
    projectors: list[Projector] = []

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_read_model() as read_model:
            nc = await messaging.connect(settings.nats_url, f"projector-{name}", settings.nats_password)
            await messaging.ensure_streams(nc, settings.nats_stream_replicas)
            projector = Projector(nc, name, await read_model.active(), refresh_interval=settings.refresh_interval)
            await projector.start()
            rebuild = Rebuild(nc, name, read_model, projector)
            projectors.append(projector)
            rebuilds.append(rebuild)
            readiness.checks.update(read_model.checks, nats=lambda: nc.flush(timeout=1), projection=projector.ready)
            await rebuild.resume()
            log.info("started", projector=name, position=projector.position, port=settings.http_port)
            try:
                yield
            finally:
                readiness.checks.clear()
                rebuilds.clear()
                projectors.clear()
                await rebuild.stop()
                await projector.stop(settings.shutdown_timeout)
                await nc.drain()
                log.info("stopped", projector=name, position=projector.position)

    guards = [ops_token_guard(settings.ops_token)]
    handlers = [*rebuild_handlers(rebuilds, guards), *redrive_handler(name, projectors, guards)]
    return ops_app(readiness, lifespan, handlers)
