"""Command handlers: load the aggregates, decide, append the events, wait for them to be published."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from command_service.adapters.event_store import EventStore, Session
from command_service.adapters.relay import OutboxRelay
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
from shop.contracts.events import DomainEvent, Envelope, decode_data
from shop.contracts.replies import CommandResult
from shop.contracts.views import OrderItemView, OrderView, StatusChange
from shop.errors import Forbidden

EVOLVE = {"product": product.evolve, "order": order.evolve}


async def load(session: Session, stream_type: str, stream_id: str) -> tuple[object | None, int]:
    """The aggregate's state and version (0 if it has no events yet)."""
    state, version = None, 0
    for envelope in await session.load(stream_id):
        state, version = EVOLVE[stream_type](state, decode_data(envelope)), envelope.version
    return state, version


def require_admin(meta: CommandMeta, what: str) -> None:
    if not meta.actor.is_admin:
        raise Forbidden(f"{what} needs the admin role")


class CommandHandlers:
    def __init__(
        self,
        store: EventStore,
        relay: OutboxRelay,
        publish_wait: float,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store, self._relay, self._publish_wait, self._clock = store, relay, publish_wait, clock

    async def handle(self, request: CommandRequest) -> CommandResult:
        meta = request.meta
        match request.command:
            case CreateProduct() as command:
                require_admin(meta, "creating a product")
                return await self._decide(
                    meta, "product", str(uuid.uuid4()), lambda s: product.create_product(s, command)
                )
            case ChangePrice() as command:
                require_admin(meta, "changing a price")
                return await self._decide(
                    meta, "product", command.product_id, lambda s: product.change_price(s, command)
                )
            case Restock() as command:
                require_admin(meta, "restocking")
                return await self._decide(meta, "product", command.product_id, lambda s: product.restock(s, command))
            case AddReview() as command:
                return await self._decide(
                    meta, "product", command.product_id, lambda s: product.add_review(s, command, meta.actor.user_id)
                )
            case PlaceOrder() as command:
                return await self.place_order(meta, command)
            case PayOrder(order_id=order_id):
                return await self._decide(meta, "order", order_id, lambda s: order.pay_order(s, order_id, meta.actor))
            case ShipOrder(order_id=order_id):
                return await self._decide(meta, "order", order_id, lambda s: order.ship_order(s, order_id, meta.actor))
            case CancelOrder() as command:
                return await self.cancel_order(meta, command)

    async def _decide(
        self, meta: CommandMeta, stream_type: str, stream_id: str, decide: Callable[[object | None], list[DomainEvent]]
    ) -> CommandResult:
        """A command on one aggregate: its events are appended after the version it was decided on."""
        async with self._store.session([stream_id]) as session:
            state, version = await load(session, stream_type, stream_id)
            envelopes = self._envelopes(meta, stream_type, stream_id, version, decide(state))
            await session.append(envelopes)
        return CommandResult(id=stream_id, version=version + len(envelopes), position=await self._published(envelopes))

    async def place_order(self, meta: CommandMeta, command: PlaceOrder) -> CommandResult:
        order_id, now = str(uuid.uuid4()), self._clock()
        product_ids = sorted({line.product_id for line in command.items})
        async with self._store.session([order_id, *product_ids]) as session:
            loaded = {pid: await load(session, "product", pid) for pid in product_ids}
            placed, decreases = order.place_order(
                order_id, meta.actor.user_id, command, {pid: state for pid, (state, _) in loaded.items()}, now
            )
            envelopes = self._envelopes(meta, "order", order_id, 0, [placed])
            for pid, decrease in decreases.items():
                envelopes += self._envelopes(meta, "product", pid, loaded[pid][1], [decrease])
            await session.append(envelopes)
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
        return CommandResult(id=order_id, version=1, position=await self._published(envelopes), order=view)

    async def cancel_order(self, meta: CommandMeta, command: CancelOrder) -> CommandResult:
        # an order's items never change, so they tell which products to lock before deciding
        async with self._store.session([command.order_id]) as session:
            state, _ = await load(session, "order", command.order_id)
        product_ids = sorted({i.product_id for i in state.items}) if state else []
        async with self._store.session([command.order_id, *product_ids]) as session:
            state, version = await load(session, "order", command.order_id)
            cancelled, releases = order.cancel_order(state, command, meta.actor)
            envelopes = self._envelopes(meta, "order", command.order_id, version, [cancelled])
            for pid, release in releases.items():
                _, product_version = await load(session, "product", pid)
                envelopes += self._envelopes(meta, "product", pid, product_version, [release])
            await session.append(envelopes)
        return CommandResult(id=command.order_id, version=version + 1, position=await self._published(envelopes))

    def _envelopes(
        self, meta: CommandMeta, stream_type: str, stream_id: str, version: int, events: list[DomainEvent]
    ) -> list[Envelope]:
        now = self._clock()
        return [
            Envelope(
                event_id=str(uuid.uuid4()),
                type=type(event).__name__,
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

    async def _published(self, envelopes: list[Envelope]) -> int | None:
        if not envelopes:
            return None
        return await self._relay.published([e.event_id for e in envelopes], self._publish_wait)
