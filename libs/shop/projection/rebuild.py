"""Rebuild a read model with no downtime (DESIGN §5.7): `just rebuild <projector>`.

The projector replays the whole EVENTS stream into a new generation of its read model (a new
OpenSearch index tuned for bulk writes, a new Redis key prefix) with a second Projector, while the
live one keeps serving and being updated. Once the replay has reached the live projection's
checkpoint, the live projection is held between two batches, readers are switched (alias swap,
pointer key) and the live projection goes on in the new generation from its checkpoint: no catch-up
after the switch. Then the old generation is deleted.

The rebuild's state is kept in the read model's store: a process that dies or is stopped at any
step finishes the rebuild when it starts again, and the active generation is never deleted.

With several processes sharing the projector's partitions, the one holding partition 0 runs the
rebuild and each process replays its own partitions (the others through `Owner._help`, shop.projection.app).
Once its own have caught up, the rebuild asks for every partition (`exclusive`): the others give theirs
up, it goes on from the checkpoints they reached, and switches holding the whole live projection."""

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import httpx
import msgspec
import structlog
from litestar import MediaType, Response, delete, get, post
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError
from tqdm import tqdm

from shop.messaging import EVENTS_STREAM
from shop.ops import Check
from shop.projection.dlq import dead_letters
from shop.projection.engine import Projector, Store
from shop.projection.lease import LeaseLost
from shop.read_models import PROJECTORS, leader_url, ops_headers

log = structlog.get_logger()

# Tests stop the process at a rebuild step, as a crash or an operator would, or hold it there:
# SHOP_FAILPOINTS=step=kill|term|pause,...
FAILPOINTS = dict(point.split("=", 1) for point in os.environ.get("SHOP_FAILPOINTS", "").split(",") if point)


async def failpoint(step: str) -> None:
    match FAILPOINTS.get(step):
        case "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        case "term":
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(60)  # the graceful stop cancels the rebuild here
        case "pause":
            await asyncio.sleep(3600)


class RebuildState(msgspec.Struct, kw_only=True):
    """What a rebuild has done, kept in the read model's store."""

    generation: str  # being replayed into
    previous: str  # the active one when the rebuild started
    phase: str = "replaying"  # replaying | switched
    started_at: datetime


class ReadModel(Protocol):
    checks: dict[str, Check]  # readiness checks of its store

    async def active(self) -> Store:
        """The generation readers use (the first one is made here)."""

    async def active_name(self) -> str: ...

    async def next_generation(self) -> str:
        """The name of a generation that does not exist yet."""

    async def generation(self, name: str) -> Store:
        """The generation `name` (made empty if missing), set up for a bulk replay."""

    async def prepare(self, store: Store) -> None:
        """Ready a replayed generation for readers (settings, refresh)."""

    async def activate(self, store: Store) -> None:
        """Make `store` the generation readers use, in one step."""

    async def retire(self, name: str) -> None:
        """Delete a generation; refuses the active one."""

    async def rebuild_state(self) -> RebuildState | None: ...

    async def save_rebuild_state(self, state: RebuildState | None) -> None: ...


class RebuildStatus(msgspec.Struct, kw_only=True):
    projector: str
    state: str = "idle"  # idle | replaying | switching | done | failed | cancelled | paused | standby
    generation: str | None = None
    previous: str | None = None
    position: int = 0  # events done: the replay's checkpoint
    target: int = 0  # events in the stream
    rate: float = 0.0  # events/s over the last few seconds
    eta_seconds: float | None = None
    failure: str | None = None  # a transient failure the replay is retrying
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = None


