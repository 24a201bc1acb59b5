"""Command handlers: load the aggregates, decide, append the events, wait for them to be published."""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

from command_service.adapters.event_store import EventStore, Session
from command_service.adapters.relay import OutboxRelay
from command_service.domain import order, product
from shop.contracts.commands import CommandMeta, CommandRequest, CreateProduct, PlaceOrder
from shop.contracts.events import DomainEvent, Envelope, decode_data
from shop.contracts.replies import CommandResult
from shop.contracts.views import OrderItemView, OrderView, StatusChange
from shop.errors import Forbidden


def new_envelope(
    meta: CommandMeta, stream_type: str, stream_id: str, version: int, event: DomainEvent, now: datetime
) -> Envelope:
    return Envelope(
        event_id=str(uuid.uuid4()),
        type=type(event).__name__,
        stream_id=stream_id,
        stream_type=stream_type,
        version=version,
        occurred_at=now,
        correlation_id=meta.correlation_id,
        causation_id=meta.idempotency_key,
        data=msgspec.Raw(msgspec.json.encode(event)),
    )


async def load_product(session: Session, product_id: str) -> tuple[product.Product | None, int]:
    state, version = None, 0
    for envelope in await session.load(product_id):
        state, version = product.evolve(state, decode_data(envelope)), envelope.version
    return state, version


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
        match request.command:
            case CreateProduct() as command:
                return await self.create_product(request.meta, command)
            case PlaceOrder() as command:
                return await self.place_order(request.meta, command)

    async def create_product(self, meta: CommandMeta, command: CreateProduct) -> CommandResult:
        if not meta.actor.is_admin:
            raise Forbidden("creating a product needs the admin role")
        product_id, now = str(uuid.uuid4()), self._clock()
        async with self._store.session([product_id]) as session:
            state, version = await load_product(session, product_id)
            events = product.create_product(state, command)
            envelopes = [
                new_envelope(meta, "product", product_id, version + i, e, now) for i, e in enumerate(events, 1)
            ]
            await session.append(envelopes)
        position = await self._relay.published([e.event_id for e in envelopes], self._publish_wait)
        return CommandResult(id=product_id, version=envelopes[-1].version, position=position)

    async def place_order(self, meta: CommandMeta, command: PlaceOrder) -> CommandResult:
        order_id, now = str(uuid.uuid4()), self._clock()
        product_ids = sorted({line.product_id for line in command.items})
        async with self._store.session([order_id, *product_ids]) as session:
            loaded = {pid: await load_product(session, pid) for pid in product_ids}
            placed, decreases = order.place_order(
                order_id, meta.actor.user_id, command, {pid: s for pid, (s, _) in loaded.items()}, now
            )
            envelopes = [new_envelope(meta, "order", order_id, 1, placed, now)] + [
                new_envelope(meta, "product", pid, loaded[pid][1] + 1, event, now) for pid, event in decreases.items()
            ]
            await session.append(envelopes)
        position = await self._relay.published([e.event_id for e in envelopes], self._publish_wait)
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
        return CommandResult(id=order_id, version=1, position=position, order=view)
