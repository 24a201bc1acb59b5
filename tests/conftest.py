"""Fixtures shared by the integration and end-to-end tests: the infrastructure that `just test`
started (deploy/infra.sh), addressed through the same variables the services read."""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://shop:shop@127.0.0.1:5432/shop")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")


@asynccontextmanager
async def new_database() -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(DATABASE_URL)
    await admin.execute(f"create database {name}")
    try:
        yield DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with new_database() as url:
        yield url
