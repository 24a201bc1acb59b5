"""The analytics projection in Redis. One Lua script checks the aggregate's last applied version
(an older one is skipped, a gap is an error), runs the counter changes and records version and
stream position in one atomic step."""

import msgspec
from redis.asyncio import Redis

from projector_analytics.changes import analytics_changes
from shop.contracts.events import DomainEvent, Envelope
from shop.read_models import AnalyticsKeys

APPLY = """
local applied = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local version = tonumber(ARGV[2])
if applied >= version then return 0 end
if applied ~= version - 1 then
  return redis.error_reply('out of order: ' .. ARGV[1] .. ' v' .. version .. ' came before v' .. (applied + 1))
end
local allowed = {HSET=true, HINCRBY=true, ZADD=true, ZINCRBY=true}
for _, change in ipairs(cjson.decode(ARGV[4])) do
  if not allowed[change[1]] then return redis.error_reply('command not allowed: ' .. change[1]) end
  redis.call(unpack(change))
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if tonumber(redis.call('GET', KEYS[2]) or '0') < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end
return 1
"""


class AnalyticsProjection:
    def __init__(self, redis: Redis, keys: AnalyticsKeys) -> None:
        self._redis, self._keys = redis, keys
        self._apply = redis.register_script(APPLY)

    async def apply(self, envelope: Envelope, event: DomainEvent, position: int) -> None:
        # also without changes, so that every version is recorded and a missing one is noticed
        changes = analytics_changes(self._keys, envelope, event)
        await self._apply(
            keys=[self._keys.applied, self._keys.position],
            args=[envelope.stream_id, envelope.version, position, msgspec.json.encode(changes)],
        )

    async def flush(self) -> None:
        """Every script call is visible once it returns."""
