"""Composition root of the command-service."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar

from command_service.adapters.database import create_pool, migrate
from command_service.adapters.event_store import EventStore
from command_service.adapters.relay import OutboxRelay, Publisher
from command_service.entrypoints import command_responder
from command_service.handlers import CommandHandlers
from command_service.settings import Settings
from shop import messaging
from shop.ops import Readiness, ops_app
from shop.settings import with_password

log = structlog.get_logger()


async def forget_expired_replies(store: EventStore, ttl: float) -> None:
    """Expired keys are already ignored on lookup; this keeps the table small."""
    while True:
        try:
            if forgotten := await store.forget_expired_replies(ttl):
                log.info("idempotency_keys_expired", count=forgotten)
        except Exception as exc:
            log.warning("idempotency_cleanup_failed", error=str(exc))
        await asyncio.sleep(min(ttl, 3600.0))


def create_app(settings: Settings) -> Litestar:
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        database_url = with_password(settings.database_url, settings.database_password)
        pool = await create_pool(database_url, settings.database_pool_size)
        await migrate(pool)
        nc = await messaging.connect(settings.nats_url, "command-service", settings.nats_password)
        await messaging.ensure_streams(nc, settings.nats_stream_replicas, mend=True)
        store = EventStore(pool)
        relay = OutboxRelay(pool, Publisher(nc), settings.relay_interval, listen_url=database_url)
        relay.start()
        responder = messaging.Responder(nc, settings.actor_key)
        await responder.serve(
            "cmd.>",
            "command-service",
            command_responder(
                CommandHandlers(
                    store,
                    relay,
                    settings.publish_wait,
                    settings.idempotency_ttl,
                    settings.snapshot_every,
                    settings.conflict_attempts,
                    settings.request_timeout,
                )
            ),
        )
        readiness.checks.update(postgres=store.ping, nats=lambda: nc.flush(timeout=1), outbox=relay.check_outbox_age)
        forgetting = asyncio.create_task(forget_expired_replies(store, settings.idempotency_ttl))
        log.info("started", port=settings.http_port)
        try:
            yield
        finally:
            readiness.checks.clear()
            forgetting.cancel()
            await responder.drain(settings.shutdown_timeout)  # stop taking commands, finish in-flight ones
            await relay.stop()  # publishes what is left in the outbox
            await nc.drain()
            await pool.close()
            log.info("stopped")

    return ops_app(readiness, lifespan)
