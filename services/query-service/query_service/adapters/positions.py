"""How far each projection has got: announcements on `proj.*.position`, and the durable consumer's
ack floor in JetStream as the fallback when an announcement was missed."""

import asyncio

import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from shop.messaging import EVENTS_STREAM
from shop.projection import position_decoder, position_subject
from shop.read_models import PROJECTORS


class ProjectionPositions:
    def __init__(self, nc: NATS, poll_interval: float = 0.25) -> None:
        self._nc, self._js = nc, nc.jetstream()
        self._poll_interval = poll_interval
        self._positions = dict.fromkeys(PROJECTORS, 0)
        self._advanced = asyncio.Event()

    async def start(self) -> None:
        await self._nc.subscribe(position_subject("*"), cb=self._on_position)
        for name in PROJECTORS:
            await self.refresh(name)

    def current(self, projector: str) -> int:
        return self._positions[projector]

    async def refresh(self, projector: str) -> None:
        try:
            info = await self._js.consumer_info(EVENTS_STREAM, projector)
        except Exception:  # the projector has not created its consumer yet, or NATS is away
            return
        self._advance(projector, info.ack_floor.stream_seq if info.ack_floor else 0)

    async def wait_for(self, projector: str, position: int, timeout: float) -> bool:
        """True once `projector` has applied everything up to `position`, False if `timeout` ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._positions[projector] < position:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            advanced = self._advanced
            try:
                await asyncio.wait_for(advanced.wait(), min(remaining, self._poll_interval))
            except TimeoutError:
                await self.refresh(projector)
        return True

    async def _on_position(self, msg: Msg) -> None:
        try:
            announced = position_decoder.decode(msg.data)
        except msgspec.MsgspecError:
            return
        if announced.projector in self._positions:
            self._advance(announced.projector, announced.position)

    def _advance(self, projector: str, position: int) -> None:
        if position > self._positions[projector]:
            self._positions[projector] = position
            self._advanced.set()
            self._advanced = asyncio.Event()
