"""Who runs a projector's projection when several processes of it run: the one holding its lease, a key
of a JetStream KV bucket with a TTL (`leases-<projector>`, key `owner`). The owner renews it every
`ttl / 5` seconds; a process that dies stops renewing, the key expires, and another process takes it
within `ttl` plus one attempt's interval.

Fencing: the revision of the write that took the lease is the owner's token. The owner counts its lease
valid only for `ttl - margin` after it last *sent* a renewal that succeeded (the key cannot expire before
that on the server), and the engine checks that right before each write to the read model, so a process
stopped past its lease (SIGSTOP, a long pause) finds it invalid when it runs again and writes nothing.
The Redis read model also keeps the highest token it has seen and refuses, in the batch's own atomic
step, a batch with a lower one."""

import time

import structlog
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import BadRequestError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = structlog.get_logger()

OWNER = "owner"


class LeaseLost(Exception):
    """This process no longer holds the lease: it must not write."""


class Lease:
    def __init__(self, js: JetStreamContext, projector: str, member: str, ttl: float = 5.0, replicas: int = 1) -> None:
        self._js, self.bucket, self.member, self._replicas = js, f"leases-{projector}", member, replicas
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
            raise LeaseLost(f"{self.member} no longer holds {self.bucket}")

    async def owner(self) -> str | None:
        try:
            entry = await self._kv.get(OWNER)
        except KeyNotFoundError:  # also a deleted key
            return None
        return entry.value.decode() if entry.value else None

    async def acquire(self) -> bool:
        """Take the lease if no one holds it."""
        sent = time.monotonic()
        try:
            revision = await self._kv.create(OWNER, self.member.encode())
        except KeyWrongLastSequenceError:
            return False
        self.token = self._revision = revision
        self._valid_until = sent + self.ttl - self.margin
        log.info("lease_taken", bucket=self.bucket, member=self.member, token=revision)
        return True

    async def renew(self) -> bool:
        """Keep the lease; False (and no longer held) if another took it or it expired."""
        sent = time.monotonic()
        try:
            self._revision = await self._kv.update(OWNER, self.member.encode(), last=self._revision)
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
            await self._kv.delete(OWNER, last=revision)
        except KeyWrongLastSequenceError:
            return  # someone else's already
        log.info("lease_released", bucket=self.bucket, member=self.member)

    def _lost(self, why: str) -> None:
        log.warning("lease_lost", bucket=self.bucket, member=self.member, token=self.token, why=why)
        self.token, self._valid_until = 0, 0.0
