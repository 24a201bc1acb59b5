"""Every command of DESIGN §3 over HTTP, and what each read model makes of it."""

import os
from pathlib import Path

import pytest

from shop.ops import PROCESSES

pytestmark = pytest.mark.e2e

PRODUCT = {
    "name": "Watch",
    "description": "A watch",
    "price": 10_000,
    "stock": 5,
    "category": "watches",
    "seller_id": "seller-2",
}


@pytest.fixture
async def product(client, system) -> dict:
    response = await client.post("/v1/admin/products", json=PRODUCT, headers=system.token("boss", "admin"))
    assert response.status_code == 201, response.text
    return response.json()


def at(reply: dict) -> dict[str, str]:
    return {"X-Consistency-Token": str(reply["position"])}


async def test_price_changes_follow_the_doubling_rule(client, system, product):
    admin = system.token("boss", "admin")
    url = f"/v1/admin/products/{product['id']}/price"

    doubled = await client.put(url, json={"new_price": 20_000, "reason": "launch over"}, headers=admin)
    too_much = await client.put(url, json={"new_price": 40_001}, headers=admin)

    assert doubled.status_code == 200 and doubled.json()["version"] == 2, doubled.text
    assert too_much.status_code == 422 and too_much.json()["code"] == "price_rule_violation"
    detail = await client.get(f"/v1/products/{product['id']}", headers=at(doubled.json()))
    assert detail.json()["price"] == 20_000 and detail.json()["version"] == 2


async def test_restock_and_reviews_reach_the_catalog(client, system, product):
    restocked = await client.post(
        f"/v1/admin/products/{product['id']}/restock", json={"quantity": 7}, headers=system.token("boss", "admin")
    )
    assert restocked.status_code == 200, restocked.text
    first = await client.post(
        f"/v1/products/{product['id']}/reviews", json={"rating": 5, "text": "great"}, headers=system.token("ann")
    )
    second = await client.post(
        f"/v1/products/{product['id']}/reviews", json={"rating": 2, "text": "meh"}, headers=system.token("ben")
    )
    again = await client.post(
        f"/v1/products/{product['id']}/reviews",
        json={"rating": 1, "text": "changed my mind"},
        headers=system.token("ann"),
    )
    assert (first.status_code, second.status_code) == (201, 201), first.text + second.text
    assert again.status_code == 409 and again.json()["code"] == "invalid_state"

    detail = (await client.get(f"/v1/products/{product['id']}", headers=at(second.json()))).json()
    assert detail["stock"] == 12 and detail["review_count"] == 2 and detail["average_rating"] == 3.5
    assert [r["user_id"] for r in detail["reviews"]] == ["ben", "ann"]  # newest first


async def test_an_order_is_paid_shipped_and_then_cannot_be_cancelled(client, system, product):
    user, admin = system.token("eve"), system.token("boss", "admin")
    placed = (
        await client.post("/v1/orders", json={"items": [{"product_id": product["id"], "quantity": 1}]}, headers=user)
    ).json()
    order_url = f"/v1/orders/{placed['id']}"

    ship_unpaid = await client.post(f"/v1/admin/orders/{placed['id']}/ship", headers=admin)
    paid = await client.post(f"{order_url}/pay", headers=user)
    shipped = await client.post(f"/v1/admin/orders/{placed['id']}/ship", headers=admin)
    cancel_shipped = await client.post(f"{order_url}/cancel", headers=user)

    assert ship_unpaid.status_code == 409 and ship_unpaid.json()["code"] == "invalid_state"
    assert (paid.status_code, shipped.status_code) == (200, 200), paid.text + shipped.text
    assert cancel_shipped.status_code == 409 and cancel_shipped.json()["code"] == "invalid_state"
    order = (await client.get(order_url, headers={**user, **at(shipped.json())})).json()
    assert order["status"] == "shipped" and [h["status"] for h in order["history"]] == ["placed", "paid", "shipped"]


async def test_only_the_owner_or_an_admin_may_pay_or_see_an_order(client, system, product):
    placed = (
        await client.post(
            "/v1/orders", json={"items": [{"product_id": product["id"], "quantity": 1}]}, headers=system.token("fay")
        )
    ).json()
    stranger = system.token("gus")

    pay = await client.post(f"/v1/orders/{placed['id']}/pay", headers=stranger)
    read = await client.get(f"/v1/orders/{placed['id']}", headers={**stranger, **at(placed)})

    assert pay.status_code == 403 and read.status_code == 403


async def test_cancelling_returns_stock_and_subtracts_from_analytics(client, system, product):
    user, admin = system.token("hal"), system.token("boss", "admin")
    # read at the product's position: what earlier tests ordered is in it
    summary_before = (await client.get("/v1/admin/analytics/summary", headers={**admin, **at(product)})).json()
    placed = (
        await client.post("/v1/orders", json={"items": [{"product_id": product["id"], "quantity": 3}]}, headers=user)
    ).json()
    placed_summary = (await client.get("/v1/admin/analytics/summary", headers={**admin, **at(placed)})).json()
    assert placed_summary["revenue"] == summary_before["revenue"] + 30_000

    cancelled = await client.post(f"/v1/orders/{placed['id']}/cancel", json={"reason": "changed mind"}, headers=user)

    assert cancelled.status_code == 200, cancelled.text
    token = at(cancelled.json())
    detail = (await client.get(f"/v1/products/{product['id']}", headers=token)).json()
    assert detail["stock"] == 5
    order = (await client.get(f"/v1/orders/{placed['id']}", headers={**user, **token})).json()
    assert order["status"] == "cancelled"
    summary = (await client.get("/v1/admin/analytics/summary", headers={**admin, **token})).json()
    assert (summary["revenue"], summary["order_count"]) == (summary_before["revenue"], summary_before["order_count"])
    units = {p["product_id"]: p["units_sold"] for p in summary["top_products"]}
    assert units.get(product["id"], 0) == 0


def test_the_gateway_and_the_projectors_run_with_a_raised_cpu_weight(system):
    """deploy/services.sh gives the processes on an event's way to /v1/sync the weight of about nine
    (autogroup nice -10), the others the default. A process in a cgroup of its own (as under CI) reads an
    empty autogroup file: the scheduler weighs its cgroup instead, and services.sh leaves it be."""
    raised = -10 if os.geteuid() == 0 else 0  # lowering a nice value needs CAP_SYS_NICE
    for process in PROCESSES:
        text = (Path("/proc") / str(system.pid(process)) / "autogroup").read_text().split()
        expected = raised if process == "gateway" or process.startswith("projector-") else 0
        assert text == [] or int(text[-1]) == expected, (process, text)
