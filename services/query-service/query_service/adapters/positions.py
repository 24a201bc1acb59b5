"""How far each projection has got: its announcements on `proj.*.position`, and, when a read has
waited past those, its checkpoint read from its own store by one shared watcher per process."""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from shop.messaging import EVENTS_STREAM
from shop.projection.engine import Position, Progress, position_decoder, position_subject
from shop.read_models import PROJECTORS

log = structlog.get_logger()

ReadCheckpoint = Callable[[], Awaitable[list[Position]]]  # each partition's checkpoint, as the store has it
MakeSearchable = Callable[[], Awaitable[None]]  # refresh what the projection wrote


class ProjectionPositions:
    def __init__(
        self,
        nc: NATS,
        checkpoints: dict[str, ReadCheckpoint],
        refreshers: dict[str, MakeSearchable],
        partitions: int = 1,  # of each projector
        poll_interval: float = 0.2,
    ) -> None:
        self._nc, self._js = nc, nc.jetstream()
        self._checkpoints, self._refreshers, self._poll_interval = checkpoints, refreshers, poll_interval
        self._progress = {name: Progress(name, partitions) for name in PROJECTORS}
        self._advanced = asyncio.Event()
        self._waiting: dict[str, int] = dict.fromkeys(PROJECTORS, 0)
        self._needs_search: dict[str, int] = dict.fromkeys(PROJECTORS, 0)
        self._stream_end = 0  # the last sequence of the stream, as last seen
        self._next_look: asyncio.Task[int | None] | None = None  # shared by the reads that came before it starts
        self._looking = asyncio.Lock()
        self._watcher: asyncio.Task | None = None
        # a list or search waits for a refresh of what its projection has applied: the watcher does it at once
        self._refresh_now = asyncio.Event()

    async def start(self) -> None:
        await self._nc.subscribe(position_subject("*"), cb=self._on_position)
        for name in PROJECTORS:
            await self._read_store(name, searchable=False)
        self._watcher = asyncio.create_task(self._watch(), name="position-watcher")

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher

    def current(self, projector: str, searchable: bool = False) -> int:
        progress = self._progress[projector]
        return progress.searchable if searchable else progress.position

    def parked_at(self, projector: str, aggregate: str) -> int | None:
        """The stream sequence from which `aggregate`'s events are parked in the projection, if they are."""
        return self._progress[projector].parked_at(aggregate)

    async def wait_for(self, projector: str, position: int, timeout: float, searchable: bool = False) -> bool:
        """True once `projector` has passed `position` (and refreshed past it, if `searchable`); False
        if `timeout` ran out, or at once if the stream has no such position."""
        if self.current(projector, searchable) >= position:
            return True
        if position > await self._end_of_stream(position):
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._waiting[projector] += 1
        self._needs_search[projector] += searchable
        try:
            while self.current(projector, searchable) < position:
                if searchable and self.current(projector) >= position:
                    self._refresh_now.set()
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._advanced.wait(), remaining)
            return True
        finally:
            self._waiting[projector] -= 1
            self._needs_search[projector] -= searchable

    async def _end_of_stream(self, wanted: int) -> int:
        """The stream's last sequence, asked again only when `wanted` lies beyond what was last seen, by a look
        that starts after this read came in (an earlier one may predate the caller's write). Reads that come in
        while a look is under way share the next one: one look at a time, whatever the number of reads.
        NATS away: `wanted`, so the read waits rather than calling a real position impossible."""
        if wanted <= self._stream_end:
            return self._stream_end
        if self._next_look is None:
            self._next_look = asyncio.create_task(self._look_at_the_end())
        end = await asyncio.shield(self._next_look)
        return wanted if end is None else end

    async def _look_at_the_end(self) -> int | None:
        async with self._looking:
            self._next_look = None  # this look starts now: reads from here on wait for the next
            try:
                last_seq = (await self._js.stream_info(EVENTS_STREAM)).state.last_seq
            except Exception:
                return None
            self._stream_end = max(self._stream_end, last_seq)
            return self._stream_end

    async def _watch(self) -> None:
        """Refreshes at once a projection whose applied writes a list or search waits for (the projector
        itself refreshes only now and then), and reads the stores of projections that reads wait on: a
        missed announcement costs at most one poll interval. One look at a time, whatever the number
        of reads: they share it."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._refresh_now.wait(), self._poll_interval)
            if self._refresh_now.is_set():
                self._refresh_now.clear()
                for name in self._refreshers:
                    if self._needs_search[name] and self.current(name, True) < self.current(name):
                        await self._refresh(name)
                continue
            for name in PROJECTORS:
                if self._waiting[name]:
                    await self._read_store(name, searchable=self._needs_search[name] > 0)

    async def _refresh(self, projector: str) -> None:
        """Everything announced was written before it was announced: a refresh started after it covers it."""
        applied = self._progress[projector].partitions()
        try:
            await self._refreshers[projector]()
        except Exception as exc:  # the store is away: the reads wait, and the next look tries again
            log.warning("refresh_failed", projector=projector, error=f"{type(exc).__name__}: {exc}")
            return
        self._set([msgspec.structs.replace(p, searchable=p.position) for p in applied], exact=False)

    async def _read_store(self, projector: str, searchable: bool) -> None:
        try:
            stored = await self._checkpoints[projector]()
            if projector in self._refreshers:  # what the store holds is searchable once refreshed
                known = self._progress[projector].partitions()
                if searchable and any(k.searchable < s.position for k, s in zip(known, stored, strict=True)):
                    await self._refreshers[projector]()
                else:
                    stored = [
                        msgspec.structs.replace(s, searchable=min(k.searchable, s.position))
                        for k, s in zip(known, stored, strict=True)
                    ]
        except Exception as exc:  # the store is away: announcements still count
            log.warning("checkpoint_unreadable", projector=projector, error=f"{type(exc).__name__}: {exc}")
            return
        self._set(stored, exact=True)

    async def _on_position(self, msg: Msg) -> None:
        try:
            announced = position_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            return
        if announced.projector in self._progress:
            self._set([announced], exact=False)

    def _set(self, news: list[Position], exact: bool) -> None:
        """An announcement only moves a partition forward; what the store says is the truth (a rebuilt or
        reset store may be behind)."""
        progress = self._progress[news[0].projector]
        old = (progress.position, progress.searchable)
        for new in news:
            progress.update(new, exact)
        if (progress.position, progress.searchable) != old:
            self._advanced.set()
            self._advanced = asyncio.Event()
