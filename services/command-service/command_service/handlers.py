"""Command handlers: load the aggregates, decide, append the events, wait for them to be published."""

import asyncio
import hashlib
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from command_service.adapters.event_store import EventStore, Remembered, Session
from command_service.adapters.relay import OutboxRelay
from command_service.aggregates import load, load_many
from command_service.domain import order, product
from shop.contracts.commands import (
    AddReview,
    CancelOrder,
    ChangePrice,
    CommandMeta,
    CommandRequest,
    CreateProduct,
    PayOrder,
    PlaceOrder,
    Restock,
    ShipOrder,
)
from shop.contracts.events import DomainEvent, Envelope, schema_version
from shop.contracts.replies import CommandResult, error_reply, reply_decoder, result_reply
from shop.contracts.views import OrderItemView, OrderView, StatusChange
from shop.errors import ConcurrencyError, Forbidden, ShopError


def require_admin(meta: CommandMeta, what: str) -> None:
    if not meta.actor.is_admin:
        raise Forbidden(f"{what} needs the admin role")


Decide = Callable[[Session], Awaitable[tuple[list[Envelope], CommandResult]]]
result_decoder = msgspec.json.Decoder(CommandResult)
REPLY_MARGIN = 0.2  # seconds a reply needs to reach the caller: a command commits this long before its deadline


