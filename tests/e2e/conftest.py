"""The whole system as separate OS processes, isolated from a running `just up`: its own NATS
server (JetStream in a temp dir), its own PostgreSQL database, Redis db and OpenSearch index prefix,
started and stopped by the same deploy/services.sh that `just up` uses."""

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from opensearchpy import AsyncOpenSearch
from redis.asyncio import Redis

from tests.conftest import OPENSEARCH_URL, REDIS_URL, new_database

ROOT = Path(__file__).resolve().parents[2]
SERVICES = (
    "gateway",
    "command-service",
    "query-service",
    "projector-order-list",
    "projector-analytics",
    "projector-catalog",
)
JWT_SECRET = "e2e-secret-that-is-long-enough-for-hs256"


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


@dataclass(frozen=True)
class System:
    gateway: str
    ports: dict[str, int]
    nats_url: str

    def token(self, user_id: str, *roles: str) -> dict[str, str]:
        return {"Authorization": "Bearer " + jwt.encode({"sub": user_id, "roles": list(roles)}, JWT_SECRET, "HS256")}


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory) -> Iterator[str]:
    port, store = free_port(), tmp_path_factory.mktemp("jetstream")
    server = subprocess.Popen(
        [shutil.which("nats-server") or "nats-server", "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
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
async def system(nats_url, tmp_path_factory) -> AsyncIterator[System]:
    run_dir = tmp_path_factory.mktemp("run")
    ports = {name: free_port() for name in SERVICES}
    prefix = f"e2e-{uuid.uuid4().hex[:8]}-"
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    async with new_database() as database_url:
        env = {
            **os.environ,
            "RUN_DIR": str(run_dir),
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "OPENSEARCH_URL": OPENSEARCH_URL,
            "INDEX_PREFIX": prefix,
            "GATEWAY_JWT_SECRET": JWT_SECRET,
            "QUERY_SERVICE_CONSISTENCY_WAIT": "1.5",
            **{f"{name.upper().replace('-', '_')}_HTTP_PORT": str(port) for name, port in ports.items()},
        }
        script = [str(ROOT / "deploy" / "services.sh")]
        started = subprocess.run([*script, "start"], env=env, capture_output=True, text=True, timeout=180)
        try:
            assert started.returncode == 0, started.stdout + started.stderr
            yield System(gateway=f"http://127.0.0.1:{ports['gateway']}", ports=ports, nats_url=nats_url)
        finally:
            subprocess.run([*script, "stop"], env=env, capture_output=True, timeout=60)
            search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
            await search.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
            await search.close()
            await redis.flushdb()
            await redis.aclose()


@pytest.fixture
async def client(system) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:
        yield client
