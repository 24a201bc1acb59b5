"""The consume loop every projector runs (DESIGN §5.2, §5.5, §5.8).

- **Checkpoint in the read model's own store.** A projection resumes from its store's checkpoint
  in strict stream order: its consumer is (re)created at checkpoint + 1 with no acks, and any break
  in the consumer sequence, a lost or deleted consumer, a NATS restart or a failed batch makes it
  start again from the checkpoint. It never depends on the order of JetStream redeliveries.
- **Two kinds of failure.** Whatever raises while a batch is written (a store or the bus down,
  timing out, answering 429/5xx) is transient: the batch is tried again with capped backoff for as
  long as it takes, and readiness names the failure. An event that cannot be decoded or that the
  projection rejects is poison: it goes to the DLQ and its aggregate is parked, so that aggregate's
  later events follow it into the DLQ at once while every other aggregate flows on.
- **Truthful positions.** The checkpoint (and the announced position) moves to N only once every
  event up to N is applied or dead-lettered, and dead letters are published before it moves.
- **Partitions.** With `P` partitions (PROJECTION_PARTITIONS), an aggregate's events belong to partition
  `crc32(id) % P`, and each partition has its checkpoint in the store. A process reads the whole stream
  and applies the events of the partitions it owns (shop.projection.lease); every batch moves each owned
  partition's checkpoint to the batch's end, so a partition's position is as truthful as the whole one.
"""

import asyncio
import contextlib
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import NamedTuple, Protocol

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from shop.contracts.events import DomainEvent, Envelope, decode_data, envelope_decoder
from shop.messaging import API_TIMEOUT, EVENTS_STREAM
from shop.metrics import (
    EVENTS_DEAD_LETTERED,
    EVENTS_HANDLED,
    PROJECTION_FENCED,
    PROJECTION_LAG,
    PROJECTION_POSITION,
    PROJECTION_RETRIES,
    PROJECTION_WRITES,
)
from shop.projection.lease import LeaseLost
from shop.projection.pull import Delivery, Pull

log = structlog.get_logger()


class Checkpoint(msgspec.Struct, kw_only=True):
    position: int = 0  # every event up to this stream sequence is applied or dead-lettered
    parked: dict[str, int] = {}  # aggregate (stream id) -> stream sequence of its first dead letter


def partition(aggregate: str, count: int) -> int:
    """The partition, of `count`, that an aggregate's events belong to."""
    return zlib.crc32(aggregate.encode()) % count if count > 1 else 0


def partition_suffix(p: int, count: int) -> str:
    """What names partition `p` of `count` in a store's checkpoint keys (nothing for the only one)."""
    return "" if count == 1 else f"#{p}/{count}"


class Scope(NamedTuple):
    """The partitions of `count` a write covers, with the fencing token of each (0: none)."""

    count: int
    tokens: dict[int, int]

    def split(self, checkpoint: Checkpoint) -> dict[int, Checkpoint]:
        """Each covered partition's checkpoint: the position, and the parked aggregates that are its."""
        if self.count == 1:
            return {0: checkpoint}
        parked: dict[int, dict[str, int]] = {p: {} for p in self.tokens}
        for aggregate, seq in checkpoint.parked.items():
            parked.setdefault(partition(aggregate, self.count), {})[aggregate] = seq
        return {p: Checkpoint(position=checkpoint.position, parked=parked[p]) for p in self.tokens}


WHOLE = Scope(1, {0: 0})  # one partition, no fencing


def resolve_checkpoints(stored: dict[str, Checkpoint], count: int, partitions: Iterable[int]) -> dict[int, Checkpoint]:
    """Each of `partitions`' checkpoint, from what a generation has stored under each partition suffix (of
    any count). One without its own (P was changed) starts from the most advanced other partitioning that
    is complete, at its lowest position: every aggregate is applied up to there."""
    by_count: dict[int, dict[int, Checkpoint]] = {}
    for suffix, checkpoint in stored.items():
        p, of = (0, 1) if not suffix else (int(n) for n in suffix.removeprefix("#").split("/"))
        by_count.setdefault(of, {})[p] = checkpoint
    starts = [
        Checkpoint(
            position=min(c.position for c in parts.values()),
            parked={a: seq for c in parts.values() for a, seq in c.parked.items()},
        )
        for of, parts in by_count.items()
        if of != count and len(parts) == of
    ]
    start = max(starts, key=lambda c: c.position, default=Checkpoint())
    own = by_count.get(count, {})
    return {p: own.get(p) or Scope(count, {p: 0}).split(start)[p] for p in partitions}


