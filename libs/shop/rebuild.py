"""Rebuild a read model with no downtime (DESIGN §5.7): `just rebuild <projector>`.

The projector replays the whole EVENTS stream into a new generation of its read model (a new
OpenSearch index, a new Redis key prefix) through a second durable consumer, while the live one
keeps serving and keeps being updated. Once the replay has caught up, readers and the live
consumer are switched to the new generation in one step (alias swap, pointer key); the replay
goes on until it has also applied what arrived meanwhile, then the old generation is deleted.
Writes are idempotent per aggregate version, so the two consumers may overlap safely."""

import argparse
import asyncio
import contextlib
import os
import sys
from datetime import UTC, datetime
from typing import Protocol

import httpx
import msgspec
import structlog
from litestar import MediaType, Response, get, post
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from shop.messaging import EVENTS_STREAM
from shop.ops import Check
from shop.projection import Projection, Projector

log = structlog.get_logger()

DEFAULT_PORTS = {"order-list": 8003, "analytics": 8004, "catalog": 8005}


class ReadModel(Protocol):
    live: Projection  # what the live consumer writes through: follows the active generation
    checks: dict[str, Check]  # readiness checks of its store

    async def new_generation(self) -> tuple[str, Projection]:
        """An empty new generation, and a projection that writes into it alone."""

    async def activate(self, generation: str) -> str | None:
        """Make `generation` the one readers and the live projection use; returns the previous one."""

    async def retire(self, generation: str) -> None:
        """Delete a generation that is no longer used."""


class RebuildStatus(msgspec.Struct, kw_only=True):
    projector: str
    state: str = "idle"  # idle | replaying | switching | done | failed
    generation: str | None = None
    previous: str | None = None
    position: int = 0  # of the replay
    target: int = 0  # the stream position the replay is catching up with
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


class Rebuild:
    def __init__(self, nc: NATS, name: str, read_model: ReadModel, poll: float = 0.2) -> None:
        self._nc, self._js, self._name, self._read_model, self._poll = nc, nc.jetstream(), name, read_model, poll
        self.status = RebuildStatus(projector=name)
        self._task: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self.status = RebuildStatus(projector=self._name, state="replaying", started_at=datetime.now(UTC))
        self._task = asyncio.create_task(self._run(), name=f"rebuild-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        status, consumer = self.status, f"{self._name}-rebuild"
        log.info("rebuild_started", projector=self._name)
        try:
            status.generation, projection = await self._read_model.new_generation()
            with contextlib.suppress(NotFoundError):  # left by a rebuild that died: start from the beginning
                await self._js.delete_consumer(EVENTS_STREAM, consumer)
            replay = Projector(self._nc, consumer, projection, announce=False, dead_letters=f"dlq.{self._name}")
            await replay.start()
            try:
                await self._caught_up(consumer)
                status.state = "switching"
                status.previous = await self._read_model.activate(status.generation)
                log.info("rebuild_switched", projector=self._name, generation=status.generation)
                await self._caught_up(consumer)  # what the live consumer applied to the old generation meanwhile
            finally:
                await replay.stop(10)
                with contextlib.suppress(Exception):
                    await self._js.delete_consumer(EVENTS_STREAM, consumer)
            if status.previous:
                await self._read_model.retire(status.previous)
            status.state = "done"
            log.info("rebuild_done", projector=self._name, generation=status.generation, position=status.position)
        except Exception as exc:
            status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("rebuild_failed", projector=self._name)
            if status.generation and status.previous is None:  # never activated: throw it away
                with contextlib.suppress(Exception):
                    await self._read_model.retire(status.generation)
        finally:
            status.finished_at = datetime.now(UTC)

    async def _caught_up(self, consumer: str) -> None:
        """Until the replay has applied everything the stream holds now."""
        self.status.target = (await self._js.stream_info(EVENTS_STREAM)).state.last_seq
        while True:
            info = await self._js.consumer_info(EVENTS_STREAM, consumer)
            self.status.position = info.ack_floor.stream_seq if info.ack_floor else 0
            if self.status.position >= self.status.target:  # the ack floor: everything up to it is applied
                return
            await asyncio.sleep(self._poll)


def rebuild_handlers(rebuilds: list[Rebuild]) -> list:
    """POST /rebuild starts one (409 while one runs), GET /rebuild tells how it goes."""

    @post("/rebuild", media_type=MediaType.JSON, include_in_schema=False)
    async def start_rebuild() -> Response[RebuildStatus]:
        if not rebuilds:
            return Response(RebuildStatus(projector="", state="failed", error="still starting"), status_code=503)
        if rebuilds[0].running:
            return Response(rebuilds[0].status, status_code=409)
        rebuilds[0].start()
        return Response(rebuilds[0].status, status_code=202)

    @get("/rebuild", media_type=MediaType.JSON, include_in_schema=False)
    async def rebuild_status() -> Response[RebuildStatus]:
        if not rebuilds:
            return Response(RebuildStatus(projector="", state="failed", error="still starting"), status_code=503)
        return Response(rebuilds[0].status)

    return [start_rebuild, rebuild_status]


async def run(projector: str, url: str, timeout: float) -> int:
    """Start a rebuild through the projector's ops endpoint and follow it to the end."""
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        started = await http.post("/rebuild")
        if started.status_code == 409:
            print(f"a rebuild of {projector} is already running; following it")
        elif started.status_code != 202:
            print(f"{projector} refused the rebuild: {started.status_code} {started.text}", file=sys.stderr)
            return 1
        deadline, last = asyncio.get_running_loop().time() + timeout, ""
        while True:
            status = msgspec.json.decode((await http.get("/rebuild")).content, type=RebuildStatus)
            line = f"{status.state:<10} {status.position}/{status.target} into {status.generation}"
            if line != last:
                print(line, flush=True)
                last = line
            if status.state in ("done", "failed"):
                if status.error:
                    print(status.error, file=sys.stderr)
                return 0 if status.state == "done" else 1
            if asyncio.get_running_loop().time() > deadline:
                print(f"not done after {timeout:.0f}s; it goes on: GET {url}/rebuild", file=sys.stderr)
                return 1
            await asyncio.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(prog="just rebuild", description=__doc__)
    parser.add_argument("projector", choices=sorted(DEFAULT_PORTS))
    parser.add_argument("--url", help="the projector's ops address (default: from its HTTP_PORT setting)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to follow it (default 3600)")
    args = parser.parse_args()
    variable = f"PROJECTOR_{args.projector.upper().replace('-', '_')}_HTTP_PORT"
    url = args.url or f"http://127.0.0.1:{os.environ.get(variable, DEFAULT_PORTS[args.projector])}"
    sys.exit(asyncio.run(run(args.projector, url, args.timeout)))


if __name__ == "__main__":
    main()
