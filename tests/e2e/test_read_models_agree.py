"""Orders placed, paid and cancelled through the gateway: the three read models tell the same story."""

import random
import uuid

import pytest

pytestmark = pytest.mark.e2e


async def test_catalog_orders_and_analytics_agree(client, system):
    admin = system.token("boss", "admin")
    word = f"heron{uuid.uuid4().hex[:6]}"
    products = []
    for i in range(3):
        body = {"name": f"{word} model {i}", "price": 1_000 * (i + 1), "stock": 50, "category": "c", "seller_id": "s"}
        created = (await client.post("/v1/admin/products", json=body, headers=admin)).json()
        products.append(created["id"])
    # at the products' position: what earlier tests ordered is in it
    before = {**admin, "X-Consistency-Token": str(created["position"])}
    summary_before = (await client.get("/v1/admin/analytics/summary", headers=before)).json()
    rng, placed, position = random.Random(7), [], 0
    for n in range(20):
        user = system.token(f"user-{n % 4}")
        lines = rng.sample(products, rng.randint(1, 3))
        body = {"items": [{"product_id": p, "quantity": rng.randint(1, 3)} for p in lines]}
        reply = (await client.post("/v1/orders", json=body, headers=user)).json()
        placed.append(reply["id"])
        position = reply["position"]
        if n % 3 == 0:
            position = (await client.post(f"/v1/orders/{reply['id']}/cancel", headers=user)).json()["position"]
        elif n % 3 == 1:
            position = (await client.post(f"/v1/orders/{reply['id']}/pay", headers=user)).json()["position"]
    fresh = {**admin, "X-Consistency-Token": str(position)}

    found = (await client.get("/v1/admin/orders/search", params={"q": word, "size": 100}, headers=fresh)).json()
    details = [(await client.get(f"/v1/products/{p}", headers=fresh)).json() for p in products]
    summary = (await client.get("/v1/admin/analytics/summary", headers=fresh)).json()
    popular = (await client.get("/v1/products/popular", params={"limit": 100}, headers=fresh)).json()

    assert sorted(o["id"] for o in found["items"]) == sorted(placed)
    kept = [o for o in found["items"] if o["status"] != "cancelled"]
    assert len(kept) == 13  # 20 orders, every third cancelled
    sold = {p: sum(i["quantity"] for o in kept for i in o["items"] if i["product_id"] == p) for p in products}
    # catalog: stock went down by exactly what the orders that stand reserved
    assert {d["id"]: 50 - d["stock"] for d in details} == sold
    # analytics: the same units, and the revenue and count of the orders that stand
    units = {p["id"]: p["units_sold"] for p in popular["items"]}
    assert {p: units.get(p, 0) for p in products} == sold
    assert summary["revenue"] - summary_before["revenue"] == sum(o["total"] for o in kept)
    assert summary["order_count"] - summary_before["order_count"] == len(kept)
