"""The analytics read model in Redis. Its generations are key prefixes `<base>g<n>:`; the key
`<base>current` names the active one, so readers and the live projection switch in one step.

One Lua script resolves the generation, checks the aggregate's last applied version (an older one
is skipped, a gap is an error), runs the counter changes and records version and stream position:
all in one atomic step."""

import msgspec
from redis.asyncio import Redis

from projector_analytics.changes import analytics_changes
from shop.contracts.events import DomainEvent, Envelope
from shop.read_models import AnalyticsKeys, analytics_pointer

APPLY = """
local prefix = ARGV[5]
if prefix == '' then prefix = redis.call('GET', KEYS[1]) end
if not prefix then return redis.error_reply('no active analytics generation at ' .. KEYS[1]) end
local applied_key, position_key = prefix .. 'applied', prefix .. 'position'
local applied = tonumber(redis.call('HGET', applied_key, ARGV[1]) or '0')
local version = tonumber(ARGV[2])
if applied >= version then return 0 end
if applied ~= version - 1 then
  return redis.error_reply('out of order: ' .. ARGV[1] .. ' v' .. version .. ' came before v' .. (applied + 1))
end
local allowed = {HSET=true, HINCRBY=true, ZADD=true, ZINCRBY=true}
for _, change in ipairs(cjson.decode(ARGV[4])) do
  if not allowed[change[1]] then return redis.error_reply('command not allowed: ' .. change[1]) end
  change[2] = prefix .. change[2]
  redis.call(unpack(change))
end
redis.call('HSET', applied_key, ARGV[1], ARGV[2])
if tonumber(redis.call('GET', position_key) or '0') < tonumber(ARGV[3]) then
  redis.call('SET', position_key, ARGV[3])
end
return 1
"""
RELATIVE = AnalyticsKeys("")  # the script puts the generation's prefix in front


class AnalyticsProjection:
    """Writes into the generation `prefix`, or into the active one if `prefix` is empty."""

    def __init__(self, redis: Redis, base: str, prefix: str = "") -> None:
        self._pointer, self._prefix = analytics_pointer(base), prefix
        self._apply = redis.register_script(APPLY)

    async def apply(self, envelope: Envelope, event: DomainEvent, position: int) -> None:
        # also without changes, so that every version is recorded and a missing one is noticed
        changes = analytics_changes(RELATIVE, envelope, event)
        await self._apply(
            keys=[self._pointer],
            args=[envelope.stream_id, envelope.version, position, msgspec.json.encode(changes), self._prefix],
        )

    async def flush(self) -> None:
        """Every script call is visible once it returns."""


class AnalyticsReadModel:
    def __init__(self, redis: Redis, base: str) -> None:
        self._redis, self._base = redis, base
        self._pointer, self._counter = analytics_pointer(base), f"{base}generations"
        self.live = AnalyticsProjection(redis, base)
        self.checks = {"redis": redis.ping}

    async def ensure(self) -> None:
        """The first generation, unless there is one."""
        if await self._redis.set(self._pointer, f"{self._base}g1:", nx=True):
            await self._redis.set(self._counter, 1)

    async def new_generation(self) -> tuple[str, AnalyticsProjection]:
        prefix = f"{self._base}g{await self._redis.incr(self._counter)}:"
        return prefix, AnalyticsProjection(self._redis, self._base, prefix)

    async def activate(self, generation: str) -> str | None:
        previous = await self._redis.getset(self._pointer, generation)
        return previous.decode() if previous else None

    async def retire(self, generation: str) -> None:
        batch = []
        async for key in self._redis.scan_iter(match=f"{generation}*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                await self._redis.delete(*batch)
                batch.clear()
        if batch:
            await self._redis.delete(*batch)
