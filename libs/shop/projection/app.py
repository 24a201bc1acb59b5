"""The whole process of a projector: its read model, the consume loop, rebuilds, dead letters, ops.

Several processes of one projector may run: they share its partitions (PROJECTION_PARTITIONS), each
projecting those whose leases it holds (shop.projection.lease); the one holding partition 0's runs
rebuilds. With one partition, one process projects and the others stand by, ready to take it over."""

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from litestar import Litestar, get
from litestar.enums import MediaType
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js.errors import NoStreamResponseError

from shop import messaging
from shop.messaging import EVENTS_STREAM
from shop.ops import Readiness, ops_app, ops_token_guard
from shop.projection.dlq import redrive_handler
from shop.projection.engine import Backoff, Projector
from shop.projection.lease import Partitions
from shop.projection.rebuild import ReadModel, Rebuild, rebuild_handlers, replay_projector
from shop.settings import ProjectorSettings

log = structlog.get_logger()


class Owner:
    """Projects the partitions whose leases this process holds (its fair share), and runs rebuilds while it
    holds partition 0's; stands by while it holds none. `projectors` and `rebuilds` (what the ops handlers
    act on) hold them only while it runs them."""

    def __init__(
        self,
        nc: NATS,
        name: str,
        settings: ProjectorSettings,
        read_model: ReadModel,
        partitions: Partitions,
        projectors: list[Projector],
        rebuilds: list[Rebuild],
    ) -> None:
        self._nc, self._name, self._settings, self._read_model = nc, name, settings, read_model
        self.partitions, self.projectors, self.rebuilds = partitions, projectors, rebuilds
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._helper: Projector | None = None  # its partitions' replay, into the generation a rebuild fills

    async def start(self) -> None:
        await self._first_renewal()
        await self._balance()
        self._tasks = [
            asyncio.create_task(self._every_interval(self.partitions.renew), name=f"leases-{self._name}"),
            asyncio.create_task(self._every_interval(self._balance), name=f"balance-{self._name}"),
        ]

    async def stop(self) -> None:
        """Finish the batch in hand (its checkpoints stored), then give the leases up for the other processes."""
        self._stopping = True  # (a cancellation swallowed somewhere below must not keep a loop going)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self._settings.shutdown_timeout)
        await self._help(frozenset())
        await self._project(frozenset())
        await self.partitions.leave()

    async def ready(self) -> None:
        """A standby is ready (to take over); a process that projects once its projection runs."""
        for projector in self.projectors:
            await projector.ready()

    async def _first_renewal(self, patience: float = 30.0) -> None:
        """The leases' bucket of a cluster that has just started may have no leader yet, and its writes then
        find no responder: tried again with backoff for `patience` seconds before the start fails."""
        loop, backoff = asyncio.get_running_loop(), Backoff(0.1, 2.0)
        ends = loop.time() + patience
        while True:
            try:
                return await self.partitions.renew()
            except (NoRespondersError, NoStreamResponseError, TimeoutError) as exc:
                if loop.time() + backoff.delay > ends:
                    raise
                log.warning("leases_not_reachable_yet", projector=self._name, error=repr(exc), retry_in=backoff.delay)
                await backoff.sleep()

    async def _every_interval(self, step: Callable[[], Awaitable[None]]) -> None:
        """The leases are renewed on their own, so that balancing (which may wait for a batch, a stop, a
        store) never holds a renewal up."""
        while not self._stopping:
            await asyncio.sleep(self.partitions.interval)
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the store away: a lease not renewed in time runs out by itself
                log.warning("lease_or_start_failed", projector=self._name, error=f"{type(exc).__name__}: {exc}")

    async def _balance(self) -> None:
        """Hold the fair share: partitions above it are given up only once the projection no longer writes
        them."""
        partitions = self.partitions
        share = await partitions.share(rebuilding=bool(self.rebuilds and self.rebuilds[0].exclusive))
        owned = partitions.owned
        if len(owned) > share:
            keep = frozenset(sorted(owned)[:share])  # partition 0 (rebuilds) stays where it is
            await self._help(keep)
            await self._project(keep)
            await partitions.release(owned - keep)
        elif len(owned) < share:
            await partitions.take(share - len(owned))
        await self._help(partitions.owned)  # first: a helper gives its consumer up to the rebuild it now leads
        await self._project(partitions.owned)
        rebuild = self.rebuilds[0] if self.rebuilds else None
        if rebuild and rebuild.status.state == "paused" and partitions.leases[0].valid():
            await rebuild.resume()  # paused by a lease that was invalid for a moment

    async def _project(self, owned: frozenset[int]) -> None:
        """Project `owned`: start, reassign or stop the projection, and the rebuilds with partition 0."""
        projector = self.projectors[0] if self.projectors else None
        consumer = self._consumer(self._name)
        replace = projector is not None and (not owned or projector.consumer != consumer)
        if self.rebuilds and (replace or 0 not in owned):
            await self.rebuilds.pop().stop()
        if replace:
            self.projectors.clear()
            await projector.stop(self._settings.shutdown_timeout)
            log.info("standing_by", projector=self._name, position=projector.position)
            projector = None
        if not owned:
            return
        if projector is None:
            projector = Projector(
                self._nc,
                self._name,
                await self._read_model.active(),
                consumer=consumer,
                refresh_interval=self._settings.refresh_interval,
                partitions=self.partitions.count,
                owned=owned,
                fence=self.partitions.check,
                token=self.partitions.token,
            )
            await projector.start()
            self.projectors.append(projector)
            log.info("projecting", projector=self._name, partitions=sorted(owned), position=projector.position)
        elif projector.owned != owned:
            await projector.reassign(owned)
        if 0 in owned and not self.rebuilds:
            rebuild = Rebuild(
                self._nc,
                self._name,
                self._read_model,
                projector,
                fence=self.partitions.check,
                consumer=self._consumer(f"{self._name}-rebuild"),
            )
            self.rebuilds.append(rebuild)
            await rebuild.resume()

    def _consumer(self, name: str) -> str:
        """The durable consumer `name` of this process: by its slot (lease.SLOTS, deploy/nats/auth.conf)."""
        slot = self.partitions.slot
        return name if slot == 1 else f"{name}-{slot}"

    async def _help(self, owned: frozenset[int]) -> None:
        """While a rebuild replays (run by the process holding partition 0), a process that does not lead
        replays its own partitions into the new generation, so that the replay is shared like the live
        projection; the leader takes every partition for the end of it and the switch."""
        state = None
        if owned and 0 not in owned:
            state = await self._read_model.rebuild_state()
        generation = state.generation if state is not None and state.phase == "replaying" else None
        consumer = self._consumer(f"{self._name}-rebuild")
        helper = self._helper
        if helper is not None and (helper.store.name != generation or helper.consumer != consumer):
            self._helper = None
            await helper.stop(self._settings.shutdown_timeout)
            with contextlib.suppress(Exception):  # an idle consumer left behind costs little: the next one replaces it
                await self._nc.jetstream().delete_consumer(EVENTS_STREAM, helper.consumer)
            log.info("replay_help_stopped", projector=self._name, generation=helper.store.name)
            helper = None
        if generation is None:
            return
        if helper is None:
            self.partitions.check(owned)  # a stalled process must not make a generation cancelled meanwhile
            helper = await replay_projector(
                self._nc,
                self._name,
                await self._read_model.generation(generation),
                consumer,
                self.partitions.count,
                owned,
                self.partitions.check,
            )
            await helper.start()
            self._helper = helper
            log.info("replay_helping", projector=self._name, generation=generation, partitions=sorted(owned))
        elif helper.owned != owned:
            await helper.reassign(owned)


