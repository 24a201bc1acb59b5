"""Fixtures shared by the integration and end-to-end tests: the infrastructure that `just test`
started (deploy/infra.sh), addressed through the same variables the services read."""

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import pytest

DATABASE_URL = os.environ.get("DATABASE_URL", "postgresql://shop:shop@127.0.0.1:5432/shop")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


@contextmanager
def nats_server(store: Path, monitor_port: int = 0) -> Iterator[str]:
    """A NATS server with JetStream in `store`, on a free port (and monitoring on `monitor_port`); its URL."""
    port = free_port()
    monitoring = ["-m", str(monitor_port)] if monitor_port else []
    server = subprocess.Popen(
        [
            shutil.which("nats-server") or "nats-server",
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
            "-js",
            "-sd",
            str(store),
            *monitoring,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, time.monotonic() + 20)
        yield f"nats://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory) -> Iterator[str]:
    """The NATS server of the tests (the end-to-end system's services serve on it too)."""
    with nats_server(tmp_path_factory.mktemp("jetstream")) as url:
        yield url


@pytest.fixture(scope="module")
def quiet_nats(tmp_path_factory) -> Iterator[tuple[str, str]]:
    """A NATS server on which no service listens: its URL and that of its monitoring endpoint."""
    monitor = free_port()
    with nats_server(tmp_path_factory.mktemp("quiet-jetstream"), monitor) as url:
        yield url, f"http://127.0.0.1:{monitor}"


@pytest.fixture(scope="module")
def quiet_nats_url(quiet_nats) -> str:
    return quiet_nats[0]


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
