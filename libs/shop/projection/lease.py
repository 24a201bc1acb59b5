"""Who projects which partition of a projector when several processes of it run: the one holding the
partition's lease, a key of a JetStream KV bucket with a TTL (`leases-<projector>`, key `p<i>`). The owner
renews it every `ttl / 5` seconds; a process that dies stops renewing, the key expires, and another
process takes it within `ttl` plus one attempt's interval. The processes share the partitions fairly
(Partitions below).

Fencing: the revision of the write that took the lease is the owner's token. The owner counts its lease
valid only for `ttl - margin` after it last *sent* a renewal that succeeded (the key cannot expire before
that on the server), and the engine checks that right before each write to the read model, so a process
stopped past its lease (SIGSTOP, a long pause) finds it invalid when it runs again and writes nothing.
The Redis read model also keeps the highest token it has seen and refuses, in the batch's own atomic
step, a batch with a lower one."""

import contextlib
import math
import time

import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = structlog.get_logger()

# a process that projects holds one of SLOTS slots (`slot<n>`): the slots held are the members that share the
# partitions, and slot n names the process's consumer (the projector's name, `<name>-<n>` for n > 1, each
# listed in deploy/nats/auth.conf: NATS permissions match whole subject tokens, so no wildcard can say it)
SLOTS = 4
REBUILD = "rebuild"  # held by the process running a rebuild: it projects every partition meanwhile


class LeaseLost(Exception):
    """This process no longer holds the lease: it must not write."""


class Lease:
    def __init__(
        self,
        js: JetStreamContext,
        projector: str,
        member: str,
        ttl: float = 5.0,
        replicas: int = 1,
        key: str = "p0",
    ) -> None:
        self._js, self.bucket, self.member, self._replicas = js, f"leases-{projector}", member, replicas
        self.key = key
        self._timing(ttl)
        self._kv: KeyValue | None = None
        self.token = 0  # the revision that took it; 0 while not held
        self._revision = 0  # the last write of it
        self._valid_until = 0.0

    async def open(self) -> None:
        config = KeyValueConfig(bucket=self.bucket, ttl=self.ttl, history=1, replicas=self._replicas)
        try:
            self._kv = await self._js.create_key_value(config)
        except BadRequestError:  # there already, made with other settings: its own TTL is the one that counts
            self._kv = await self._js.key_value(self.bucket)
            ttl = (await self._kv.status()).ttl
            if not ttl:
                raise RuntimeError(f"KV bucket {self.bucket} has no TTL: a dead owner would keep it") from None
            self._timing(ttl)

    def sibling(self, key: str) -> "Lease":
        """Another key of the same (opened) bucket, for the same member."""
        other = Lease(self._js, self.bucket.removeprefix("leases-"), self.member, self.ttl, self._replicas, key)
        other._kv = self._kv
        return other

    def _timing(self, ttl: float) -> None:
        self.ttl, self.margin = ttl, min(1.0, ttl / 5)
        self.interval = ttl / 5  # between renewals, and between attempts to take it

    @property
    def held(self) -> bool:
        return self.token > 0

    def valid(self) -> bool:
        """Held, and renewed recently enough that no one else can have taken it."""
        return self.held and time.monotonic() < self._valid_until

    def check(self) -> None:
        """Raises LeaseLost unless valid(): called right before each write."""
        if not self.valid():
            raise LeaseLost(f"{self.member} no longer holds {self.key} of {self.bucket}")

    async def owner(self) -> str | None:
        try:
            entry = await self._kv.get(self.key)
        except KeyNotFoundError:  # also a deleted key
            return None
        return entry.value.decode() if entry.value else None

    async def acquire(self) -> bool:
        """Take the lease if no one holds it."""
        sent = time.monotonic()
        try:
            revision = await self._kv.create(self.key, self.member.encode())
        except KeyWrongLastSequenceError:
            return False
        self.token = self._revision = revision
        self._valid_until = sent + self.ttl - self.margin
        log.info("lease_taken", bucket=self.bucket, key=self.key, member=self.member, token=revision)
        return True

    async def renew(self) -> bool:
        """Keep the lease; False (and no longer held) if another took it or it expired."""
        sent = time.monotonic()
        try:
            self._revision = await self._kv.update(self.key, self.member.encode(), last=self._revision)
        except KeyWrongLastSequenceError:
            self._lost("taken or expired")
            return False
        self._valid_until = sent + self.ttl - self.margin
        return True

    async def release(self) -> None:
        """Give the lease up at once (a graceful stop), so another process need not wait for the TTL."""
        if not self.held:
            return
        revision, self.token, self._valid_until = self._revision, 0, 0.0
        try:
            await self._kv.delete(self.key, last=revision)
        except (KeyWrongLastSequenceError, BadRequestError):  # (the server's "wrong last sequence": 400)
            # someone else's already, or a renewal cancelled after the server took it left an older revision
            try:
                entry = await self._kv.get(self.key)
            except KeyNotFoundError:
                return
            if entry.value != self.member.encode():
                return
            with contextlib.suppress(KeyWrongLastSequenceError, BadRequestError):
                await self._kv.delete(self.key, last=entry.revision)
        log.info("lease_released", bucket=self.bucket, key=self.key, member=self.member)

    def _lost(self, why: str) -> None:
        log.warning("lease_lost", bucket=self.bucket, key=self.key, member=self.member, token=self.token, why=why)
        self.token, self._valid_until = 0, 0.0


