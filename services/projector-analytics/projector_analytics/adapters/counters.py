"""The analytics read model in Redis. Its generations are key prefixes `<base>g<n>:`; the key
`<base>current` names the active one, so readers switch in one step.

A batch is one Lua script call: for each event it checks the aggregate's last applied version (an
older one is skipped, a gap is rejected and blocks that aggregate's later events) and runs the counter
changes, and, when nothing is rejected, moves the checkpoint (`<generation>checkpoint`: position and
parked aggregates), all in one atomic step; the checkpoint never moves back. A batch whose every
aggregate continues where it stopped (a replay, the live flow) goes as its merged changes instead,
a fraction of the commands; a batch that does not is refused whole and sent event by event. Redis runs with
`appendfsync always`, so a script's reply means its effect is on disk."""

from collections.abc import Sequence
from typing import NamedTuple

import msgspec
from redis.asyncio import Redis

from projector_analytics.changes import analytics_changes, merge
from shop.projection.engine import Checkpoint, Event
from shop.projection.lease import LeaseLost
from shop.projection.rebuild import RebuildState
from shop.read_models import AnalyticsKeys, analytics_checkpoint, analytics_pointer

# the checkpoint moves only forward; '' for no checkpoint. A batch whose fencing token (the writer's lease,
# '0' for none) is below the highest one seen changes nothing: a former owner writes nothing.
CHECKPOINT = """
local function fenced(key, token)
  if token == '0' then return false end
  local held = tonumber(redis.call('GET', key) or '0')
  if tonumber(token) < held then return true end
  if tonumber(token) > held then redis.call('SET', key, token) end
  return false
end
local function store_checkpoint(prefix, position, parked)
  local key = prefix .. 'checkpoint'
  if position ~= '' and tonumber(position) >= tonumber(redis.call('HGET', key, 'position') or '0') then
    redis.call('HSET', key, 'position', position, 'parked', parked)
  end
end
"""

APPLY = (
    CHECKPOINT
    + """
if fenced(ARGV[5], ARGV[6]) then return 'fenced' end
local prefix = ARGV[1]
local applied_key = prefix .. 'applied'
local rejected, blocked = {}, {}
for _, e in ipairs(cjson.decode(ARGV[2])) do
  local seq, aggregate, version = e[1], e[2], e[3]
  if blocked[aggregate] then
    rejected[#rejected + 1] = {seq, 'parked behind #' .. blocked[aggregate]}
  else
    local applied = tonumber(redis.call('HGET', applied_key, aggregate) or '0')
    if version == applied + 1 then
      for _, change in ipairs(e[4]) do
        change[2] = prefix .. change[2]
        redis.call(unpack(change))
      end
      redis.call('HSET', applied_key, aggregate, version)
    elseif version > applied then
      blocked[aggregate] = seq
      local why = 'out of order: ' .. aggregate .. ' v' .. version .. ' came before v' .. (applied + 1)
      rejected[#rejected + 1] = {seq, why}
    end
  end
end
if #rejected == 0 then
  store_checkpoint(prefix, ARGV[3], ARGV[4])
end
return cjson.encode(rejected)
"""
)

# The same batch with its changes merged (increments added up, the last value set) and its aggregates'
# versions checked and moved at once: far fewer commands. Refused (nothing written) unless every
# aggregate's first version in the batch is the next one: APPLY, event by event, decides then.
# ARGV: prefix, [[aggregate, first version, last version], ...], [command, ...], position, parked, fence
# key, token.
APPLY_MERGED = (
    CHECKPOINT
    + """
if fenced(ARGV[6], ARGV[7]) then return 'fenced' end
local prefix = ARGV[1]
local applied_key = prefix .. 'applied'
local aggregates, ids, versions = cjson.decode(ARGV[2]), {}, {}
for i, a in ipairs(aggregates) do
  ids[i] = a[1]
  versions[2 * i - 1], versions[2 * i] = a[1], a[3]
end
if #ids > 0 then
  local applied = redis.call('HMGET', applied_key, unpack(ids))
  for i, a in ipairs(aggregates) do
    if tonumber(applied[i] or '0') ~= a[2] - 1 then
      return 'event by event'
    end
  end
end
for _, change in ipairs(cjson.decode(ARGV[3])) do
  change[2] = prefix .. change[2]
  redis.call(unpack(change))
end
if #ids > 0 then
  redis.call('HSET', applied_key, unpack(versions))
end
store_checkpoint(prefix, ARGV[4], ARGV[5])
return '[]'
"""
)

# KEYS: pointer, generation counter. The first generation, unless there is an active one.
ENSURE = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local n = tonumber(redis.call('GET', KEYS[2]) or '0') + 1
  redis.call('SET', KEYS[2], n)
  redis.call('SET', KEYS[1], ARGV[1] .. 'g' .. n .. ':')