class Rebuild:
    def __init__(
        self,
        nc: NATS,
        name: str,
        read_model: ReadModel,
        live: Projector,
        poll: float = 0.2,
        # raises LeaseLost once this process may no longer write the given partitions
        fence: Callable[[frozenset[int]], None] = lambda partitions: None,
        consumer: str | None = None,  # the replay's durable consumer: `<name>-rebuild` unless given
    ) -> None:
        self._nc, self._js, self._name, self._read_model, self._live = nc, nc.jetstream(), name, read_model, live
        self._poll, self._fence = poll, fence
        self._consumer = consumer or f"{name}-rebuild"
        self.status = RebuildStatus(projector=name)
        self._task: asyncio.Task | None = None
        # asks for every partition (the other processes give theirs up): for the switch, or to cancel
        self.exclusive = False

    def _lead(self) -> None:
        """Before a write of the rebuild's own: LeaseLost unless this process still holds partition 0."""
        self._fence(frozenset({0}))

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self, state: RebuildState | None = None) -> None:
        """A new rebuild, or the one `state` describes."""
        self.status = RebuildStatus(projector=self._name, state="replaying", started_at=datetime.now(UTC))
        self._task = asyncio.create_task(self._run(state), name=f"rebuild-{self._name}")

    async def resume(self) -> None:
        """Finish a rebuild that a stopped or dead process left."""
        state = await self._read_model.rebuild_state()
        if state is not None:
            log.info("rebuild_resumed", projector=self._name, generation=state.generation, phase=state.phase)
            self.start(state)

    async def cancel(self) -> bool:
        """Stop a rebuild and throw its generation away, unless readers already use it (then it is
        finished instead); False if there was none."""
        started = time.monotonic()
        await self.stop()
        try:
            state = await self._read_model.rebuild_state()
            if state is None:
                return False
            if await self._read_model.active_name() == state.generation:
                self.start(state)
                return True
            await self._alone()  # no other process replays into the generation any more
            self._lead()
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(EVENTS_STREAM, self._consumer)
            await self._read_model.retire(state.generation)
            await self._read_model.save_rebuild_state(None)
        except Exception as exc:  # stopped, not thrown away: the stored state lets a DELETE again finish it
            self.status.state, self.status.error = "failed", f"cancelling: {type(exc).__name__}: {exc}"
            log.exception("rebuild_cancel_failed", projector=self._name)
            raise
        finally:
            self.exclusive = False
        self.status.state, self.status.finished_at = "cancelled", datetime.now(UTC)
        seconds = round(time.monotonic() - started, 3)
        log.info("rebuild_cancelled", projector=self._name, generation=state.generation, seconds=seconds)
        return True

    async def _alone(self, timeout: float = 30) -> None:
        """Take every partition: the processes replaying theirs into the new generation stop."""
        self.exclusive = True
        deadline = time.monotonic() + timeout
        while not self._live.complete:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the other processes did not give their partitions up in {timeout:.0f}s")
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        """Cancel the rebuild and wait until it has ended. The cancel is repeated: on Python 3.11 one that
        lands as a NATS request completes can be swallowed (asyncio.wait_for), and the rebuild would go on.
        A cancellation of the caller itself is raised by asyncio.wait, as it should be."""
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=1)
        if not task.cancelled():
            task.exception()  # (retrieved: _run catches everything but its cancellation)

    async def _run(self, state: RebuildState | None) -> None:
        status = self.status
        try:
            if state is None:
                stream = (await self._js.stream_info(EVENTS_STREAM)).state
                if stream.first_seq > 1 and stream.messages:
                    raise RuntimeError(f"EVENTS starts at #{stream.first_seq}, not #1: a replay would be incomplete")
                name, previous = await self._read_model.next_generation(), self._live.store.name
                state = RebuildState(generation=name, previous=previous, started_at=status.started_at)
                self._lead()
                await self._read_model.save_rebuild_state(state)  # before the generation exists: no orphan
                log.info("rebuild_started", projector=self._name, generation=state.generation)
            status.generation, status.previous = state.generation, state.previous
            if state.phase == "replaying" and await self._read_model.active_name() != state.generation:
                await self._replay_and_switch(state)
            state.phase = "switched"
            self._lead()
            await self._read_model.save_rebuild_state(state)
            await failpoint("rebuild.switched")
            with contextlib.suppress(NotFoundError):
                await self._js.delete_consumer(EVENTS_STREAM, self._consumer)
            if state.previous != state.generation:
                self._lead()
                await self._read_model.retire(state.previous)
            await self._read_model.save_rebuild_state(None)
            status.state = "done"
            log.info("rebuild_done", projector=self._name, generation=state.generation, position=status.position)
        except asyncio.CancelledError:
            log.info("rebuild_paused", projector=self._name, generation=status.generation)  # resumed on start
            raise
        except LeaseLost:  # the process that takes the lease resumes it
            status.state = "paused"
            log.info("rebuild_paused", projector=self._name, generation=status.generation, why="lease lost")
        except Exception as exc:
            status.state, status.error = "failed", f"{type(exc).__name__}: {exc}"
            log.exception("rebuild_failed", projector=self._name)
        finally:
            status.finished_at = datetime.now(UTC)
            self.exclusive = False

    async def _replay_and_switch(self, state: RebuildState) -> None:
        status = self.status
        creating = asyncio.ensure_future(self._read_model.generation(state.generation))
        try:
            store = await asyncio.shield(creating)
        except asyncio.CancelledError:  # a cancelled HTTP call may still make the index: let it finish first,
            await creating  # so that whoever cancelled (DELETE /rebuild) deletes a generation that exists
            raise
        replay = await replay_projector(
            self._nc, self._name, store, self._consumer, self._live.partitions, self._live.owned, self._fence
        )
        await replay.start()
        samples: list[tuple[float, int]] = []
        try:
            prepared = False
            while True:
                status.position, status.failure = replay.position, replay.failure
                status.target = max((await self._js.stream_info(EVENTS_STREAM)).state.last_seq, status.position)
                samples = [*samples[-25:], (time.monotonic(), status.position)]
                (t0, p0), (t1, p1) = samples[0], samples[-1]
                status.rate = (p1 - p0) / (t1 - t0) if t1 > t0 else 0.0
                status.eta_seconds = (status.target - status.position) / status.rate if status.rate else None
                if replay.owned != self._live.owned:  # partitions gained or given up
                    await replay.reassign(self._live.owned)
                caught_up = await replay.caught_up(self._live.frontier)
                if replay.position > 0:  # (after caught_up: a short history may be replayed in one batch)
                    await failpoint("rebuild.replaying")
                if caught_up:  # its partitions: the others give theirs up, and this one finishes them
                    self.exclusive = True
                if caught_up and self._live.complete and replay.complete:
                    if not prepared:  # the slow part, while the live projection goes on
                        async with replay.hold():
                            await self._read_model.prepare(store)
                        prepared = True
                    if await self._switch(replay, store):
                        return
                await asyncio.sleep(self._poll)
        finally:
            await replay.stop()

    async def _switch(self, replay: Projector, store: Store) -> bool:
        """With the live projection held: once the replay has reached it (a few batches at most), readers
        and the live projection move to the new generation. False if the replay fell behind again."""
        async with self._live.hold():
            deadline = time.monotonic() + 5
            while not await replay.caught_up(self._live.frontier):
                if time.monotonic() > deadline:
                    return False
                await asyncio.sleep(0.01)
            self.status.state = "switching"
            await replay.stop()
            self._lead()
            await self._read_model.activate(store)
            await failpoint("rebuild.switching")
            await self._live.switch(store)
            self.status.position = replay.position
            log.info("rebuild_switched", projector=self._name, generation=store.name, position=replay.position)
            return True