class CommandHandlers:
    def __init__(
        self,
        store: EventStore,
        relay: OutboxRelay,
        publish_wait: float,
        idempotency_ttl: float,
        snapshot_every: int,
        conflict_attempts: int,
        request_timeout: float = 10.0,  # the deadline of a command sent without one
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._conflict_attempts, self._request_timeout = conflict_attempts, request_timeout
        self._store, self._relay, self._clock = store, relay, clock
        self._publish_wait, self._idempotency_ttl, self._snapshot_every = publish_wait, idempotency_ttl, snapshot_every

    async def _load(self, session: Session, stream_type: str, stream_id: str) -> tuple[object | None, int]:
        return await load(session, stream_type, stream_id, self._snapshot_every)

    async def handle(self, request: CommandRequest) -> CommandResult:
        meta = request.meta
        match request.command:
            case CreateProduct() as command:
                require_admin(meta, "creating a product")
                return await self._on_one(
                    request, "product", str(uuid.uuid4()), lambda s: product.create_product(s, command)
                )
            case ChangePrice() as command:
                require_admin(meta, "changing a price")
                return await self._on_one(
                    request, "product", command.product_id, lambda s: product.change_price(s, command)
                )
            case Restock() as command:
                require_admin(meta, "restocking")
                return await self._on_one(request, "product", command.product_id, lambda s: product.restock(s, command))
            case AddReview() as command:
                user_id = meta.actor.user_id
                return await self._on_one(
                    request, "product", command.product_id, lambda s: product.add_review(s, command, user_id)
                )
            case PlaceOrder() as command:
                return await self.place_order(request, command)
            case PayOrder(order_id=order_id):
                return await self._on_one(
                    request, "order", order_id, lambda s: order.pay_order(s, order_id, meta.actor)
                )
            case ShipOrder(order_id=order_id):
                return await self._on_one(
                    request, "order", order_id, lambda s: order.ship_order(s, order_id, meta.actor)
                )
            case CancelOrder() as command:
                return await self.cancel_order(request, command)

    def _commit_by(self, meta: CommandMeta) -> float:
        """The event-loop time by which the command commits or gives up: its deadline less the reply's way."""
        left = (meta.deadline - datetime.now(UTC)).total_seconds() if meta.deadline else self._request_timeout
        return asyncio.get_running_loop().time() + left - REPLY_MARGIN

    async def _write(self, request: CommandRequest, stream_ids: list[str], decide: Decide) -> CommandResult:
        """Decide and append in one transaction holding the streams' locks, retried a bounded number of
        times if a stream was appended to concurrently anyway (ConcurrencyError). With an
        Idempotency-Key the reply (a result or a final rejection) is stored in that same transaction,
        and a repeat (even a racing one, which waits for the key's lock) gets the stored reply and
        changes nothing. Every result, first or replayed, carries the JetStream sequence of its last
        event (of its streams' last event if it changed nothing)."""
        user_id, key = request.meta.actor.user_id, request.meta.idempotency_key
        commit_by = self._commit_by(request.meta)
        request_hash = hashlib.sha256(msgspec.json.encode(request.command)).digest()
        locks = [*stream_ids, f"idempotency:{user_id}:{key}"] if key else stream_ids
        expected: list[int] = []
        try:
            for attempt in range(1, self._conflict_attempts + 1):
                try:
                    async with self._store.session(locks, commit_by) as session:
                        stored = (
                            await session.remembered_reply(user_id, key, request_hash, self._idempotency_ttl)
                            if key
                            else None
                        )
                        if stored is None:
                            remembered = False
                            try:
                                envelopes, result = await decide(session)
                            except ShopError as exc:
                                if not exc.final:
                                    raise
                                stored = (error_reply(exc), None)
                            else:
                                reply = result_reply(result)
                                remember = Remembered(user_id, key, request_hash, reply) if key else None
                                expected = await session.append(envelopes, remember)  # with the reply: one trip
                                remembered = bool(expected)
                                self._relay.expect(expected)  # before the commit, which ends this block
                                last = max(expected) if expected else await session.last_position(stream_ids)
                                stored = (reply, last)
                            if key and not remembered:
                                await session.remember_reply(user_id, key, request_hash, *stored)
                    break
                except ConcurrencyError:
                    self._relay.forget(expected)
                    if attempt == self._conflict_attempts:
                        raise
                    await asyncio.sleep(random.uniform(0, 0.005 * 2**attempt))  # jitter: racers do not collide again
            reply, last = reply_decoder.decode(stored[0]), stored[1]
            reply.raise_for_error()
            wait = max(0.0, min(self._publish_wait, commit_by - asyncio.get_running_loop().time()))
            position = await self._relay.published(last, wait) if last is not None else 0
        finally:
            self._relay.forget(expected)
        return msgspec.structs.replace(result_decoder.decode(reply.result), position=position)

    async def _on_one(
        self,
        request: CommandRequest,
        stream_type: str,
        stream_id: str,
        decide: Callable[[object | None], list[DomainEvent]],
    ) -> CommandResult:
        """A command on one aggregate: its events are appended after the version it was decided on."""

        async def on_stream(session: Session) -> tuple[list[Envelope], CommandResult]:
            state, version = await self._load(session, stream_type, stream_id)
            envelopes = self._envelopes(request.meta, stream_type, stream_id, version, decide(state))
            return envelopes, CommandResult(id=stream_id, version=version + len(envelopes), position=None)

        return await self._write(request, [stream_id], on_stream)

    async def place_order(self, request: CommandRequest, command: PlaceOrder) -> CommandResult:
        order_id, now, meta = str(uuid.uuid4()), self._clock(), request.meta
        product_ids = sorted({line.product_id for line in command.items})

        async def on_streams(session: Session) -> tuple[list[Envelope], CommandResult]:
            loaded = await load_many(session, "product", product_ids, self._snapshot_every)
            placed, decreases = order.place_order(
                order_id, meta.actor.user_id, command, {pid: state for pid, (state, _) in loaded.items()}, now
            )
            envelopes = self._envelopes(meta, "order", order_id, 0, [placed])
            for pid, decrease in decreases.items():
                envelopes += self._envelopes(meta, "product", pid, loaded[pid][1], [decrease])
            view = OrderView(
                id=order_id,
                user_id=placed.user_id,
                status="placed",
                items=tuple(OrderItemView(**msgspec.structs.asdict(i)) for i in placed.items),
                total=placed.total,
                placed_at=placed.placed_at,
                history=(StatusChange(status="placed", at=now),),
                version=1,
            )
            return envelopes, CommandResult(id=order_id, version=1, position=None, order=view)

        return await self._write(request, [order_id, *product_ids], on_streams)

    async def cancel_order(self, request: CommandRequest, command: CancelOrder) -> CommandResult:
        # an order's items never change, so they tell which products to lock before deciding
        async with self._store.session([command.order_id], self._commit_by(request.meta)) as session:
            state, _ = await self._load(session, "order", command.order_id)
        product_ids = sorted({i.product_id for i in state.items}) if state else []

        async def on_streams(session: Session) -> tuple[list[Envelope], CommandResult]:
            state, version = await self._load(session, "order", command.order_id)
            cancelled, releases = order.cancel_order(state, command, request.meta.actor)
            envelopes = self._envelopes(request.meta, "order", command.order_id, version, [cancelled])
            products = await load_many(session, "product", list(releases), self._snapshot_every)
            for pid, release in releases.items():
                envelopes += self._envelopes(request.meta, "product", pid, products[pid][1], [release])
            return envelopes, CommandResult(id=command.order_id, version=version + 1, position=None)

        return await self._write(request, [command.order_id, *product_ids], on_streams)

    def _envelopes(
        self, meta: CommandMeta, stream_type: str, stream_id: str, version: int, events: list[DomainEvent]
    ) -> list[Envelope]:
        now = self._clock()
        return [
            Envelope(
                event_id=str(uuid.uuid4()),
                type=type(event).__name__,
                schema_version=schema_version(type(event).__name__),
                stream_id=stream_id,
                stream_type=stream_type,
                version=version + i,
                occurred_at=now,
                correlation_id=meta.correlation_id,
                causation_id=meta.idempotency_key,
                data=msgspec.Raw(msgspec.json.encode(event)),
            )
            for i, event in enumerate(events, 1)
        ]