end
return redis.call('GET', KEYS[1])
"""

# A new generation's number: above the counter and above the active one, whatever was lost.
NEXT = """
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
local active = tonumber(string.match(redis.call('GET', KEYS[1]) or '', 'g(%d+):$') or '0')
if active > n then n = active end
redis.call('SET', KEYS[2], n + 1)
return ARGV[1] .. 'g' .. (n + 1) .. ':'
"""

RELATIVE = AnalyticsKeys("")  # the script puts the generation's prefix in front
parked_decoder = msgspec.json.Decoder(dict[str, int])


class Changes(NamedTuple):
    rejected: dict[int, str]  # by the projection's own code
    events: list  # [[seq, aggregate, version, [command, ...]], ...] for APPLY
    merged: tuple[bytes, bytes] | None  # the aggregates and the merged commands for APPLY_MERGED, if it may


class AnalyticsStore:
    """One generation (key prefix) of the analytics read model."""

    refreshes = False
    events = "evt.>"  # every event: its version is recorded, so that a missing one is noticed

    def __init__(self, redis: Redis, prefix: str, fence: str = "") -> None:
        self._redis, self.name = redis, prefix
        self._fence = fence or f"{prefix}fence"  # the key of the highest fencing token seen
        self._apply = redis.register_script(APPLY)
        self._apply_merged = redis.register_script(APPLY_MERGED)

    async def checkpoint(self) -> Checkpoint:
        position, parked = await self._redis.hmget(analytics_checkpoint(self.name), "position", "parked")
        return Checkpoint(position=int(position or 0), parked=parked_decoder.decode(parked) if parked else {})

    async def prepare(self, events: Sequence[Event]) -> Changes:
        batch, rejected, blocked, commands = [], {}, {}, []
        versions: dict[str, list] = {}  # aggregate -> [aggregate, first, last version in the batch]
        in_order = True
        for seq, envelope, event in events:
            aggregate, version = envelope.stream_id, envelope.version
            if aggregate in blocked:
                rejected[seq] = f"parked behind #{blocked[aggregate]}"
                continue
            try:  # also without changes, so that every version is recorded and a missing one is noticed
                changes = analytics_changes(RELATIVE, envelope, event)
            except Exception as exc:  # the projection's own code refuses it
                blocked[aggregate], rejected[seq] = seq, f"{type(exc).__name__}: {exc}"
                continue
            batch.append((seq, aggregate, version, changes))
            commands += changes
            span = versions.get(aggregate)
            if span is None:
                versions[aggregate] = [aggregate, version, version]
            else:
                in_order = in_order and version == span[2] + 1
                span[2] = version
        merged = None
        if batch and in_order and not rejected:
            merged = (msgspec.json.encode(list(versions.values())), msgspec.json.encode(merge(commands)))
        return Changes(rejected, batch, merged)

    async def send(self, prepared: Changes, checkpoint: Checkpoint | None, token: int = 0) -> dict[int, str]:
        rejected = dict(prepared.rejected)
        if rejected:
            checkpoint = None
        position = checkpoint.position if checkpoint else ""
        parked = msgspec.json.encode(checkpoint.parked if checkpoint else {})
        fence = [self._fence, token]
        if prepared.merged is not None:
            answer = _unless_fenced(
                await self._apply_merged(args=[self.name, *prepared.merged, position, parked, *fence])
            )
            if answer != b"event by event":
                return rejected
        if prepared.events or checkpoint:  # the checkpoint goes with the changes, in one step, when none is rejected
            args = [self.name, msgspec.json.encode(prepared.events), position, parked, *fence]
            answer = _unless_fenced(await self._apply(args=args))
            rejected.update({int(seq): why for seq, why in (msgspec.json.decode(answer) or [])})  # {}: empty
        return rejected

    async def commit(self, checkpoint: Checkpoint, token: int = 0) -> None:
        await self.send(Changes({}, [], None), checkpoint, token)  # no changes, only the checkpoint

    async def refresh(self) -> None:
        """Every script call is visible once it returns."""


def _unless_fenced(answer: bytes) -> bytes:
    if answer == b"fenced":
        raise LeaseLost("a newer owner of the analytics projection has written: this one may not")
    return answer


class AnalyticsReadModel:
    def __init__(self, redis: Redis, base: str) -> None:
        self._redis, self._base = redis, base
        self._keys = [analytics_pointer(base), f"{base}generations"]
        self._ensure, self._next = redis.register_script(ENSURE), redis.register_script(NEXT)
        self.checks = {"redis": redis.ping}

    async def active(self) -> AnalyticsStore:
        prefix = (await self._ensure(keys=self._keys, args=[self._base])).decode()
        return AnalyticsStore(self._redis, prefix, f"{self._base}fence")

    async def active_name(self) -> str:
        return (await self._redis.get(self._keys[0]) or b"").decode()

    async def next_generation(self) -> str:
        return (await self._next(keys=self._keys, args=[self._base])).decode()

    async def generation(self, name: str) -> AnalyticsStore:
        return AnalyticsStore(self._redis, name, f"{self._base}fence")

    async def prepare(self, store: AnalyticsStore) -> None:
        """Nothing to do: a Redis generation is ready as it is written."""

    async def activate(self, store: AnalyticsStore) -> None:
        await self._redis.set(self._keys[0], store.name)

    async def retire(self, name: str) -> None:
        if name == await self.active_name():
            raise RuntimeError(f"{name} is the active analytics generation: not deleted")
        batch = []
        async for key in self._redis.scan_iter(match=f"{name}*", count=1000):
            batch.append(key)
            if len(batch) == 1000:
                await self._redis.delete(*batch)
                batch.clear()
        if batch:
            await self._redis.delete(*batch)

    async def rebuild_state(self) -> RebuildState | None:
        found = await self._redis.get(f"{self._base}rebuild")
        return msgspec.json.decode(found, type=RebuildState) if found else None

    async def save_rebuild_state(self, state: RebuildState | None) -> None:
        if state is None:
            await self._redis.delete(f"{self._base}rebuild")
        else:
            await self._redis.set(f"{self._base}rebuild", msgspec.json.encode(state))
