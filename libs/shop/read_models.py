"""Where each read model lives, shared by the projector that writes it and the query-service."""

import contextlib
import os
from pathlib import Path

import httpx
from redis.asyncio import Redis

from shop.settings import with_password

ORDER_LIST = "order-list"
ANALYTICS = "analytics"
CATALOG = "catalog"
PROJECTORS = (ORDER_LIST, ANALYTICS, CATALOG)
OPS_PORTS = {ORDER_LIST: 8003, ANALYTICS: 8004, CATALOG: 8005}


def ops_urls(projector: str) -> list[str]:
    """The ops addresses of a projector's processes, from their HTTP_PORT settings as deploy/services.sh
    passes them (replica n > 1 on PROJECTOR_<NAME>_HTTP_PORT_<n>, else 100 * (n - 1) above the first)."""
    var = f"PROJECTOR_{projector.upper().replace('-', '_')}"
    port = int(os.environ.get(f"{var}_HTTP_PORT", OPS_PORTS[projector]))
    replicas = int(os.environ.get(f"{var}_REPLICAS", "1"))
    ports = [port, *(int(os.environ.get(f"{var}_HTTP_PORT_{n}", port + 100 * (n - 1))) for n in range(2, replicas + 1))]
    return [f"http://127.0.0.1:{p}" for p in ports]


async def leader_url(projector: str) -> str:
    """The ops address of the process that projects partition 0 (and runs rebuilds); the first one's if none
    says so."""
    urls = ops_urls(projector)
    async with httpx.AsyncClient(timeout=5) as http:
        for url in urls:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if (await http.get(f"{url}/lease")).json().get("leader"):
                    return url
    return urls[0]


def ops_nats_url() -> str:
    """Where the operator's tools find NATS: NATS_URL, else what deploy/infra.sh gave the processes in the run
    folder's nats.env (every node of a cluster), else the single node's default."""
    if url := os.environ.get("NATS_URL"):
        return url
    try:
        lines = (Path(os.environ.get("RUN_DIR", ".run")) / "nats.env").read_text().splitlines()
    except OSError:
        lines = []
    found = [line.removeprefix("NATS_URL=") for line in lines if line.startswith("NATS_URL=")]
    return found[0] if found else "nats://127.0.0.1:4222"


def ops_secret(name: str) -> str:
    """A secret of the operator's tools (`ops-token`, `nats-ops`) from the run folder deploy/secrets.sh fills."""
    folder = Path(os.environ.get("SECRETS_DIR") or Path(os.environ.get("RUN_DIR", ".run")) / "secrets")
    try:
        return (folder / name).read_text().strip()
    except OSError as exc:
        raise SystemExit(f"cannot read the ops secret {folder / name} ({exc.strerror}): run ./justw up first") from exc


def ops_headers() -> dict[str, str]:
    """What the projectors' state-changing ops endpoints ask for."""
    return {"Authorization": f"Bearer {ops_secret('ops-token')}"}


def analytics_redis(url: str, password: str, user: str) -> Redis:
    """The analytics read model's Redis, as the ACL user `user` (deploy/infra.sh: projector-analytics writes,
    query-service reads)."""
    return Redis.from_url(with_password(url, password, user), socket_timeout=5, health_check_interval=30)


ORDERS_ALIAS = "orders"
PRODUCTS_ALIAS = "products"


def projection_state_index(prefix: str) -> str:
    """The OpenSearch index holding each document generation's checkpoint (one document per index)."""
    return f"{prefix}projections"


def analytics_checkpoint(generation: str) -> str:
    """The hash (position, parked) of one analytics generation's checkpoint."""
    return f"{generation}checkpoint"


def analytics_pointer(base: str) -> str:
    """The key naming the active generation (a key prefix) of the analytics read model."""
    return f"{base}current"


class AnalyticsKeys:
    """Redis keys of one generation of the analytics read model."""

    def __init__(self, prefix: str = "analytics:") -> None:
        self.prefix = prefix

    def day(self, day: str) -> str:  # hash: revenue, orders
        return f"{self.prefix}day:{day}"

    @property
    def days(self) -> str:  # sorted set: date -> ordinal
        return f"{self.prefix}days"

    @property
    def units(self) -> str:  # sorted set: product id -> units sold
        return f"{self.prefix}units"

    def day_units(self, day: str) -> str:  # sorted set: product id -> units sold that day
        return f"{self.prefix}units:{day}"

    @property
    def product_names(self) -> str:  # hash: product id -> name
        return f"{self.prefix}product_names"

    @property
    def prices(self) -> str:  # hash: product id -> current price
        return f"{self.prefix}prices"

    @property
    def ratings(self) -> str:  # hash: rating (1..5) -> number of reviews
        return f"{self.prefix}ratings"

    # also `applied` (hash: stream id -> last applied version), which only the projector's script
    # touches, and the checkpoint (analytics_checkpoint)
