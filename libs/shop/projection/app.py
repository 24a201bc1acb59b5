"""The whole process of a projector: its read model, the consume loop, rebuilds, dead letters, ops.

Several processes of one projector may run: the one holding the projector's lease (shop.projection.lease)
projects and runs rebuilds; the others stand by, ready, and take the lease when it runs out."""

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from litestar import Litestar, get
from litestar.enums import MediaType
from nats.aio.client import Client as NATS

from shop import messaging
from shop.ops import Readiness, ops_app, ops_token_guard
from shop.projection.dlq import redrive_handler
from shop.projection.engine import Projector
from shop.projection.lease import Lease
from shop.projection.rebuild import ReadModel, Rebuild, rebuild_handlers
from shop.settings import ProjectorSettings

log = structlog.get_logger()


class Owner:
    """Runs the projection, and any rebuild, while this process holds the lease; stands by otherwise.
    `projectors` and `rebuilds` (what the ops handlers act on) hold them only while it runs them."""

    def __init__(
        self,
        nc: NATS,
        name: str,
        settings: ProjectorSettings,
        read_model: ReadModel,
        lease: Lease,
        projectors: list[Projector],
        rebuilds: list[Rebuild],
    ) -> None:
        self._nc, self._name, self._settings, self._read_model, self.lease = nc, name, settings, read_model, lease
        self.projectors, self.rebuilds = projectors, rebuilds
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        if await self.lease.acquire():
            await self._project()
        self._task = asyncio.create_task(self._keep(), name=f"lease-{self._name}")

    async def stop(self) -> None:
        """Finish the batch in hand (its checkpoint stored), then give the lease up for another process."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._stand_by()
        await self.lease.release()

    async def ready(self) -> None:
        """A standby is ready (to take over); the owner once its projection runs."""
        for projector in self.projectors:
            await projector.ready()

    async def _keep(self) -> None:
        while True:
            await asyncio.sleep(self.lease.interval)
            try:
                if self.lease.held and not await self.lease.renew():
                    await self._stand_by()
                if not self.lease.held:
                    await self.lease.acquire()
                if self.lease.held and not self.projectors:  # taken now, or its projection failed to start
                    await self._project()
                elif self.lease.valid() and self.rebuilds and self.rebuilds[0].status.state == "paused":
                    await self.rebuilds[0].resume()  # paused by a lease that was invalid for a moment
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # NATS or the store away: a lease not renewed in time runs out by itself
                log.warning("lease_or_start_failed", projector=self._name, error=f"{type(exc).__name__}: {exc}")
            if self.projectors and not self.lease.valid():
                await self._stand_by()

    async def _project(self) -> None:
        fence, token = self.lease.check, lambda: self.lease.token
        projector = Projector(
            self._nc,
            self._name,
            await self._read_model.active(),
            refresh_interval=self._settings.refresh_interval,
            fence=fence,
            token=token,
        )
        await projector.start()
        rebuild = Rebuild(self._nc, self._name, self._read_model, projector, fence=fence, token=token)
        self.projectors.append(projector)
        self.rebuilds.append(rebuild)
        await rebuild.resume()
        log.info("projecting", projector=self._name, position=projector.position, token=self.lease.token)

    async def _stand_by(self) -> None:
        projectors, rebuilds = list(self.projectors), list(self.rebuilds)
        self.projectors.clear()
        self.rebuilds.clear()
        for rebuild in rebuilds:
            await rebuild.stop()
        for projector in projectors:
            await projector.stop(self._settings.shutdown_timeout)
            log.info("standing_by", projector=self._name, position=projector.position)


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
            lease = Lease(nc.jetstream(), name, member, settings.lease_ttl, settings.nats_stream_replicas)
            await lease.open()
            owner = Owner(nc, name, settings, read_model, lease, projectors, rebuilds)
            await owner.start()
            owners.append(owner)
            readiness.checks.update(read_model.checks, nats=lambda: nc.flush(timeout=1), projection=owner.ready)
            log.info("started", projector=name, member=member, owner=lease.held, port=settings.http_port)
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
        """Whether this process projects (holds the lease) or stands by, and who holds it."""
        if not owners:
            return {"member": None, "owner": None, "projecting": False}
        lease, owner = owners[0].lease, None
        with contextlib.suppress(Exception):  # NATS away: this process still knows whether it projects
            owner = await lease.owner()
        return {"member": lease.member, "owner": owner, "projecting": bool(projectors), "token": lease.token}

    guards = [ops_token_guard(settings.ops_token)]
    handlers = [*rebuild_handlers(rebuilds, guards), *redrive_handler(name, projectors, guards), lease_status]
    return ops_app(readiness, lifespan, handlers)
