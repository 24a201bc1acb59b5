"""Exactly-once effect (DESIGN §5.2): duplicated and redelivered events leave every read model as it was."""

import asyncio
import uuid

import nats
import pytest

from shop.messaging import EVENTS_STREAM
from shop.read_models import PROJECTORS

pytestmark = pytest.mark.e2e


async def history(client, system) -> tuple[list[str], list[str], int]:
    """Products and orders with every kind of event, and the position of the last one."""
    admin = system.token("boss", "admin")
    body = {"name": "Kettle", "price": 4_000, "stock": 20, "category": "kitchen", "seller_id": "s"}
    products = [(await client.post("/v1/admin/products", json=body, headers=admin)).json() for _ in range(2)]
    ids = [p["id"] for p in products]
    await client.put(f"/v1/admin/products/{ids[0]}/price", json={"new_price": 5_000}, headers=admin)
    await client.post(f"/v1/admin/products/{ids[1]}/restock", json={"quantity": 5}, headers=admin)
    await client.post(f"/v1/products/{ids[0]}/reviews", json={"rating": 4, "text": "ok"}, headers=system.token("r"))
    orders = []
    for user, lines in (("a", [(ids[0], 2)]), ("b", [(ids[0], 1), (ids[1], 3)]), ("c", [(ids[1], 1)])):
        body = {"items": [{"product_id": p, "quantity": q} for p, q in lines]}
        orders.append((await client.post("/v1/orders", json=body, headers=system.token(user))).json()["id"])
    await client.post(f"/v1/orders/{orders[0]}/pay", headers=system.token("a"))
    await client.post(f"/v1/admin/orders/{orders[0]}/ship", headers=admin)
    last = await client.post(f"/v1/orders/{orders[1]}/cancel", headers=system.token("b"))
    assert last.status_code == 200, last.text
    return ids, orders, last.json()["position"]


async def read_models(client, system, products, orders, position: int) -> dict:
    admin = {**system.token("boss", "admin"), "X-Consistency-Token": str(position)}
    seen = {}
    for product_id in products:
        response = await client.get(f"/v1/products/{product_id}", headers=admin)
        assert response.headers["X-Consistency"] == "fresh"
        seen[product_id] = response.json()
    for order_id in orders:
        seen[order_id] = (await client.get(f"/v1/orders/{order_id}", headers=admin)).json()
    seen["summary"] = (await client.get("/v1/admin/analytics/summary", headers=admin)).json()
    seen["popular"] = (await client.get("/v1/products/popular", headers=admin)).json()
    return seen


async def caught_up(js, last: int) -> None:
    """Every projector's consumer has acknowledged the whole stream up to `last`."""
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        infos = [await js.consumer_info(EVENTS_STREAM, name) for name in PROJECTORS]
        if all(i.ack_floor.stream_seq >= last and i.num_pending == 0 for i in infos):
            return
        assert asyncio.get_running_loop().time() < deadline, [(i.name, i.ack_floor, i.num_pending) for i in infos]
        await asyncio.sleep(0.05)


@pytest.fixture
async def js(system):
    nc = await nats.connect(system.nats_url)
    yield nc.jetstream()
    await nc.close()


async def test_events_published_twice_change_nothing(client, system, js):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)

    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    for seq in range(1, last + 1):  # every event again, under new message ids so JetStream keeps them
        original = await js.get_msg(EVENTS_STREAM, seq)
        ack = await js.publish(original.subject, original.data, headers={"Nats-Msg-Id": f"again-{uuid.uuid4()}"})

    assert ack.seq == 2 * last
    assert await read_models(client, system, products, orders, ack.seq) == before


async def test_redelivering_the_whole_stream_after_a_crash_changes_nothing(client, system, js):
    products, orders, position = await history(client, system)
    before = await read_models(client, system, products, orders, position)
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq

    for name in PROJECTORS:  # crash every projector, and forget what its consumer had acknowledged
        system.kill(f"projector-{name}")
        await js.delete_consumer(EVENTS_STREAM, name)
    system.start()
    await caught_up(js, last)

    assert await read_models(client, system, products, orders, position) == before
