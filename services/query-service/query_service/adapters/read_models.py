"""Read-only access to the projections' stores."""

from datetime import date

import msgspec
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import NotFoundError as DocumentMissing
from redis.asyncio import Redis

from shop.projection.engine import Position, partition_suffix
from shop.read_models import AnalyticsKeys, analytics_checkpoint, analytics_pointer, projection_state_index

parked_decoder = msgspec.json.Decoder(dict[str, int])


class SearchDocuments:
    def __init__(self, client: AsyncOpenSearch, alias: str, prefix: str, projector: str, partitions: int) -> None:
        self._client, self._alias, self._projector, self._partitions = client, alias, projector, partitions
        self._state_index = projection_state_index(prefix)

    async def checkpoints(self) -> list[Position]:
        """The active generation's checkpoint of each partition; what it covers is searchable only after a
        refresh."""
        index = next(iter(await self._client.indices.get_alias(name=self._alias)))
        count = self._partitions
        ids = [index + partition_suffix(p, count) for p in range(count)]
        docs = (await self._client.mget(index=self._state_index, body={"ids": ids}, realtime=True))["docs"]
        found = [doc["_source"] if doc.get("found") else {} for doc in docs]
        return [
            Position(
                projector=self._projector, position=f.get("position", 0), parked=f.get("parked", {}), partitions=(p,)
            )
            for p, f in enumerate(found)
        ]

    async def refresh(self) -> None:
        await self._client.indices.refresh(index=self._alias)

    async def get(self, doc_id: str) -> dict | None:
        try:
            return (await self._client.get(index=self._alias, id=doc_id))["_source"]
        except DocumentMissing:
            return None

    async def search(self, body: dict) -> tuple[list[dict], int]:
        """(hits, total) of a search request."""
        found = await self._client.search(index=self._alias, body=body)
        return found["hits"]["hits"], found["hits"]["total"]["value"]

    async def ping(self) -> None:
        await self._client.cluster.health(index=self._alias)


class AnalyticsCounters:
    """Reads the active generation of the analytics read model (a rebuild switches it)."""

    def __init__(self, redis: Redis, base: str, projector: str, partitions: int) -> None:
        self._redis, self._pointer, self._projector = redis, analytics_pointer(base), projector
        self._partitions = partitions

    async def checkpoints(self) -> list[Position]:
        """The active generation's checkpoint of each partition."""
        count = self._partitions
        active = await self._redis.get(self._pointer)
        fields = [f"{name}{partition_suffix(p, count)}" for p in range(count) for name in ("position", "parked")]
        found = (
            await self._redis.hmget(analytics_checkpoint(active.decode()), fields) if active else [None] * len(fields)
        )
        return [
            Position(
                projector=self._projector,
                position=int(position or 0),
                searchable=int(position or 0),
                parked=parked_decoder.decode(parked) if parked else {},
                partitions=(p,),
            )
            for p, (position, parked) in enumerate(zip(found[::2], found[1::2], strict=True))
        ]

    async def generation(self) -> AnalyticsKeys:
        """The keys of the active generation: resolve once per query, so one answer reads one generation."""
        active = await self._redis.get(self._pointer)
        return AnalyticsKeys(active.decode() if active else f"{self._pointer}:none:")  # none yet: empty

    async def days(
        self, keys: AnalyticsKeys, date_from: date | None, date_to: date | None
    ) -> list[tuple[str, int, int]]:
        """(day, revenue, order count) for each day with orders in the range, oldest first."""
        low = date_from.toordinal() if date_from else "-inf"
        high = date_to.toordinal() if date_to else "+inf"
        days = [d.decode() for d in await self._redis.zrangebyscore(keys.days, low, high)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for day in days:
                pipe.hmget(keys.day(day), "revenue", "orders")
            counts = await pipe.execute()
        return [(day, int(revenue or 0), int(orders or 0)) for day, (revenue, orders) in zip(days, counts, strict=True)]

    async def top_products(self, keys: AnalyticsKeys, days: list[str] | None, top: int) -> list[tuple[str, str, int]]:
        """(product id, name, units sold) over the given days (all time if None), most sold first."""
        if days is None:
            ranked = await self._redis.zrevrangebyscore(keys.units, "+inf", 1, start=0, num=top, withscores=True)
        elif days:
            scored = await self._redis.zunion([keys.day_units(d) for d in days], withscores=True)
            ranked = sorted((p for p in scored if p[1] > 0), key=lambda pair: (-pair[1], pair[0]))[:top]
        else:
            ranked = []
        if not ranked:
            return []
        names = await self._redis.hmget(keys.product_names, [pid for pid, _ in ranked])
        return [
            (pid.decode(), (name or b"").decode(), int(units)) for (pid, units), name in zip(ranked, names, strict=True)
        ]

    async def popular(self, keys: AnalyticsKeys, limit: int) -> list[tuple[str, str, int, int]]:
        """(product id, name, price, units sold) of the best sellers, most sold first."""
        ranked = await self._redis.zrevrangebyscore(keys.units, "+inf", 1, start=0, num=limit, withscores=True)
        if not ranked:
            return []
        ids = [pid for pid, _ in ranked]
        names = await self._redis.hmget(keys.product_names, ids)
        prices = await self._redis.hmget(keys.prices, ids)
        return [
            (pid.decode(), (name or b"").decode(), int(price or 0), int(units))
            for (pid, units), name, price in zip(ranked, names, prices, strict=True)
        ]

    async def ratings(self, keys: AnalyticsKeys) -> dict[str, int]:
        """Number of reviews per rating, "1" to "5"."""
        counts = await self._redis.hgetall(keys.ratings)
        return {str(r): int(counts.get(str(r).encode(), 0)) for r in range(1, 6)}

    async def ping(self) -> None:
        await self._redis.ping()
