"""The analytics read model in Redis. Its generations are key prefixes `<base>g<n>:`; the key
`<base>current` names the active one, so readers switch in one step.

A batch is one Lua script call: for each event it checks the aggregate's last applied version (an
older one is skipped, a gap is rejected and blocks that aggregate's later events) and runs the counter
changes, and, when nothing is rejected, moves the checkpoint (`<generation>checkpoint`: position and
parked aggregates, fields `position#<p>/<P>` and `parked#<p>/<P>` for partition p of P > 1), all in one
atomic step; the checkpoint never moves back. A batch whose every
aggregate continues where it stopped (a replay, the live flow) goes as its merged changes instead,
a fraction of the commands; a batch that does not is refused whole and sent event by event. Redis runs with
`appendfsync always`, so a script's reply means its effect is on disk."""

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import msgspec
from redis.asyncio import Redis

from projector_analytics.changes import READS, analytics_changes, merge
from shop.projection.engine import WHOLE, Checkpoint, Event, Scope, partition_suffix, resolve_checkpoints
from shop.projection.lease import LeaseLost
from shop.projection.rebuild import RebuildState
from shop.read_models import AnalyticsKeys, analytics_checkpoint, analytics_pointer

# Each partition's checkpoint ([[field suffix, position, parked as JSON], ...]) moves only forward. A batch
# with a fencing token ([[key, token], ...]: the writer's lease of each partition) below the highest one seen
# for that partition changes nothing: a former owner writes nothing.
CHECKPOINT = """
local function fenced(fences)
  fences = cjson.decode(fences)
  for _, f in ipairs(fences) do
    if f[2] < tonumber(redis.call('GET', f[1]) or '0') then return true end
  end
  for _, f in ipairs(fences) do
    redis.call('SET', f[1], string.format('%d', f[2]))
  end
  return false
end
local function store_checkpoint(prefix, checkpoints)
  local key = prefix .. 'checkpoint'
  for _, c in ipairs(cjson.decode(checkpoints)) do
    local position = string.format('%d', c[2])
    if c[2] >= tonumber(redis.call('HGET', key, 'position' .. c[1]) or '0') then
      redis.call('HSET', key, 'position' .. c[1], position, 'parked' .. c[1], c[3])
    end
  end
end
"""

APPLY = (
    CHECKPOINT
    + """
if fenced(ARGV[4]) then return 'fenced' end
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
  store_checkpoint(prefix, ARGV[3])
end
return cjson.encode(rejected)
"""
)

# The same batch with its changes merged (increments added up, the last value set) and its aggregates'
# versions checked and moved at once: far fewer commands. Refused (nothing written) unless every
# aggregate's first version in the batch is the next one: APPLY, event by event, decides then.
# ARGV: prefix, [[aggregate, first version, last version], ...], [command, ...], checkpoints, fences.
APPLY_MERGED = (
    CHECKPOINT
    + """
if fenced(ARGV[5]) then return 'fenced' end
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
store_checkpoint(prefix, ARGV[4])
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
    reads = READS

    def __init__(self, redis: Redis, prefix: str, fence: str = "") -> None:
        self._redis, self.name = redis, prefix
        self._fence = fence or f"{prefix}fence"  # the key of the highest fencing token seen (of each partition)
        self._apply = redis.register_script(APPLY)
        self._apply_merged = redis.register_script(APPLY_MERGED)

    async def checkpoints(self, count: int, partitions: Iterable[int]) -> dict[int, Checkpoint]:
        fields = await self._redis.hgetall(analytics_checkpoint(self.name))  # of every partitioning
        stored = {
            name.decode().removeprefix("position"): Checkpoint(
                position=int(value),
                parked=parked_decoder.decode(fields.get(b"parked" + name.removeprefix(b"position"), b"{}")),
            )
            for name, value in fields.items()
            if name.startswith(b"position")
        }
        return resolve_checkpoints(stored, count, partitions)

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
                changes = analytics_changes(RELATIVE, envelope, event)  # none for an event left undecoded
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

    async def send(self, prepared: Changes, checkpoint: Checkpoint | None, scope: Scope = WHOLE) -> dict[int, str]:
        rejected = dict(prepared.rejected)
        if rejected:
            checkpoint = None
        checkpoints = msgspec.json.encode(
            [
                (partition_suffix(p, scope.count), part.position, msgspec.json.encode(part.parked).decode())
                for p, part in (scope.split(checkpoint).items() if checkpoint else ())
            ]
        )
        fences = msgspec.json.encode(
            [(self._fence + partition_suffix(p, scope.count), token) for p, token in scope.tokens.items() if token]
        )
        if prepared.merged is not None:
            answer = _unless_fenced(await self._apply_merged(args=[self.name, *prepared.merged, checkpoints, fences]))
            if answer != b"event by event":
                return rejected
        if prepared.events or checkpoint:  # the checkpoint goes with the changes, in one step, when none is rejected
            args = [self.name, msgspec.json.encode(prepared.events), checkpoints, fences]
            answer = _unless_fenced(await self._apply(args=args))
            rejected.update({int(seq): why for seq, why in (msgspec.json.decode(answer) or [])})  # {}: empty
        return rejected

    async def commit(self, checkpoint: Checkpoint, scope: Scope = WHOLE) -> None:
        await self.send(Changes({}, [], None), checkpoint, scope)  # no changes, only the checkpoint

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