async def replay_projector(
    nc: NATS,
    name: str,
    store: Store,
    consumer: str,
    partitions: int,
    owned: frozenset[int],
    fence: Callable[[frozenset[int]], None],
) -> Projector:
    """A replay of projector `name`'s partitions `owned` into a new generation: bulk batches, no refresh, no
    announcement; poison dead-lettered under the live name, except what is in the DLQ already. Each
    partition's checkpoint is stored, for the live projection after the switch. No fencing tokens (writes
    to a new generation are idempotent): the lease check before each write (`fence`) fences it."""
    parked = frozenset(letter.stream_seq for letter in await dead_letters(nc, name))
    return Projector(
        nc,
        f"{name}-rebuild",
        store,
        consumer=consumer,
        dead_letters=name,
        announce=False,
        skip_letters=parked,
        refresh=False,
        filtered=True,
        batch=2000,  # fewer, larger _bulks and Lua calls (a Lua call then holds Redis ~30 ms)
        partitions=partitions,
        owned=owned,
        fence=fence,
    )


def not_here() -> Response[RebuildStatus]:
    """What the rebuild endpoints answer in a process that does not project (starting, or a standby)."""
    why = "rebuilds run in the process that projects partition 0 (GET /lease on each); this one does not"
    return Response(RebuildStatus(projector="", state="standby", error=why), status_code=503)


