"""The consume loop every projector runs: a durable pull consumer on EVENTS, events applied in
stream order, poison events to DLQ, progress announced on `proj.<name>.position`."""

import asyncio
import contextlib
from typing import Protocol

import msgspec
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from shop.contracts.events import DomainEvent, Envelope, decode_data, envelope_decoder
from shop.messaging import EVENTS_STREAM
from shop.metrics import EVENTS_FAILED, EVENTS_HANDLED, PROJECTION_LAG, PROJECTION_POSITION

log = structlog.get_logger()


class Projection(Protocol):
    async def apply(self, envelope: Envelope, event: DomainEvent, position: int) -> None:
        """Apply one event (at stream sequence `position`) idempotently: a replay must change nothing."""

    async def flush(self) -> None:
        """Make everything applied so far visible to readers."""


class Position(msgspec.Struct, frozen=True, kw_only=True):
    projector: str
    position: int


position_decoder = msgspec.json.Decoder(Position)


def position_subject(projector: str) -> str:
    return f"proj.{projector}.position"


class Projector:
    def __init__(
        self,
        nc: NATS,
        name: str,
        projection: Projection,
        *,
        batch: int = 100,
        max_attempts: int = 5,
        retry_delay: float = 0.2,
        announce: bool = True,  # publish progress on proj.<name>.position (a rebuild's replay does not)
        dead_letters: str | None = None,  # the DLQ subject, dlq.<name> unless given
    ) -> None:
        self._nc, self._js = nc, nc.jetstream()
        self._announce, self._dead_letters = announce, dead_letters or f"dlq.{name}"
        self.name = name
        self._projection = projection
        self._batch, self._max_attempts, self._retry_delay = batch, max_attempts, retry_delay
        self._stopping = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.position = 0

    async def start(self) -> None:
        config = ConsumerConfig(
            durable_name=self.name,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=30,
            max_ack_pending=1000,
        )
        self._sub = await self._js.pull_subscribe("evt.>", durable=self.name, stream=EVENTS_STREAM, config=config)
        info = await self._js.consumer_info(EVENTS_STREAM, self.name)
        self.position = info.ack_floor.stream_seq if info.ack_floor else 0
        self._task = asyncio.create_task(self._run(), name=f"projector-{self.name}")

    async def consumer_ready(self) -> None:
        await self._js.consumer_info(EVENTS_STREAM, self.name)
        if self._task is None or self._task.done():
            raise RuntimeError("consume loop is not running")

    async def stop(self, timeout: float) -> None:
        """Finish the batch in hand, then stop fetching."""
        self._stopping.set()
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=timeout)
            self._task.cancel()
        await self._sub.unsubscribe()  # draining a pull subscription would wait for its drain timeout

    async def _run(self) -> None:
        delay = self._retry_delay
        while not self._stopping.is_set():
            try:
                msgs = await self._sub.fetch(self._batch, timeout=1)
            except TimeoutError:  # nothing new (nats-py raises its own and asyncio's)
                continue
            except Exception as exc:  # NATS reconnecting: back off and try again
                log.warning("fetch_failed", error=f"{type(exc).__name__}: {exc}", retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            if not msgs:
                continue
            try:
                await self._apply_batch(msgs)
                delay = self._retry_delay
            except Exception:  # the store or NATS failed beyond the per-event retries: all of it again
                log.exception("batch_failed", retry_in=delay)
                for msg in msgs:
                    with contextlib.suppress(Exception):  # some may be acknowledged already
                        await msg.nak()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _apply_batch(self, msgs: list[Msg]) -> None:
        applied = [await self._handle(msg) for msg in msgs]
        await self._projection.flush()
        for msg, ok in zip(msgs, applied, strict=True):
            await (msg.ack() if ok else msg.term())
        await self._nc.flush()
        last = msgs[-1].metadata
        self.position = last.sequence.stream
        PROJECTION_POSITION.labels(projector=self.name).set(self.position)
        PROJECTION_LAG.labels(projector=self.name).set(last.num_pending)
        if self._announce:
            await self._nc.publish(
                position_subject(self.name), msgspec.json.encode(Position(projector=self.name, position=self.position))
            )

    async def _handle(self, msg: Msg) -> bool:
        """Apply one message, retrying with backoff; False once it has gone to the DLQ."""
        try:
            envelope = envelope_decoder.decode(msg.data)
            event = decode_data(envelope)
        except Exception as exc:  # whatever cannot be decoded never will be: a poison event
            await self._dead_letter(msg, f"undecodable event: {type(exc).__name__}: {exc}")
            return False
        structlog.contextvars.bind_contextvars(event_id=envelope.event_id, correlation_id=envelope.correlation_id)
        try:
            for attempt in range(1, self._max_attempts + 1):
                try:
                    await self._projection.apply(envelope, event, msg.metadata.sequence.stream)
                    EVENTS_HANDLED.labels(projector=self.name, type=envelope.type).inc()
                    return True
                except Exception as exc:
                    EVENTS_FAILED.labels(projector=self.name).inc()
                    log.warning("apply_failed", attempt=attempt, error=f"{type(exc).__name__}: {exc}")
                    if attempt == self._max_attempts:
                        await self._dead_letter(msg, f"{type(exc).__name__}: {exc}")
                        return False
                    await msg.in_progress()
                    await asyncio.sleep(self._retry_delay * 2 ** (attempt - 1))
            return False
        finally:
            structlog.contextvars.unbind_contextvars("event_id", "correlation_id")

    async def _dead_letter(self, msg: Msg, reason: str) -> None:
        seq = msg.metadata.sequence.stream
        log.error("event_dead_lettered", stream_seq=seq, reason=reason)
        await self._js.publish(
            self._dead_letters,
            msg.data,
            headers={"Nats-Msg-Id": f"{self.name}:{seq}", "Shop-Error": reason[:1000], "Shop-Stream-Seq": str(seq)},
        )