class Partitions:
    """The leases of a projector's `count` partitions, shared by its processes. Each holds a slot (a lease of
    its own; a process without one, SLOTS running already, stands by) and its fair share of partitions,
    ceil(count / slots held): it takes free partitions up to it, and gives up those above it (after its
    projection has stopped writing them). While a process runs a rebuild (key `rebuild`), it takes every
    partition and the others give theirs up: the switch holds the whole live projection in one process."""

    def __init__(
        self, js: JetStreamContext, projector: str, member: str, count: int, ttl: float = 5.0, replicas: int = 1
    ) -> None:
        self.count, self.member = count, member
        self._first = Lease(js, projector, member, ttl, replicas, key="p0")
        self.leases: list[Lease] = []
        self._slots: list[Lease] = []
        self.rebuild: Lease | None = None  # held while this process runs a rebuild

    async def open(self) -> None:
        await self._first.open()
        self.leases = [self._first, *(self._first.sibling(f"p{i}") for i in range(1, self.count))]
        self._slots = [self._first.sibling(f"slot{n}") for n in range(1, SLOTS + 1)]
        self.rebuild = self._first.sibling(REBUILD)

    @property
    def bucket(self) -> str:
        return self._first.bucket

    @property
    def interval(self) -> float:
        return self._first.interval

    @property
    def owned(self) -> frozenset[int]:
        return frozenset(i for i, lease in enumerate(self.leases) if lease.held)

    def check(self, partitions: frozenset[int]) -> None:
        """LeaseLost unless every one of `partitions` is validly held: right before each write."""
        for i in partitions:
            self.leases[i].check()

    @property
    def slot(self) -> int:
        """The slot it holds (1..SLOTS), 0 if none."""
        return next((n for n, lease in enumerate(self._slots, 1) if lease.held), 0)

    def token(self, partition: int) -> int:
        return self.leases[partition].token

    async def renew(self) -> None:
        """Renew what it holds (what it no longer holds is no longer `owned`), or take a free slot."""
        for lease in (*self._slots, self.rebuild, *self.leases):
            if lease.held:
                await lease.renew()
        for lease in self._slots:
            if self.slot or await lease.acquire():
                return

    async def share(self, rebuilding: bool) -> int:
        """How many partitions it should hold now; while it runs a rebuild (`rebuilding`), it holds the key
        that says so (and all of them)."""
        if not self.slot:
            return 0
        if rebuilding:
            if self.rebuild.held or await self.rebuild.acquire():
                return self.count
        elif self.rebuild.held:
            await self.rebuild.release()
        if await self.rebuild.owner() not in (None, self.member):
            return 0
        return math.ceil(self.count / await self._members())

    async def _members(self) -> int:
        """The processes holding a slot now (this one among them)."""
        held = sum([await lease.owner() is not None for lease in self._slots])
        return max(held, 1)  # its own may have run out on the server before the renewal loop learns it

    async def take(self, wanted: int) -> None:
        """Take up to `wanted` more free partitions."""
        for lease in self.leases:
            if wanted <= 0:
                return
            if not lease.held and await lease.acquire():
                wanted -= 1

    async def release(self, partitions: frozenset[int]) -> None:
        for i in sorted(partitions):
            await self.leases[i].release()

    async def leave(self) -> None:
        """A graceful stop: everything given up at once (what cannot be runs out with the TTL)."""
        for lease in (*self.leases, self.rebuild, *self._slots):
            try:
                await lease.release()
            except Exception as exc:
                log.warning(
                    "lease_not_released", bucket=self.bucket, key=lease.key, error=f"{type(exc).__name__}: {exc}"
                )
