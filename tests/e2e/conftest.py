"""The whole system as separate OS processes, isolated from a running `just up`: its own NATS
server (JetStream in a temp dir), its own PostgreSQL database and its own Redis key and OpenSearch index prefixes,
started and stopped by the same deploy/services.sh that `just up` uses."""

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from opensearchpy import AsyncOpenSearch
from redis.asyncio import Redis

from shop.ops import PROCESSES
from shop.read_models import PROJECTORS
from tests.conftest import (
    OPENSEARCH_URL,
    REDIS_ADDRESS,
    REDIS_URL,
    STORE_SECRETS,
    NatsServer,
    free_ports,
    new_database,
    sigkill,
)

ROOT = Path(__file__).resolve().parents[2]
JWT_SECRET = "e2e-secret-that-is-long-enough-for-hs256"


SERVICES_SH = str(ROOT / "deploy" / "services.sh")


@dataclass(frozen=True)
class System:
    gateway: str
    ports: dict[str, int]
    nats: NatsServer  # its users' passwords, the actor key and the ops token are in its run folder
    database_url: str
    index_prefix: str
    env: dict[str, str]  # what deploy/services.sh started the processes with

    def token(self, user_id: str, *roles: str) -> dict[str, str]:
        claims = {"sub": user_id, "roles": list(roles), "exp": int(time.time()) + 3600}
        return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, "HS256")}

    @property
    def ops_ports(self) -> dict[str, int]:
        """Where each process serves health and metrics: its port, but the gateway's own ops port."""
        return {**self.ports, "gateway": int(self.env["GATEWAY_OPS_PORT"])}

    @property
    def ops(self) -> dict[str, str]:
        """What the projectors' state-changing ops endpoints need."""
        return {"Authorization": f"Bearer {self.nats.secret('ops-token')}"}

    def pid(self, service: str) -> int:
        return int((Path(self.env["RUN_DIR"]) / "pids" / f"{service}.pid").read_text())

    def kill(self, service: str) -> None:
        """SIGKILL: the process gets no chance to finish anything."""
        sigkill(self.pid(service))

    def instances(self, service: str) -> dict[str, int]:
        """The processes of a service, by the name of their pid file (replica n > 1 is <service>-<n>), with
        their ports, as deploy/services.sh numbers them."""
        var = service.upper().replace("-", "_")
        first = self.ports[service]
        found = {service: first}
        for n in range(2, int(self.env.get(f"{var}_REPLICAS", "1")) + 1):
            found[f"{service}-{n}"] = int(self.env.get(f"{var}_HTTP_PORT_{n}", first + 100 * (n - 1)))
        return found

    async def projecting(self, projector: str, timeout: float = 15, among: set[str] | None = None) -> str:
        """The process of projector-<projector> (of `among`, if given) that says it leads (projects partition 0,
        runs rebuilds; with one partition: the one that projects), once one does."""
        deadline = time.monotonic() + timeout
        candidates = {k: v for k, v in self.instances(f"projector-{projector}").items() if among is None or k in among}
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                for instance, port in candidates.items():
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.get(f"http://127.0.0.1:{port}/lease")).json()["leader"]:
                            return instance
                assert time.monotonic() < deadline, f"none of {sorted(candidates)} projects after {timeout}s"
                await asyncio.sleep(0.05)

    async def owner_port(self, projector: str) -> int:
        return self.instances(f"projector-{projector}")[await self.projecting(projector)]

    async def caught_up(self, position: int, timeout: float = 30) -> None:
        """Until every projector's checkpoint has passed `position` (the lowest in the /metrics of its processes
        that project: each one's is the lowest of its partitions')."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                positions = {}
                for name in PROJECTORS:
                    line = f'shop_projection_position{{projector="{name}"}} '
                    found = []
                    for port in self.instances(f"projector-{name}").values():
                        with contextlib.suppress(httpx.HTTPError):
                            if not (await http.get(f"http://127.0.0.1:{port}/lease")).json()["projecting"]:
                                continue
                            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
                            found += [int(float(x.split()[-1])) for x in metrics.splitlines() if x.startswith(line)]
                    positions[name] = min(found, default=0)
                if all(positions.get(name, 0) >= position for name in PROJECTORS):
                    return
                assert time.monotonic() < deadline, f"not at {position} after {timeout}s: {positions}"
                await asyncio.sleep(0.05)

    def start(self) -> None:
        """Start whatever is not running and wait until every process is ready."""
        started = subprocess.run([SERVICES_SH, "start"], env=self.env, capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, started.stdout + started.stderr


@asynccontextmanager
async def running_system(run_dir: Path, nats: NatsServer, **settings: str) -> AsyncIterator[System]:
    """The six processes against their own database, key and index prefixes; `settings` override the
    environment they are started with (e.g. OPENSEARCH_URL through a proxy)."""
    *picked, ops_port = free_ports(len(PROCESSES) + 1)
    ports = dict(zip(PROCESSES, picked, strict=True))
    prefix = f"e2e-{uuid.uuid4().hex[:8]}-"
    redis = Redis.from_url(REDIS_URL)
    async with new_database() as database_url:
        env = {
            **os.environ,
            "RUN_DIR": str(run_dir),
            "NATS_URL": nats.url,
            "SECRETS_DIR": str(nats.secrets),
            "DATABASE_URL": database_url,  # with the password of the command-service's role
            "REDIS_URL": REDIS_ADDRESS,  # each as its own ACL user, with the password of the tests' Redis:
            "QUERY_SERVICE_REDIS_PASSWORD_FILE": str(STORE_SECRETS / "redis-query-service"),
            "PROJECTOR_ANALYTICS_REDIS_PASSWORD_FILE": str(STORE_SECRETS / "redis-projector-analytics"),
            "OPENSEARCH_URL": OPENSEARCH_URL,
            "INDEX_PREFIX": prefix,
            "ANALYTICS_PREFIX": f"analytics:{prefix}",  # (the ACL users' keys are analytics:*)
            "GATEWAY_JWT_SECRET": JWT_SECRET,
            "QUERY_SERVICE_CONSISTENCY_WAIT": "1.5",
            **{f"{name.upper().replace('-', '_')}_HTTP_PORT": str(port) for name, port in ports.items()},
            "GATEWAY_OPS_PORT": str(ops_port),
            **settings,
        }
        system = System(
            gateway=f"http://127.0.0.1:{ports['gateway']}",
            ports=ports,
            nats=nats,
            database_url=database_url,
            index_prefix=prefix,
            env=env,
        )
        try:
            system.start()
            yield system
        finally:
            subprocess.run([SERVICES_SH, "stop"], env=env, capture_output=True, timeout=60)
            search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
            await search.indices.delete(index=f"{prefix}*", ignore_unavailable=True)
            await search.close()
            async for key in redis.scan_iter(match=f"analytics:{prefix}*"):
                await redis.delete(key)
            await redis.aclose()


@pytest.fixture(scope="session")
async def system(nats, tmp_path_factory) -> AsyncIterator[System]:
    async with running_system(tmp_path_factory.mktemp("run"), nats) as system:
        yield system


@pytest.fixture
async def client(system) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:
        yield client
