"""A shop history that exercises every kind of event, and what the read models show of it."""


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
    seen["popular"] = (await client.get("/v1/products/popular", params={"limit": 100}, headers=admin)).json()
    return seen
