"""The running shop as the benchmark sees it: its public addresses, bench users and products
created through the API, the files the wrk scripts read, and `/v1/sync` followed over SSE."""

import asyncio
import bisect
import os
import time
from pathlib import Path

import httpx
import jwt
import msgspec
from nats.aio.client import Client as NATS

from shop import messaging
from shop.read_models import ops_secret
from shop.settings import with_password

PROJECTIONS = ("catalog", "order-list", "analytics")
PROJECTOR_PORTS = {"order-list": 8003, "analytics": 8004, "catalog": 8005}
WORDS = ("aurora", "nimbus", "quartz", "ember", "tundra", "zephyr", "cobalt", "saffron")
KINDS = ("phone", "case", "charger", "cable", "headset")
CATEGORIES = 5


class Addresses(msgspec.Struct, kw_only=True):
    gateway: str = os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000")
    nats: str = os.environ.get("NATS_URL", "nats://127.0.0.1:4222")
    # as the command-service's role (the raw pipeline writes as it does) and Redis's ops user
    database: str = msgspec.field(
        default_factory=lambda: with_password(
            os.environ.get("DATABASE_URL", "postgresql://shop@127.0.0.1:5432/shop"),
            ops_secret("postgres-command-service"),
        )
    )
    redis: str = msgspec.field(
        default_factory=lambda: with_password(
            os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"), ops_secret("redis-ops"), "ops"
        )
    )
    opensearch: str = os.environ.get("OPENSEARCH_URL", "http://127.0.0.1:9200")
    jwt_secret: str = msgspec.field(
        default_factory=lambda: os.environ.get("GATEWAY_JWT_SECRET") or ops_secret("jwt-secret")
    )

    def projector(self, name: str) -> str:
        variable = f"PROJECTOR_{name.upper().replace('-', '_')}_HTTP_PORT"
        return f"http://127.0.0.1:{os.environ.get(variable, PROJECTOR_PORTS[name])}"


def token(secret: str, user_id: str, admin: bool = False) -> str:
    claims = {"sub": user_id, "roles": ["admin"] if admin else [], "exp": int(time.time()) + 24 * 3600}
    return jwt.encode(claims, secret, "HS256")


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


async def create_products(http: httpx.AsyncClient, admin: str, tag: str, count: int, stock: int) -> list[str]:
    """`count` products named from a few words (so that searches find some) in CATEGORIES categories."""
    headers = {"Authorization": f"Bearer {admin}"}
    limit = asyncio.Semaphore(8)

    async def one(n: int) -> str:
        body = {
            "name": f"{WORDS[n % len(WORDS)].title()} {KINDS[n % len(KINDS)]} {tag}-{n}",
            "description": f"A {KINDS[n % len(KINDS)]} for the benchmark, number {n} of {tag}",
            "price": 1000 + 37 * n,
            "stock": stock,
            "category": f"bench-{n % CATEGORIES}",
            "seller_id": "bench-seller",
            "image_urls": [f"https://img.example/{tag}/{n}.jpg"],
        }
        async with limit:
            reply = await http.post("/v1/admin/products", json=body, headers=headers)
        return reply.raise_for_status().json()["id"]

    return list(await asyncio.gather(*(one(n) for n in range(count))))


async def connect_nats(url: str) -> NATS:
    return await messaging.connect(url, "ops", ops_secret("nats-ops"), deadline=10)


async def stream_last_seq(nc: NATS) -> int:
    return (await nc.jetstream().stream_info("EVENTS")).state.last_seq


class SyncFollower:
    """Follows GET /v1/sync and keeps, per projection, every announced (position, arrival time on
    time.monotonic), so that the moment a position became visible can be looked up afterwards."""

    def __init__(self, http: httpx.AsyncClient, user_token: str) -> None:
        self._http, self._headers = http, {"Authorization": f"Bearer {user_token}"}
        self.positions: dict[str, list[int]] = {p: [] for p in PROJECTIONS}
        self.times: dict[str, list[float]] = {p: [] for p in PROJECTIONS}
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> "SyncFollower":
        self._task = asyncio.create_task(self._follow())
        await self.caught_up(0, timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()

    async def _follow(self) -> None:
        async with self._http.stream("GET", "/v1/sync", headers=self._headers, timeout=None) as stream:
            rest = b""
            async for chunk in stream.aiter_bytes():
                *lines, rest = (rest + chunk).split(b"\n")
                for line in lines:
                    if line.startswith(b"data:"):
                        self._announced(line.removeprefix(b"data:").strip())

    def _announced(self, data: bytes) -> None:
        if not data:  # the keep-alive comment comes with an empty `data:` line (Litestar's encoding)
            return
        announced = msgspec.json.decode(data)
        name = announced["projector"]
        if name in self.positions:
            self.positions[name].append(announced["position"])
            self.times[name].append(time.monotonic())
            self._changed.set()

    def position(self, projection: str) -> int:
        return self.positions[projection][-1] if self.positions[projection] else -1

    async def caught_up(self, position: int, timeout: float) -> bool:
        """Until every projection has announced `position` or more; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while min(self.position(p) for p in PROJECTIONS) < position:
            if self._task is not None and self._task.done():
                self._task.result()  # the stream broke: say why
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
        return True

    def visible_at(self, projection: str, position: int) -> float | None:
        """When `projection` first announced `position` or later (announcements only grow)."""
        index = bisect.bisect_left(self.positions[projection], position)
        return self.times[projection][index] if index < len(self.times[projection]) else None
