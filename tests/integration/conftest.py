"""Fixtures of the command-service's adapter tests: a migrated pool on a new database, JetStream's publisher."""

import pytest

from command_service.adapters.database import create_pool, migrate
from command_service.adapters.relay import Publisher
from shop import messaging


@pytest.fixture
async def pool(database_url):
    pool = await create_pool(database_url, 40)
    await migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture
async def publisher(nats):
    nc = await nats.connect("command-service")
    await messaging.ensure_streams(nc)
    yield Publisher(nc)
    await nc.close()
