"""Fixtures shared by the integration and end-to-end tests: the infrastructure that `just test`
started (deploy/infra.sh), addressed through the same variables the services read."""

import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client as NATS

from shop import messaging
from shop.settings import with_password

ROOT = Path(__file__).resolve().parents[1]
INFRA_SH = str(ROOT / "deploy" / "infra.sh")
# the stores' passwords, where deploy/infra.sh (run by `just test`) had deploy/secrets.sh write them
STORE_SECRETS = Path(os.environ.get("SECRETS_DIR") or Path(os.environ.get("RUN_DIR") or ROOT / ".run") / "secrets")


def store_password(name: str) -> str:
    """A password of deploy/secrets.sh (`redis-ops`, `postgres-command-service`...); "" before the first start."""
    path = STORE_SECRETS / name
    return path.read_text() if path.exists() else ""


POSTGRES = f"postgresql://127.0.0.1:{os.environ.get('PG_PORT', '5432')}"
ADMIN_DATABASE_URL = with_password(f"{POSTGRES}/shop", store_password("postgres-ops"), "shop_ops")  # creates databases
REDIS_ADDRESS = f"redis://127.0.0.1:{os.environ.get('REDIS_PORT', '6379')}/15"  # the tests' database, no user
REDIS_URL = with_password(REDIS_ADDRESS, store_password("redis-ops"), "ops")
OPENSEARCH_URL = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` free ports, all different: held together while they are picked (one at a time, the
    system may hand out the same port twice, and a NATS server was once given one port for both)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def wait_for_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def sigkill(pid: int) -> None:
    """SIGKILL, then wait until the process is gone (or a zombie its parent has not reaped)."""
    os.kill(pid, signal.SIGKILL)
    while Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text():
        time.sleep(0.01)


class NatsServer:
    """A NATS server with JetStream of the tests' own, started (and stopped) as the local run starts its
    own: deploy/infra.sh, with the users of deploy/nats/auth.conf and their passwords generated into this
    server's own run folder. It can be restarted on the same port with the same store. With `nodes=3`
    it is a JetStream cluster of three nodes (NATS_CLUSTER=3), and `url` lists them all."""

    def __init__(self, run_dir: Path, nodes: int = 1) -> None:
        self.run_dir, self.secrets, self.nodes = run_dir, run_dir / "secrets", nodes
        ports = free_ports(3 * nodes)  # clients, monitoring, routes
        self.ports, self.monitor_ports, self.route_ports = ports[:nodes], ports[nodes : 2 * nodes], ports[2 * nodes :]
        self.port, self.monitor_port = self.ports[0], self.monitor_ports[0]
        self.url = ",".join(f"nats://127.0.0.1:{port}" for port in self.ports)
        self.monitor_url = f"http://127.0.0.1:{self.monitor_port}"
        self.start()

    def _infra(self, action: str) -> None:
        env = {
            **os.environ,
            "RUN_DIR": str(self.run_dir),
            "SECRETS_DIR": str(self.secrets),
            "NATS_CLUSTER": str(self.nodes),
            "NATS_PORTS": ",".join(map(str, self.ports)),
            "NATS_MONITOR_PORTS": ",".join(map(str, self.monitor_ports)),
            "NATS_ROUTE_PORTS": ",".join(map(str, self.route_ports)),
        }
        done = subprocess.run([INFRA_SH, action, "nats"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def start(self) -> None:
        """Start what is not running (every node, or the one that was killed)."""
        self._infra("start")

    def stop(self) -> None:
        self._infra("stop")

    def kill(self, node: int) -> None:
        """SIGKILL one node of a cluster (from 1): it writes nothing more."""
        sigkill(int((self.run_dir / f"nats-{node}" / "nats.pid").read_text()))

    def password(self, user: str) -> str:
        return (self.secrets / f"nats-{user}").read_text()

    def secret(self, name: str) -> str:
        return (self.secrets / name).read_text()

    async def connect(self, user: str) -> NATS:
        """A connection as one of the users of deploy/nats/auth.conf (with its own inbox prefix)."""
        return await messaging.connect(self.url, user, self.password(user), deadline=10)


def gateway_settings(server: NatsServer, **settings):
    """The gateway's settings on `server`, as its user, with the actor key of that server's run folder."""
    from gateway.settings import Settings

    return Settings(
        nats_url=server.url,
        nats_password=server.password("gateway"),
        actor_key=server.secret("actor-key"),
        **settings,
    )


@pytest.fixture(scope="session")
def nats(tmp_path_factory) -> Iterator[NatsServer]:
    """The NATS server of the tests (the end-to-end system's services serve on it too)."""
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def quiet_nats(tmp_path_factory) -> Iterator[NatsServer]:
    """A NATS server on which no service listens."""
    server = NatsServer(tmp_path_factory.mktemp("quiet-nats"))
    yield server
    server.stop()


@asynccontextmanager
async def new_database() -> AsyncIterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards: its URL as the command-service's role `shop`, which
    may create the event store's tables there (the database itself is `shop_ops`'s)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(ADMIN_DATABASE_URL)
    await admin.execute(f"create database {name}")
    try:
        inside = await asyncpg.connect(database=name, dsn=ADMIN_DATABASE_URL)
        await inside.execute("grant create on schema public to shop")
        await inside.close()
        yield with_password(f"{POSTGRES}/{name}", store_password("postgres-command-service"), "shop")
    finally:
        await admin.execute(f"drop database if exists {name} with (force)")
        await admin.close()


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    async with new_database() as url:
        yield url
