"""What one benchmark run holds: its plan (full or quick), the clients of the running shop, the
bench users and products, the files the wrk scripts read, the progress display."""

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import msgspec
from nats.aio.client import Client as NATS
from opensearchpy import AsyncOpenSearch
from redis.asyncio import Redis
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from bench import system
from bench.shop import Addresses, SyncFollower, connect_nats, create_products, token, write_lines


class Plan(msgspec.Struct, kw_only=True):
    """Seconds per measurement and sizes; `quick()` is for trying a change (about a minute)."""

    connections: int = 32  # wrk connections, and commands in flight in the raw pipeline
    command_seconds: float = 30  # PlaceOrder at saturation, many products
    hot_seconds: float = 15  # PlaceOrder at saturation, one hot product
    raw_pipeline_seconds: float = 15
    lag_seconds: float = 15  # per offered load
    lag_fractions: tuple[float, ...] = (0.25, 0.5, 0.9)
    rebuild_limit: float = 60  # per projector
    probe_limit: float = 30  # per raw probe of the rebuild stage (bare consumer, _bulk, Redis)
    query_seconds: float = 6  # per query, per mode (saturation, fixed rate), through the gateway
    bare_seconds: float = 4  # per query, per mode, on the bare endpoint
    query_rate: float = 500
    catch_up_limit: float = 180  # waiting for the projections to pass the last event between stages
    stream_events: int = 200_000  # the stream the rebuilds replay
    scale_backlog_seconds: float = 30  # orders piled up for a stopped projector, per process count
    products: int = 200
    users: int = 500
    items: int = 2  # per order of the many-products runs

    @classmethod
    def quick(cls) -> "Plan":
        return cls(
            command_seconds=5,
            hot_seconds=3,
            raw_pipeline_seconds=3,
            lag_seconds=3,
            rebuild_limit=5,
            probe_limit=5,
            query_seconds=2,
            bare_seconds=1,
            catch_up_limit=60,
            stream_events=0,
            scale_backlog_seconds=3,
            products=50,
            users=100,
        )


class Bench:
    def __init__(self, plan: Plan, addresses: Addresses, progress: Progress, files: Path) -> None:
        self.plan, self.addresses, self.progress, self.files = plan, addresses, progress, files
        self.http = httpx.AsyncClient(base_url=addresses.gateway, timeout=30)
        self.admin = token(addresses.jwt_secret, "bench-admin", admin=True)
        self.tag = time.strftime("%H%M%S")
        self.user_tokens = [token(addresses.jwt_secret, f"bench-{self.tag}-user-{n}") for n in range(plan.users)]
        self.tokens_file = write_lines(files / "tokens.txt", self.user_tokens)
        self.opensearch = AsyncOpenSearch(hosts=[addresses.opensearch], timeout=60)
        self.redis = Redis.from_url(addresses.redis)
        self.nc: NATS
        self.sync: SyncFollower
        self.products: list[str] = []
        self.load_averages: dict[str, list[float]] = {}

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, plan: Plan, addresses: Addresses) -> AsyncIterator["Bench"]:
        columns = (TextColumn("{task.description:<44}"), BarColumn(), TimeElapsedColumn())
        with tempfile.TemporaryDirectory(prefix="bench-") as files, Progress(*columns) as progress:
            bench = cls(plan, addresses, progress, Path(files))
            bench.nc = await connect_nats(addresses.nats)
            try:
                async with SyncFollower(bench.http, bench.user_tokens[0]) as bench.sync:
                    yield bench
            finally:
                await bench.nc.close()
                await bench.http.aclose()
                await bench.opensearch.close()
                await bench.redis.aclose()

    async def make_products(self) -> None:
        """The run's products (many, and one hot) with stock enough for every order it places."""
        stock = 1_000_000_000
        self.products = await create_products(self.http, self.admin, f"r{self.tag}", self.plan.products, stock)
        write_lines(self.files / "products.txt", self.products)
        hot = await create_products(self.http, self.admin, f"hot{self.tag}", 1, stock)
        write_lines(self.files / "hot.txt", hot)

    def order_env(self, products: str, items: int, replies: Path | None = None) -> dict[str, str]:
        env = {"BENCH_TOKENS": str(self.tokens_file), "BENCH_PRODUCTS": str(self.files / products)}
        env |= {"BENCH_ITEMS": str(items)} | ({"BENCH_REPLIES": str(replies)} if replies else {})
        return env

    async def last_position(self) -> int:
        return (await self.nc.jetstream().stream_info("EVENTS")).state.last_seq

    async def catch_up(self) -> float:
        """Seconds until every projection has passed the stream's last event (so far)."""
        started, target = time.monotonic(), await self.last_position()
        if not await self.sync.caught_up(target, self.plan.catch_up_limit):
            raise RuntimeError(f"the projections did not reach {target} in {self.plan.catch_up_limit:.0f}s")
        return time.monotonic() - started

    @contextlib.asynccontextmanager
    async def stage(self, name: str, seconds: float) -> AsyncIterator[Callable[[str], None]]:
        """A progress bar that fills over the stage's planned seconds; yields a way to say what runs."""
        self.load_averages[name] = system.load_average()
        task = self.progress.add_task(name, total=seconds)
        started = time.monotonic()

        async def tick() -> None:
            while True:
                self.progress.update(task, completed=min(time.monotonic() - started, seconds * 0.99))
                await asyncio.sleep(0.5)

        ticker = asyncio.create_task(tick())
        try:
            yield lambda what: self.progress.update(task, description=f"{name}: {what}")
        finally:
            ticker.cancel()
            self.progress.update(task, description=name, completed=seconds)
