"""One product and one order through every hop: gateway -> NATS -> command-service -> PostgreSQL ->
JetStream -> three projectors -> OpenSearch and Redis -> query-service -> gateway."""

import time

import httpx
import pytest

pytestmark = pytest.mark.e2e

PRODUCT = {
    "name": "Galaxy Phone",
    "description": "A phone",
    "price": 49_900,
    "stock": 10,
    "category": "phones",
    "seller_id": "seller-1",
    "image_urls": ["https://img.example/p.png"],
}


async def create_product(client, system, **changes) -> dict:
    response = await client.post(
        "/v1/admin/products", json={**PRODUCT, **changes}, headers=system.token("boss", "admin")
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_every_process_is_ready_and_exports_metrics(system):
    async with httpx.AsyncClient(timeout=5) as http:
        for name, port in system.ops_ports.items():
            ready = await http.get(f"http://127.0.0.1:{port}/health/ready")
            assert ready.status_code == 200, (name, ready.text)
            assert all(v == "ok" for v in ready.json()["checks"].values()), (name, ready.text)
            assert (await http.get(f"http://127.0.0.1:{port}/health/live")).status_code == 200
            metrics = await http.get(f"http://127.0.0.1:{port}/metrics")
            assert metrics.status_code == 200 and "shop_requests_total" in metrics.text, name


async def test_a_created_product_is_readable_at_its_position(client, system):
    created = await create_product(client, system)
    assert created["version"] == 1 and created["position"] > 0

    read = await client.get(f"/v1/products/{created['id']}", headers={"X-Consistency-Token": str(created["position"])})

    assert read.status_code == 200, read.text
    assert read.headers["X-Consistency"] == "fresh"
    assert int(read.headers["X-Read-Position"]) >= created["position"]
    body = read.json()
    assert {k: body[k] for k in PRODUCT if k != "image_urls"} == {k: v for k, v in PRODUCT.items() if k != "image_urls"}
    assert body["image_urls"] == PRODUCT["image_urls"] and body["version"] == 1


async def test_an_order_reaches_all_three_read_models(client, system):
    product = await create_product(client, system, name="Tablet", price=30_000, stock=5)
    user = system.token("alice")

    placed = await client.post(
        "/v1/orders", json={"items": [{"product_id": product["id"], "quantity": 2}]}, headers=user
    )

    assert placed.status_code == 201, placed.text
    reply = placed.json()
    assert reply["order"]["total"] == 60_000 and reply["order"]["status"] == "placed"
    token = {"X-Consistency-Token": str(reply["position"])}

    order = await client.get(f"/v1/orders/{reply['id']}", headers={**user, **token})
    assert order.status_code == 200 and order.headers["X-Consistency"] == "fresh", order.text
    assert order.json()["items"] == [
        {"product_id": product["id"], "name": "Tablet", "quantity": 2, "unit_price": 30_000, "line_total": 60_000}
    ]
    assert [h["status"] for h in order.json()["history"]] == ["placed"]

    detail = await client.get(f"/v1/products/{product['id']}", headers=token)
    assert detail.json()["stock"] == 3 and detail.json()["version"] == 2

    summary = await client.get("/v1/admin/analytics/summary", headers={**system.token("boss", "admin"), **token})
    assert summary.status_code == 200 and summary.headers["X-Consistency"] == "fresh", summary.text
    assert summary.json()["revenue"] >= 60_000
    popular = await client.get("/v1/products/popular", params={"limit": 100}, headers=token)
    units = {p["id"]: (p["name"], p["units_sold"]) for p in popular.json()["items"]}
    assert units[product["id"]] == ("Tablet", 2)


async def test_a_position_past_the_end_of_the_stream_is_stale_at_once(client, system):
    product = await create_product(client, system)
    fresh = await client.get(f"/v1/products/{product['id']}", headers={"X-Consistency-Token": str(product["position"])})
    assert fresh.headers["X-Consistency"] == "fresh"
    far_ahead = product["position"] + 1_000_000

    started = time.monotonic()
    read = await client.get(f"/v1/products/{product['id']}", headers={"X-Consistency-Token": str(far_ahead)})

    assert read.status_code == 200
    assert read.headers["X-Consistency"] == "stale"
    assert product["position"] <= int(read.headers["X-Read-Position"]) < far_ahead
    assert time.monotonic() - started < 1.0  # no wait for a position that does not exist (the wait is 1.5 s)


async def test_stock_is_never_oversold(client, system):
    product = await create_product(client, system, stock=1)
    body = {"items": [{"product_id": product["id"], "quantity": 1}]}

    first = await client.post("/v1/orders", json=body, headers=system.token("bob"))
    second = await client.post("/v1/orders", json=body, headers=system.token("carol"))

    assert first.status_code == 201
    assert second.status_code == 409 and second.json()["code"] == "insufficient_stock"
    assert second.headers["content-type"].startswith("application/problem+json")


@pytest.mark.parametrize(
    ("method", "path", "body", "roles", "status", "code"),
    [
        ("POST", "/v1/orders", {"items": [{"product_id": "p", "quantity": 1}]}, None, 401, "unauthorized"),
        ("POST", "/v1/admin/products", PRODUCT, (), 403, "forbidden"),
        ("POST", "/v1/admin/products", {**PRODUCT, "price": -5}, ("admin",), 422, "validation_error"),
        ("POST", "/v1/orders", {"items": []}, (), 422, "validation_error"),
        ("POST", "/v1/orders", {"items": [{"product_id": "missing", "quantity": 1}]}, (), 404, "not_found"),
        ("GET", "/v1/products/missing", None, None, 404, "not_found"),
        ("GET", "/v1/admin/analytics/summary", None, (), 403, "forbidden"),
        ("GET", "/v1/products/x", None, None, 422, "validation_error"),  # with a malformed token below
    ],
)
async def test_bad_requests_get_problem_json(client, system, method, path, body, roles, status, code):
    headers = {} if roles is None else system.token("dave", *roles)
    if path == "/v1/products/x":
        headers["X-Consistency-Token"] = "not-a-number"
    response = await client.request(method, path, json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == code and problem["status"] == status and problem["title"] and "type" in problem
    assert response.headers["X-Request-ID"]


async def test_the_request_id_is_echoed(client):
    response = await client.get("/v1/products/anything", headers={"X-Request-ID": "req-123"})
    assert response.headers["X-Request-ID"] == "req-123"
