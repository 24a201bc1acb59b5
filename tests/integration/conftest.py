"""Fixtures of the command-service's adapter tests: a migrated pool on a new database, JetStream."""

import pytest

from command_service.adapters.database import create_pool, migrate
from shop import messaging


@pytest.fixture
async def pool(database_url):
    pool = await create_pool(database_url, 40)
    await migrate(pool)
    yield pool
    await pool.close()


@pytest.fixture
async def js(nats):
    nc = await nats.connect("command-service")
    await messaging.ensure_streams(nc)
    yield nc.jetstream()
    await nc.close()
