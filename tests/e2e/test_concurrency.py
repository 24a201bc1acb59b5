"""Orders racing for the last units (DESIGN §5.3): exactly as many succeed as there is stock, the others
get `insufficient_stock`, and stock never goes negative, also when one order takes several products."""

import asyncio
from collections import Counter

import httpx
import pytest

pytestmark = pytest.mark.e2e


async def create_product(client: httpx.AsyncClient, system, stock: int) -> str:
    product = {"name": "Last units", "price": 1_000, "stock": stock, "category": "race", "seller_id": "s-race"}
    response = await client.post("/v1/admin/products", json=product, headers=system.token("boss", "admin"))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def place_orders_at_once(client: httpx.AsyncClient, system, product_ids: list[str], n: int) -> list:
    """`n` different users each order one unit of every product, all at the same time."""
    body = {"items": [{"product_id": pid, "quantity": 1} for pid in product_ids]}
    return await asyncio.gather(
        *(client.post("/v1/orders", json=body, headers=system.token(f"racer-{i}")) for i in range(n))
    )


def outcome(response: httpx.Response) -> str:
    return "placed" if response.status_code == 201 else f"{response.status_code} {response.json().get('code')}"


async def read_product(client: httpx.AsyncClient, product_id: str, position: int) -> dict:
    read = await client.get(f"/v1/products/{product_id}", headers={"X-Consistency-Token": str(position)})
    assert read.status_code == 200 and read.headers["X-Consistency"] == "fresh", (read.status_code, read.headers)
    return read.json()


async def test_fifty_orders_for_ten_units_place_exactly_ten(client, system):
    product_id = await create_product(client, system, stock=10)

    replies = await place_orders_at_once(client, system, [product_id], 50)

    outcomes = Counter(outcome(r) for r in replies)
    print(f"\n50 concurrent orders for stock 10: {dict(outcomes)}")
    assert outcomes == {"placed": 10, "409 insufficient_stock": 40}
    placed = [r.json() for r in replies if r.status_code == 201]
    assert all(isinstance(p["position"], int) for p in placed), [p["position"] for p in placed]
    product = await read_product(client, product_id, max(p["position"] for p in placed))
    assert (product["stock"], product["version"]) == (0, 11)


@pytest.mark.parametrize(("stock_a", "stock_b"), [(5, 5), (5, 3)])
async def test_an_order_of_two_products_reserves_both_or_neither(client, system, stock_a, stock_b):
    product_ids = [await create_product(client, system, stock=stock_a), await create_product(client, system, stock_b)]

    replies = await place_orders_at_once(client, system, product_ids, 20)

    outcomes = Counter(outcome(r) for r in replies)
    print(f"\n20 concurrent orders for stocks {stock_a} and {stock_b}: {dict(outcomes)}")
    winners = min(stock_a, stock_b)
    assert outcomes == {"placed": winners, "409 insufficient_stock": 20 - winners}
    placed = [r.json() for r in replies if r.status_code == 201]
    assert all(isinstance(p["position"], int) for p in placed), [p["position"] for p in placed]
    position = max(p["position"] for p in placed)
    for product_id, stock in zip(product_ids, (stock_a, stock_b), strict=True):
        product = await read_product(client, product_id, position)
        assert (product["stock"], product["version"]) == (stock - winners, 1 + winners)