def rebuild_handlers(rebuilds: list[Rebuild], guards: list) -> list:
    """POST /rebuild starts one (409 while one runs), GET /rebuild tells how it goes, DELETE /rebuild
    stops it and throws its generation away; `guards` (the ops token) keep POST and DELETE."""

    @post("/rebuild", media_type=MediaType.JSON, include_in_schema=False, guards=guards)
    async def start_rebuild() -> Response[RebuildStatus]:
        if not rebuilds:
            return not_here()
        if rebuilds[0].running:
            return Response(rebuilds[0].status, status_code=409)
        rebuilds[0].start()
        return Response(rebuilds[0].status, status_code=202)

    @get("/rebuild", media_type=MediaType.JSON, include_in_schema=False)
    async def rebuild_status() -> Response[RebuildStatus]:
        if not rebuilds:
            return not_here()
        return Response(rebuilds[0].status)

    @delete("/rebuild", media_type=MediaType.JSON, include_in_schema=False, status_code=200, guards=guards)
    async def cancel_rebuild() -> Response[RebuildStatus]:
        if not rebuilds:
            return not_here()
        try:
            cancelled = await rebuilds[0].cancel()
        except Exception:  # a store away: the status says what failed; the request may be repeated
            return Response(rebuilds[0].status, status_code=503)
        return Response(rebuilds[0].status, status_code=200 if cancelled else 404)

    return [start_rebuild, rebuild_status, cancel_rebuild]


async def run(projector: str, url: str | None, timeout: float) -> int:
    """Start a rebuild through the projector's ops endpoint (of the process that projects, unless `url`
    says) and follow it to the end with a progress bar."""
    url = url or await leader_url(projector)
    async with httpx.AsyncClient(base_url=url, timeout=10, headers=ops_headers()) as http:
        started = await http.post("/rebuild")
        if started.status_code == 409:
            print(f"a rebuild of {projector} is already running; following it")
        elif started.status_code != 202:
            print(f"{projector} refused the rebuild: {started.status_code} {started.text}", file=sys.stderr)
            return 1
        deadline = asyncio.get_running_loop().time() + timeout
        with tqdm(desc=f"rebuild {projector}", unit="event", unit_scale=True, dynamic_ncols=True) as bar:
            while True:
                status = msgspec.json.decode((await http.get("/rebuild")).content, type=RebuildStatus)
                bar.total = status.target
                bar.update(status.position - bar.n)
                bar.set_postfix_str(f"{status.state} {status.generation or ''} {status.failure or ''}".strip())
                if status.state in ("done", "failed"):
                    break
                if asyncio.get_running_loop().time() > deadline:
                    print(f"not done after {timeout:.0f}s; it goes on: GET {url}/rebuild", file=sys.stderr)
                    return 1
                await asyncio.sleep(0.5)
        if status.error:
            print(status.error, file=sys.stderr)
            return 1
        print(f"{projector}: {status.position} events replayed into {status.generation}; {status.previous} deleted")
        return 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="just rebuild", description=__doc__)
    parser.add_argument("projector", choices=sorted(PROJECTORS))
    parser.add_argument("--url", help="the projector's ops address (default: its process that leads)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds to follow it (default 3600)")
    args = parser.parse_args()
    sys.exit(asyncio.run(run(args.projector, args.url, args.timeout)))


if __name__ == "__main__":
    main()