def projector_app(
    name: str, settings: ProjectorSettings, open_read_model: Callable[[], AbstractAsyncContextManager[ReadModel]]
) -> Litestar:
    """The whole process of a projector, with a graceful stop: the batch in hand is finished."""
    readiness = Readiness()
    owners: list[Owner] = []  # the one of this process, once it has started
    rebuilds: list[Rebuild] = []
    projectors: list[Projector] = []

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_read_model() as read_model:
            nc = await messaging.connect(settings.nats_url, f"projector-{name}", settings.nats_password)
            await messaging.ensure_streams(nc, settings.nats_stream_replicas)
            member = f"{socket.gethostname()}:{settings.http_port}:{os.getpid()}"
            partitions = Partitions(
                nc.jetstream(),
                name,
                member,
                settings.projection_partitions,
                settings.lease_ttl,
                settings.nats_stream_replicas,
            )
            await partitions.open()
            owner = Owner(nc, name, settings, read_model, partitions, projectors, rebuilds)
            await owner.start()
            owners.append(owner)
            readiness.checks.update(read_model.checks, nats=lambda: nc.flush(timeout=1), projection=owner.ready)
            owned = sorted(partitions.owned)
            log.info("started", projector=name, member=member, partitions=owned, port=settings.http_port)
            try:
                yield
            finally:
                readiness.checks.clear()
                owners.clear()
                await owner.stop()
                await nc.drain()
                log.info("stopped", projector=name)

    @get("/lease", media_type=MediaType.JSON, include_in_schema=False)
    async def lease_status() -> dict[str, object]:
        """Which partitions this process projects (holds the leases of), whether it leads (partition 0:
        rebuilds), and who leads."""
        if not owners:
            return {"member": None, "owner": None, "projecting": False, "leader": False, "partitions": []}
        partitions, owner = owners[0].partitions, None
        leader = partitions.leases[0]
        with contextlib.suppress(Exception):  # NATS away: this process still knows what it projects
            owner = await leader.owner()
        return {
            "member": partitions.member,
            "owner": owner,  # of partition 0
            "projecting": bool(projectors),
            "leader": leader.held,
            "partitions": sorted(partitions.owned),
            "count": partitions.count,
            "token": leader.token,
        }

    guards = [ops_token_guard(settings.ops_token)]
    handlers = [*rebuild_handlers(rebuilds, guards), *redrive_handler(name, projectors, guards), lease_status]
    return ops_app(readiness, lifespan, handlers)