def decoded(data: bytes, reads: frozenset[str] | None) -> tuple[Envelope, DomainEvent | None]:
    """The envelope, and its event unless it is of a type the store does not read (`Store.reads`)."""
    envelope = envelope_decoder.decode(data)
    return envelope, decode_data(envelope) if reads is None or envelope.type in reads else None


class Event(NamedTuple):
    seq: int  # stream sequence
    envelope: Envelope
    event: DomainEvent | None  # None: of a type the store does not read (Store.reads), left undecoded


class Prepared(Protocol):
    rejected: dict[int, str]  # {stream sequence: why} of the events the projection's own code refuses


class Store(Protocol):
    """One generation of a read model, written by one projector at a time."""

    name: str  # the generation: an index name, a key prefix
    refreshes: bool  # writes become searchable only after refresh()
    events: str  # the subjects of the events it reads (`evt.order.>`): the others pass undecoded
    reads: frozenset[str] | None  # the event types whose data it reads (None: every one); the others' stays undecoded

    async def checkpoints(self, count: int, partitions: Iterable[int]) -> dict[int, Checkpoint]:
        """The stored checkpoint of each of `partitions` (of `count`)."""
        ...

    async def prepare(self, events: Sequence[Event]) -> "Prepared":
        """Work out what the events change (the next batch is prepared while this one is sent: what this
        one changes counts as done for it). Events whose aggregate has an earlier event in `events` that
        the projection rejects are rejected too. Raises on anything transient."""
        ...

    async def send(self, prepared: "Prepared", checkpoint: Checkpoint | None, scope: Scope = WHOLE) -> dict[int, str]:
        """Apply a prepared batch in order, idempotently (what is applied already changes nothing), and,
        if none is rejected, store `checkpoint` with it as each partition's of `scope` (in the same step, or
        later: never before it). `scope` carries the writer's fencing token of each partition (its lease; 0:
        none); a store that can check them refuses, with LeaseLost, a token below the highest it has seen for
        the partition, in the same atomic step as the batch.

        Returns the events rejected, by the projection or by the store, as {stream sequence: why}.
        Raises on anything transient."""
        ...

    async def commit(self, checkpoint: Checkpoint, scope: Scope = WHOLE) -> None:
        """Store the checkpoint now, as each partition's of `scope`; a position lower than a partition's
        stored one changes nothing of it."""
        ...

    async def refresh(self) -> None:
        """Make what was written searchable."""
        ...


class Position(msgspec.Struct, frozen=True, kw_only=True):
    """A projection's progress, as announced on `proj.<projector>.position`."""

    projector: str
    position: int  # applied or parked up to here: a read by id sees it
    searchable: int | None = None  # covered by a refresh: a list or search sees it (None: = position)
    parked: dict[str, int] = {}  # aggregate -> stream sequence of its first dead letter
    partitions: tuple[int, ...] = ()  # the partitions this is about: () all of them


position_decoder = msgspec.json.Decoder(Position)


async def cancelled(task: asyncio.Task) -> None:
    """Cancel `task` and wait until it has ended, dropping its outcome (a discarded batch is read again from
    the checkpoint); a cancellation of the caller itself still goes through."""
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled():
        task.exception()  # taken: asyncio logs no "exception was never retrieved"


def position_subject(projector: str) -> str:
    return f"proj.{projector}.position"


