"""Idempotency-Key (DESIGN §5.4): a repeat replays the first reply and has no second effect."""

import asyncio
import uuid

import pytest

pytestmark = pytest.mark.e2e


@pytest.fixture
async def product(client, system) -> dict:
    body = {"name": "Lamp", "price": 2_500, "stock": 10, "category": "home", "seller_id": "s"}
    response = await client.post("/v1/admin/products", json=body, headers=system.token("boss", "admin"))
    assert response.status_code == 201, response.text
    return response.json()


async def stock_at(client, product_id: str, position: int) -> int:
    response = await client.get(f"/v1/products/{product_id}", headers={"X-Consistency-Token": str(position)})
    return response.json()["stock"]


async def test_a_repeated_order_replays_the_first_reply_and_reserves_once(client, system, product):
    headers = {**system.token("ivy"), "Idempotency-Key": str(uuid.uuid4())}
    body = {"items": [{"product_id": product["id"], "quantity": 2}]}

    first = await client.post("/v1/orders", json=body, headers=headers)
    again = await client.post("/v1/orders", json=body, headers=headers)

    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert await stock_at(client, product["id"], first.json()["position"]) == 8


async def test_racing_repeats_have_one_effect(client, system, product):
    headers = {**system.token("jon"), "Idempotency-Key": str(uuid.uuid4())}
    body = {"items": [{"product_id": product["id"], "quantity": 1}]}

    replies = await asyncio.gather(*(client.post("/v1/orders", json=body, headers=headers) for _ in range(10)))

    assert {r.status_code for r in replies} == {201}
    assert len({r.json()["id"] for r in replies}) == 1
    restock = await client.post(
        f"/v1/admin/products/{product['id']}/restock", json={"quantity": 1}, headers=system.token("boss", "admin")
    )
    # the restock is the product's next version after exactly one reservation
    assert restock.json()["version"] == 3
    assert await stock_at(client, product["id"], restock.json()["position"]) == 10


async def test_a_key_reused_for_another_request_is_refused(client, system, product):
    headers = {**system.token("kim"), "Idempotency-Key": str(uuid.uuid4())}
    await client.post("/v1/orders", json={"items": [{"product_id": product["id"], "quantity": 1}]}, headers=headers)

    other = await client.post(
        "/v1/orders", json={"items": [{"product_id": product["id"], "quantity": 2}]}, headers=headers
    )

    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"


async def test_keys_belong_to_their_user(client, system, product):
    key = str(uuid.uuid4())
    body = {"items": [{"product_id": product["id"], "quantity": 1}]}

    first = await client.post("/v1/orders", json=body, headers={**system.token("lea"), "Idempotency-Key": key})
    second = await client.post("/v1/orders", json=body, headers={**system.token("max"), "Idempotency-Key": key})

    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"]


async def test_racing_repeats_all_carry_the_position(client, system, product):
    body = {"items": [{"product_id": product["id"], "quantity": 1}]}
    for _ in range(5):
        headers = {**system.token("pia"), "Idempotency-Key": str(uuid.uuid4())}

        replies = await asyncio.gather(*(client.post("/v1/orders", json=body, headers=headers) for _ in range(4)))

        assert {r.status_code for r in replies} == {201}
        assert len({r.json()["position"] for r in replies}) == 1
        assert replies[0].json()["position"] is not None


async def test_a_rejection_is_replayed_for_its_key(client, system, product):
    headers = {**system.token("rex"), "Idempotency-Key": str(uuid.uuid4())}
    body = {"items": [{"product_id": product["id"], "quantity": 11}]}

    first = await client.post("/v1/orders", json=body, headers=headers)
    await client.post(
        f"/v1/admin/products/{product['id']}/restock", json={"quantity": 10}, headers=system.token("boss", "admin")
    )
    again = await client.post("/v1/orders", json=body, headers=headers)

    assert first.status_code == again.status_code == 409
    assert again.json()["code"] == "insufficient_stock"
