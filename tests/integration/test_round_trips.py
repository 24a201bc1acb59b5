"""What a PlaceOrder costs in PostgreSQL round trips: every statement its command sends on its pool,
transaction control and the pool's reset on release included (issue 12). A change that adds one fails here."""

import uuid

import asyncpg
import pytest

from command_service.adapters.database import create_pool, migrate
from command_service.adapters.event_store import EventStore
from command_service.adapters.relay import OutboxRelay
from command_service.handlers import CommandHandlers
from shop.contracts.commands import CreateProduct, OrderLine, PlaceOrder, Restock
from tests.integration.test_write_path_edges import USER, request


@pytest.fixture
async def counted(database_url, publisher):
    """Command handlers whose pool (one connection) records each statement it sends; the relay has its own."""
    statements: list[str] = []
    commands, relays = await create_pool(database_url, 1), await create_pool(database_url, 2)
    await migrate(commands)
    async with commands.acquire() as connection:
        connection.add_query_logger(lambda logged: statements.append(logged.query))
    relay = OutboxRelay(relays, publisher, interval=0.05)
    relay.start()

    def handlers(snapshot_every: int = 10) -> CommandHandlers:
        return CommandHandlers(EventStore(commands), relay, 5, 60, snapshot_every, conflict_attempts=3)

    yield handlers, statements
    await relay.stop()
    await commands.close()
    await relays.close()


@pytest.mark.parametrize(("key", "most"), [(None, 4), ("with-key", 5)])  # before issue 12: 13 and 16
async def test_a_two_product_order_costs_few_round_trips(counted, key, most):
    make_handlers, statements = counted
    handlers = make_handlers()
    create = CreateProduct(name="P", price=10, stock=5, category="c", seller_id="s")
    products = [(await handlers.handle(request(create))).id for _ in range(2)]
    order = PlaceOrder(items=tuple(OrderLine(product_id=p, quantity=1) for p in products))
    statements.clear()

    placed = await handlers.handle(request(order, USER, key and str(uuid.uuid4())))

    assert placed.position is not None
    print(f"\nPlaceOrder of two products, Idempotency-Key {'yes' if key else 'no'}: {len(statements)} round trips")
    print("\n".join(" ".join(s.split())[:110] for s in statements))
    assert len(statements) <= most


async def test_a_snapshot_due_is_saved_in_the_orders_append_statement(counted, database_url):
    make_handlers, statements = counted
    handlers = make_handlers(snapshot_every=3)
    create = CreateProduct(name="P", price=10, stock=5, category="c", seller_id="s")
    product = (await handlers.handle(request(create))).id
    for _ in range(2):
        await handlers.handle(request(Restock(product_id=product, quantity=1)))
    statements.clear()

    await handlers.handle(request(PlaceOrder(items=(OrderLine(product_id=product, quantity=1),)), USER))

    assert len(statements) == 4  # three events replayed: the snapshot rides along with the order's events
    connection = await asyncpg.connect(database_url)
    try:
        assert await connection.fetchval("select version from snapshots where stream_id = $1", product) == 3
    finally:
        await connection.close()