class Progress:
    """A projector's position over its `count` partitions, put together from what the processes owning them
    announce (each names its partitions) and what the store says: it has passed what every partition has."""

    def __init__(self, projector: str, count: int) -> None:
        self.count = count
        self._parts = [Position(projector=projector, position=0, searchable=0)] * count  # searchable: never None

    @property
    def position(self) -> int:
        return min(p.position for p in self._parts)

    @property
    def searchable(self) -> int:
        return min(p.searchable for p in self._parts)

    def parked_at(self, aggregate: str) -> int | None:
        return self._parts[partition(aggregate, self.count)].parked.get(aggregate)

    def partitions(self) -> list[Position]:
        """Each partition's, naming it."""
        return [msgspec.structs.replace(p, partitions=(i,)) for i, p in enumerate(self._parts)]

    def update(self, new: Position, exact: bool) -> None:
        """An announcement only moves a partition forward; what the store says is the truth (a rebuilt or
        reset store may be behind)."""
        for p in new.partitions or range(self.count):
            if p >= self.count:
                continue
            old = self._parts[p]
            if not exact and new.position < old.position:
                continue
            searchable = new.position if new.searchable is None else new.searchable
            if not exact:
                searchable = max(searchable, old.searchable or 0)
            parked = new.parked
            if self.count > 1 and parked:
                parked = {a: seq for a, seq in parked.items() if partition(a, self.count) == p}
            self._parts[p] = Position(
                projector=new.projector, position=new.position, searchable=searchable, parked=parked
            )


class Letter(NamedTuple):
    seq: int
    data: bytes
    reason: str


class Sending(NamedTuple):
    """A batch whose writes are on their way to the store."""

    task: asyncio.Task | None  # the store's send(); None when nothing in the batch was for the store
    events: list[tuple[Event, bytes]]
    letters: list[Letter]  # found before the store: undecodable, or behind a parked aggregate
    parked: dict[str, int]
    position: int
    left: int  # what the consumer had left after it


class Reparked(Exception):
    """A batch parked an aggregate after the next one was prepared without knowing it."""


class Backoff:
    def __init__(self, first: float, cap: float) -> None:
        self._first, self._cap, self.delay = first, cap, first

    def reset(self) -> None:
        self.delay = self._first

    async def sleep(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self._cap)


class Projector:
    """Feeds one store from EVENTS: the events of the partitions it owns (of `partitions`). `name` is the
    projector's (its positions, metrics, DLQ); a rebuild's replay runs a second Projector
    (`announce=False`) into the new generation, dead-lettering under the live name."""

    def __init__(
        self,
        nc: NATS,
        name: str,
        store: Store,
        *,
        dead_letters: str | None = None,  # the projector whose DLQ subject gets the poison: this one unless given
        announce: bool = True,
        skip_letters: frozenset[int] = frozenset(),  # stream sequences already in the DLQ: not published again
        refresh: bool = True,  # make writes searchable as they come (a replay is refreshed once, at the switch)
        filtered: bool = False,  # the consumer brings only the store's events: see caught_up()
        batch: int = 500,
        refresh_interval: float = 1.0,  # ProjectorSettings.refresh_interval
        consumer: str | None = None,  # the durable consumer's name: `name` unless given
        partitions: int = 1,  # the projector's (PROJECTION_PARTITIONS)
        owned: frozenset[int] | None = None,  # those this one projects: all unless given
        # raises LeaseLost once this process may no longer write the given partitions
        fence: Callable[[frozenset[int]], None] = lambda partitions: None,
        token: Callable[[int], int] = lambda partition: 0,  # a partition's fencing token, for the stores that check it
        retry_first: float = 0.1,
        retry_cap: float = 5.0,
    ) -> None:
        self._nc, self._js = nc, nc.jetstream()
        self.name, self._store, self.consumer = name, store, consumer or name
        self._projector = dead_letters or name
        self._announce, self._skip_letters, self._refresh = announce, skip_letters, refresh
        self._filtered, self._fence, self._token = filtered, fence, token
        self.partitions = partitions
        self.owned = frozenset(range(partitions)) if owned is None else owned
        self._floors: dict[int, int] = {}  # each owned partition's stored position when the consumer started
        self._left = 0  # what the consumer had left for it after the last batch
        self._batch, self._refresh_interval = batch, refresh_interval
        self._backoff = Backoff(retry_first, retry_cap)
        self.checkpoint = Checkpoint()
        self.searchable = 0
        self.failure: str | None = None  # the transient failure the loop is retrying, if any
        self._lock = asyncio.Lock()  # held while a batch is written; hold() takes it between batches
        self._pull: Pull | None = None
        self._sending: Sending | None = None  # sent while the next batch is prepared
        self._next_consumer_seq = 1
        self._stopping = asyncio.Event()
        self._unrefreshed = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    @property
    def position(self) -> int:
        return self.checkpoint.position

    @property
    def frontier(self) -> int:
        """The highest checkpoint of a partition it owns (one gained from another process may be ahead of the
        others until the consumer reaches it)."""
        return max(self.position, *self._floors.values(), 0)

    def owns(self, aggregate: str | None) -> bool:
        """Whether the aggregate's events are this one's to project (one that is not known: partition 0's)."""
        return partition(aggregate or "", self.partitions) in self.owned

    @property
    def complete(self) -> bool:
        """Whether it projects every partition."""
        return len(self.owned) == self.partitions

    @property
    def _refreshing(self) -> bool:
        return self._refresh and self._store.refreshes

    @property
    def nc(self) -> NATS:
        return self._nc

    @property
    def store(self) -> Store:
        return self._store

    async def start(self) -> None:
        """Start consuming; the first subscription happens here, so a start that cannot reach the store
        or NATS fails loudly instead of retrying in the background."""
        await self._subscribe()
        self._tasks = [asyncio.create_task(self._run(), name=f"projector-{self.name}")]
        if self._refreshing:
            self._tasks.append(asyncio.create_task(self._refresher(), name=f"refresh-{self.name}"))

    async def stop(self, timeout: float = 10) -> None:
        """Finish the batch in hand, then stop fetching."""
        self._stopping.set()
        if self._tasks:
            await asyncio.wait(self._tasks[:1], timeout=timeout)  # the consume loop; the refresher just ends
            for task in self._tasks:
                task.cancel()
        await self._unsubscribe()

    async def ready(self) -> None:
        """Readiness: raises while the loop is retrying a failure or is not running."""
        if not self._tasks or self._tasks[0].done():
            raise RuntimeError("consume loop is not running")
        if self.failure:
            raise RuntimeError(self.failure)

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """No batch is written while the context is open."""
        async with self._lock:
            await self._settle()
            yield

    async def switch(self, store: Store) -> None:
        """Go on in another store from its own checkpoint (call inside hold())."""
        self._store = store
        await self._unsubscribe()
        await self._subscribe()
        await self._announce_position()

    async def reassign(self, owned: frozenset[int]) -> None:
        """Project these partitions from now on: what it has done so far is stored first, under the leases it
        had, and the consumer starts again from the lowest checkpoint of the new ones."""
        async with self._lock:
            await self._settle()
            if self.checkpoint.position and not self.failure:
                with contextlib.suppress(Exception):  # a lease lost, the store away: the next owner goes on
                    await self._commit(self.checkpoint)  # from the last checkpoint stored
            self.owned = owned
            await self._unsubscribe()
            # nothing is claimed of the new set (positions, caught_up(), the checkpoint stored at a stop) until
            # the store has said where each of its partitions is
            self.checkpoint, self._floors = Checkpoint(), {}
            with contextlib.suppress(Exception):  # the store or NATS away: the loop subscribes again
                await self._subscribe()
        log.info("partitions_reassigned", projector=self.name, partitions=sorted(owned), position=self.position)

    async def _subscribe(self) -> None:
        self._may_write()  # a former owner must not take the consumer back
        stored = await self._store.checkpoints(self.partitions, self.owned)
        self._floors = {p: c.position for p, c in stored.items()}
        parked = {a: seq for c in stored.values() for a, seq in c.parked.items()}
        self.checkpoint = Checkpoint(position=min(self._floors.values(), default=0), parked=parked)
        self.searchable = self.checkpoint.position
        stream = (await self._js.stream_info(EVENTS_STREAM)).state
        if stream.first_seq > self.position + 1 and stream.messages:
            raise RuntimeError(
                f"EVENTS starts at #{stream.first_seq} but {self.name} needs #{self.position + 1}: history was lost"
            )
        with contextlib.suppress(NotFoundError):
            await self._js.delete_consumer(EVENTS_STREAM, self.consumer)
        config = ConsumerConfig(
            durable_name=self.consumer,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.position + 1,
            ack_policy=AckPolicy.NONE,
            filter_subject=self._store.events if self._filtered else "evt.>",
            # where it is lives in the read model's store: the consumer is disposable, one copy in memory
            # (on a cluster no raft group to elect; one lost with its node is made again from the checkpoint)
            num_replicas=1,
            mem_storage=True,
        )
        await self._js.add_consumer(EVENTS_STREAM, config, timeout=API_TIMEOUT)
        self._pull = Pull(self._nc, EVENTS_STREAM, self.consumer, self._batch)
        await self._pull.start()
        self._next_consumer_seq = 1
        PROJECTION_POSITION.labels(projector=self.name).set(self.position)
        log.info("subscribed", projector=self.name, store=self._store.name, position=self.position)

    async def _unsubscribe(self) -> None:
        pull, self._pull = self._pull, None
        if pull is not None:
            with contextlib.suppress(Exception):
                await pull.stop()

    async def _run(self) -> None:
        await self._announce_position()
        try:
            await self._consume()
        finally:
            async with self._lock:
                await self._settle()
                if self.checkpoint.position:  # a store may keep its last checkpoint for its next write
                    with contextlib.suppress(Exception):  # the store away: a restart goes on from the last stored
                        await self._commit(self.checkpoint)

    async def _consume(self) -> None:
        idle = 0
        while not self._stopping.is_set():
            try:
                if self._pull is None:
                    await self._subscribe()
                    await self._announce_position()
                pull = self._pull
                # the next batch is on its way while this one is written (no acks: a batch dropped with
                # its subscription is fetched again from the checkpoint)
                if self._sending is not None and not pull.holding:  # nothing to prepare meanwhile
                    async with self._lock:
                        await self._finish()
                msgs = await pull.take(self._batch, timeout=1)
                if not msgs:
                    idle += 1
                    if idle % 2 == 0:  # a deleted consumer may only show as silence
                        await self._js.consumer_info(EVENTS_STREAM, self.consumer)
                    continue
                idle = 0
                await self._handle(pull, msgs)
                self.failure = None
                self._backoff.reset()
            except Reparked:
                await self._unsubscribe()  # the batch prepared meanwhile is read again from the checkpoint
            except Exception as exc:
                await self._discard()
                if self._stopping.is_set():
                    return
                self.failure = f"{type(exc).__name__}: {exc}"[:500]
                PROJECTION_RETRIES.labels(projector=self.name).inc()
                log.warning("batch_failed", projector=self.name, error=self.failure, retry_in=self._backoff.delay)
                await self._unsubscribe()  # start again from the checkpoint
                await self._update_lag()
                await self._backoff.sleep()

    async def _handle(self, pull: Pull, msgs: list[Delivery]) -> None:
        """Prepare this batch, finish the one before (sent meanwhile), then send this one."""
        async with self._lock:
            if pull is not self._pull:  # switched to another store meanwhile: these belong to the old one
                return
            events, letters = [], []
            parked = dict(self._sending.parked if self._sending else self.checkpoint.parked)
            mine = self._store.events.removesuffix(">")
            count, owned, floors, reads = self.partitions, self.owned, self._floors, self._store.reads
            for msg in msgs:
                if msg.consumer_seq != self._next_consumer_seq:
                    raise RuntimeError(
                        f"consumer sequence jumped from {self._next_consumer_seq - 1} to {msg.consumer_seq}"
                    )
                self._next_consumer_seq += 1
                if not msg.subject.startswith(mine):
                    continue
                seq = msg.stream_seq
                try:
                    envelope, event = decoded(msg.data, reads)
                except (msgspec.MsgspecError, ValueError) as exc:  # never decodable: poison (of partition 0's)
                    if 0 in owned and seq > floors.get(0, 0):
                        letters.append(Letter(seq, msg.data, f"undecodable event: {type(exc).__name__}: {exc}"))
                    continue
                if count > 1:
                    part = partition(envelope.stream_id, count)
                    if part not in owned or seq <= floors[part]:  # another's, or done before it came here
                        continue
                if envelope.stream_id in parked:
                    letters.append(Letter(seq, msg.data, f"parked behind #{parked[envelope.stream_id]}"))
                    continue
                events.append((Event(seq, envelope, event), msg.data))
            prepared = await self._store.prepare([e for e, _ in events]) if events else None
            await self._finish()
            position = msgs[-1].stream_seq
            # nothing to dead-letter so far: the store may keep the checkpoint with the batch itself
            clean = (
                None if letters or (prepared and prepared.rejected) else Checkpoint(position=position, parked=parked)
            )
            task = asyncio.create_task(self._send(prepared, clean)) if prepared else None
            self._sending = Sending(task, events, letters, parked, position, msgs[-1].pending)

    async def _finish(self) -> None:
        """Wait for the batch on its way to the store and move the checkpoint past it. Raises Reparked if it
        parked an aggregate: a batch prepared meanwhile must then be read again."""
        sending, self._sending = self._sending, None
        if sending is None:
            return
        rejected = await sending.task if sending.task else {}
        parked, letters = dict(sending.parked), list(sending.letters)
        for event, data in sending.events if rejected else ():
            if event.seq in rejected:
                parked.setdefault(event.envelope.stream_id, event.seq)
                letters.append(Letter(event.seq, data, rejected[event.seq]))
        handled = Counter([event.envelope.type for event, _ in sending.events if event.seq not in rejected])
        for event_type, count in handled.items():  # once a type: labels() costs more than an event's decoding
            EVENTS_HANDLED.labels(projector=self.name, type=event_type).inc(count)
        checkpoint = Checkpoint(position=sending.position, parked=parked)
        if letters:  # the checkpoint passes dead letters only once they are in the DLQ
            await self._dead_letter(sorted(letters))
            await self._commit(checkpoint)
        self.checkpoint = checkpoint
        if self._refreshing:
            self._unrefreshed.set()
        else:
            self.searchable = checkpoint.position
        PROJECTION_POSITION.labels(projector=self.name).set(checkpoint.position)
        self._left = sending.left
        PROJECTION_LAG.labels(projector=self.name).set(self._left)
        await self._announce_position()
        if len(parked) > len(sending.parked):
            raise Reparked

    async def _settle(self) -> None:
        """Finish the batch in flight (with the lock held); if that fails, the loop starts again from the
        checkpoint."""
        try:
            await self._finish()
        except Reparked:
            await self._unsubscribe()
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"[:500]
            await self._unsubscribe()

    async def _discard(self) -> None:
        sending, self._sending = self._sending, None
        if sending is not None and sending.task is not None:
            await cancelled(sending.task)

    async def caught_up(self, position: int) -> bool:
        """Whether every event of the store's up to `position` (a stream sequence that exists) is applied or
        parked; if so the checkpoint says `position`. A filtered consumer never brings the other events, so
        its position stays at the last event of its own until this is asked: it is, when the consumer has
        nothing left and everything it delivered has been handled."""
        if self.position >= position:
            return True
        if self._left or self._pull is None or self.failure:
            return False
        async with self._lock:
            await self._settle()
            info = await self._js.consumer_info(EVENTS_STREAM, self.consumer)
            if info.num_pending or info.delivered.consumer_seq != self._next_consumer_seq - 1 or self._pull is None:
                return False
            checkpoint = Checkpoint(position=max(position, self.position), parked=self.checkpoint.parked)
            await self._commit(checkpoint)
            self.checkpoint = checkpoint
        return True

    async def redrive(self, letters: Sequence[tuple[int, bytes]]) -> dict[int, str]:
        """Apply dead letters (stream sequence, data) again, in order, and unpark each aggregate whose
        letters all applied; returns those rejected again, as {stream sequence: why}."""
        async with self._lock:
            await self._settle()
            events, failed = [], {}
            for seq, data in letters:
                try:
                    events.append(Event(seq, *decoded(data, self._store.reads)))
                except (msgspec.MsgspecError, ValueError) as exc:
                    failed[seq] = f"undecodable event: {type(exc).__name__}: {exc}"
            rejected = await self._send(await self._store.prepare(events), None) if events else {}
            failed.update(rejected)
            applied = {e.envelope.stream_id for e in events} - {
                e.envelope.stream_id for e in events if e.seq in rejected
            }
            parked = {a: seq for a, seq in self.checkpoint.parked.items() if a not in applied}
            checkpoint = Checkpoint(position=self.position, parked=parked)
            await self._commit(checkpoint)
            self.checkpoint = checkpoint
            if self._refreshing:
                self._unrefreshed.set()
        log.info("redriven", projector=self.name, letters=len(letters), rejected=len(failed))
        await self._announce_position()
        return failed

    def _may_write(self) -> None:
        """Right before each write (nothing of ours is awaited between this and the store's call): LeaseLost
        if this process may no longer write."""
        try:
            self._fence(self.owned)
        except LeaseLost:
            PROJECTION_FENCED.labels(projector=self._projector).inc()
            raise
        PROJECTION_WRITES.labels(projector=self._projector).inc()

    async def _send(self, prepared: "Prepared", checkpoint: Checkpoint | None) -> dict[int, str]:
        self._may_write()
        return await self._store.send(prepared, checkpoint, self._scope())

    async def _commit(self, checkpoint: Checkpoint) -> None:
        self._may_write()
        await self._store.commit(checkpoint, self._scope())

    def _scope(self) -> Scope:
        return Scope(self.partitions, {p: self._token(p) for p in sorted(self.owned)})

    async def _dead_letter(self, letters: list[Letter]) -> None:
        """Publish to the DLQ and wait for the acks: before the checkpoint passes them."""
        self._may_write()
        for letter in letters:
            if letter.seq in self._skip_letters:
                continue
            log.error("event_dead_lettered", projector=self._projector, stream_seq=letter.seq, reason=letter.reason)
            await self._js.publish(
                f"dlq.{self._projector}",
                letter.data,
                headers={
                    "Nats-Msg-Id": f"{self._projector}:{letter.seq}",
                    "Shop-Error": letter.reason[:1000],
                    "Shop-Stream-Seq": str(letter.seq),
                },
            )
            EVENTS_DEAD_LETTERED.labels(projector=self._projector).inc()

    async def _refresher(self) -> None:
        """At most one refresh per interval while there are unrefreshed writes."""
        while not self._stopping.is_set():
            await self._unrefreshed.wait()
            await asyncio.sleep(self._refresh_interval)
            self._unrefreshed.clear()
            covered = self.position
            try:
                self._fence(self.owned)  # a refresh may store the checkpoint the last batch left pending
                await self._store.refresh()
            except Exception as exc:
                log.warning("refresh_failed", projector=self.name, error=f"{type(exc).__name__}: {exc}")
                self._unrefreshed.set()
                await asyncio.sleep(self._backoff.delay)
                continue
            self.searchable = max(self.searchable, covered)
            await self._announce_position()

    async def _announce_position(self) -> None:
        if not self._announce:
            return
        position = Position(
            projector=self.name,
            position=self.position,
            searchable=self.searchable,
            parked=self.checkpoint.parked,
            partitions=() if self.complete else tuple(sorted(self.owned)),
        )
        with contextlib.suppress(Exception):  # NATS away: the next one will tell
            await self._nc.publish(position_subject(self.name), msgspec.json.encode(position))

    async def _update_lag(self) -> None:
        with contextlib.suppress(Exception):
            last = (await self._js.stream_info(EVENTS_STREAM)).state.last_seq
            PROJECTION_LAG.labels(projector=self.name).set(max(0, last - self.position))
