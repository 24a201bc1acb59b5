"""The query API of DESIGN §6 against the real read models."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pytest

from tests.conftest import NatsServer
from tests.e2e.conftest import running_system

pytestmark = pytest.mark.e2e


async def create(client, system, **fields) -> dict:
    body = {"name": "Thing", "description": "", "price": 1_000, "stock": 100, "category": "misc", "seller_id": "s"}
    response = await client.post("/v1/admin/products", json={**body, **fields}, headers=system.token("boss", "admin"))
    assert response.status_code == 201, response.text
    return response.json()


async def order(client, system, user: str, *lines: tuple[str, int]) -> dict:
    body = {"items": [{"product_id": p, "quantity": q} for p, q in lines]}
    response = await client.post("/v1/orders", json=body, headers=system.token(user))
    assert response.status_code == 201, response.text
    return response.json()


def at(*replies: dict) -> dict[str, str]:
    return {"X-Consistency-Token": str(max(r["position"] for r in replies))}


@pytest.fixture
def category() -> str:
    return f"cat-{uuid.uuid4().hex[:8]}"


async def test_products_of_a_category_sorted_and_paged(client, system, category):
    made = [await create(client, system, name=f"Item {p}", price=p, category=category) for p in (300, 100, 200)]
    headers = at(*made)

    by_price = await client.get("/v1/products", params={"category": category, "sort": "price_asc"}, headers=headers)
    newest = await client.get("/v1/products", params={"category": category, "size": 2, "page": 2}, headers=headers)

    assert by_price.status_code == 200 and by_price.headers["X-Consistency"] == "fresh"
    assert [p["price"] for p in by_price.json()["items"]] == [100, 200, 300]
    assert by_price.json()["total"] == 3
    assert newest.json()["page"] == 2 and newest.json()["size"] == 2
    assert [p["id"] for p in newest.json()["items"]] == [made[0]["id"]]  # the oldest is alone on page 2
    assert set(newest.json()["items"][0]) == {"id", "name", "thumbnail_url", "price", "review_count", "average_rating"}


async def test_sort_by_rating_and_by_popularity(client, system, category):
    liked, sold = await create(client, system, category=category), await create(client, system, category=category)
    review = await client.post(f"/v1/products/{liked['id']}/reviews", json={"rating": 5}, headers=system.token("r1"))
    placed = await order(client, system, "buyer", (sold["id"], 3))
    headers = at(review.json(), placed)

    rating = await client.get("/v1/products", params={"category": category, "sort": "rating"}, headers=headers)
    popular = await client.get("/v1/products", params={"category": category, "sort": "popular"}, headers=headers)

    assert [p["id"] for p in rating.json()["items"]] == [liked["id"], sold["id"]]
    assert [p["id"] for p in popular.json()["items"]] == [sold["id"], liked["id"]]


async def test_search_highlights_the_name_and_filters_by_category_and_price(client, system, category):
    word = f"zebra{uuid.uuid4().hex[:6]}"
    cheap = await create(client, system, name=f"Striped {word} case", price=500, category=category)
    dear = await create(client, system, name=f"Golden {word} watch", price=90_000, category=category)
    headers = at(cheap, dear)

    found = await client.get("/v1/products/search", params={"q": word, "max_price": 1_000}, headers=headers)
    both = await client.get(
        "/v1/products/search", params={"q": word, "category": category, "sort": "price_desc"}, headers=headers
    )

    assert found.status_code == 200, found.text
    [hit] = found.json()["items"]
    assert hit["id"] == cheap["id"] and hit["highlighted_name"] == f"Striped <em>{word}</em> case"
    assert [h["id"] for h in both.json()["items"]] == [dear["id"], cheap["id"]] and both.json()["total"] == 2


async def test_popular_products_come_from_units_sold(client, system):
    first, second = await create(client, system, price=10), await create(client, system, price=20)
    placed = await order(client, system, "pop", (first["id"], 50), (second["id"], 60))

    popular = await client.get("/v1/products/popular", params={"limit": 100}, headers=at(placed))

    items = {p["id"]: p for p in popular.json()["items"]}
    assert items[second["id"]]["units_sold"] == 60 and items[second["id"]]["price"] == 20
    ranked = [p["id"] for p in popular.json()["items"]]
    assert ranked.index(second["id"]) < ranked.index(first["id"])


async def test_a_user_sees_only_their_own_orders_newest_first_with_a_status_filter(client, system):
    product = await create(client, system)
    user = f"u-{uuid.uuid4().hex[:6]}"
    older, newer = (
        await order(client, system, user, (product["id"], 1)),
        await order(client, system, user, (product["id"], 1)),
    )
    someone_else = await order(client, system, "other-user", (product["id"], 1))
    paid = await client.post(f"/v1/orders/{older['id']}/pay", headers=system.token(user))
    headers = {**system.token(user), **at(newer, someone_else, paid.json())}

    mine = await client.get("/v1/orders", headers=headers)
    only_paid = await client.get("/v1/orders", params={"status": "paid"}, headers=headers)

    assert [o["id"] for o in mine.json()["items"]] == [newer["id"], older["id"]] and mine.json()["total"] == 2
    assert [o["id"] for o in only_paid.json()["items"]] == [older["id"]]


async def test_a_list_read_with_its_token_always_shows_the_write_it_waited_for(client, system):
    """A list waits for the refresh that covers the token, not only for the write to be applied."""
    product = await create(client, system, stock=1_000)
    user = f"u-{uuid.uuid4().hex[:6]}"
    missed = []
    for _ in range(20):
        placed = await order(client, system, user, (product["id"], 1))
        listed = await client.get("/v1/orders", params={"size": 100}, headers={**system.token(user), **at(placed)})
        if listed.headers["X-Consistency"] == "fresh" and placed["id"] not in [o["id"] for o in listed.json()["items"]]:
            missed.append(placed["id"])
    assert missed == []


async def test_a_list_read_with_its_token_does_not_wait_for_the_projectors_own_refresh(tmp_path):
    """The projectors refresh only now and then (here: once a minute); a list read that waits for its token
    has the query-service refresh what was applied, and is fresh long before that."""
    server = NatsServer(tmp_path / "nats")
    try:
        async with running_system(tmp_path / "run", server, REFRESH_INTERVAL="60") as system:
            async with httpx.AsyncClient(base_url=system.gateway, timeout=10) as client:
                product = await create(client, system, stock=1_000)
                user = f"u-{uuid.uuid4().hex[:6]}"
                for _ in range(5):
                    placed = await order(client, system, user, (product["id"], 1))
                    listed = await client.get("/v1/orders", headers={**system.token(user), **at(placed)})
                    assert listed.headers["X-Consistency"] == "fresh"
                    assert placed["id"] in [o["id"] for o in listed.json()["items"]]
    finally:
        server.stop()


async def test_admin_order_search_by_product_name_id_status_and_dates(client, system):
    word = f"quokka{uuid.uuid4().hex[:6]}"
    product = await create(client, system, name=f"Plush {word}")
    placed = await order(client, system, "sue", (product["id"], 1))
    admin = {**system.token("boss", "admin"), **at(placed)}
    now = datetime.now(UTC)

    by_name = await client.get("/v1/admin/orders/search", params={"q": word}, headers=admin)
    by_id = await client.get("/v1/admin/orders/search", params={"q": placed["id"]}, headers=admin)
    window = {
        "q": word,
        "status": "placed",
        "from": (now - timedelta(hours=1)).isoformat(),
        "to": (now + timedelta(hours=1)).isoformat(),
    }
    in_window = await client.get("/v1/admin/orders/search", params=window, headers=admin)
    shipped = await client.get("/v1/admin/orders/search", params={"q": word, "status": "shipped"}, headers=admin)
    as_user = await client.get("/v1/admin/orders/search", params={"q": word}, headers=system.token("sue"))

    assert [o["id"] for o in by_name.json()["items"]] == [placed["id"]]
    assert [o["id"] for o in by_id.json()["items"]] == [placed["id"]]
    assert [o["id"] for o in in_window.json()["items"]] == [placed["id"]]
    assert shipped.json()["total"] == 0
    assert as_user.status_code == 403


@pytest.mark.parametrize(
    "params", [{"size": 101}, {"size": 0}, {"page": 0}, {"sort": "cheapest"}, {"page": 200, "size": 100}]
)
async def test_out_of_range_paging_and_unknown_sorts_are_refused(client, params):
    response = await client.get("/v1/products", params=params)
    assert response.status_code == 422 and response.json()["code"] == "validation_error", response.text


async def test_unknown_status_filter_is_refused(client, system):
    response = await client.get("/v1/orders", params={"status": "lost"}, headers=system.token("u"))
    assert response.status_code == 422 and response.json()["code"] == "validation_error"


async def test_sync_streams_positions_until_the_write_is_visible(client, system):
    async with client.stream("GET", "/v1/sync", headers=system.token("app-user")) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.aiter_lines()
        created = await create(client, system)
        seen: dict[str, int] = {}

        async def until_visible() -> None:
            async for line in lines:
                if line.startswith("data:"):
                    announced = msgspec.json.decode(line.removeprefix("data:").strip())
                    seen[announced["projector"]] = announced["position"]
                    if all(seen.get(p, 0) >= created["position"] for p in ("catalog", "order-list", "analytics")):
                        return

        await asyncio.wait_for(until_visible(), 10)
    assert seen["catalog"] >= created["position"]


async def test_sync_needs_a_user(client):
    assert (await client.get("/v1/sync")).status_code == 401


async def test_openapi_lists_every_route_with_its_schemas(system):
    async with httpx.AsyncClient(base_url=system.gateway) as http:
        spec = (await http.get("/schema/openapi.json")).json()
    expected = {
        ("post", "/v1/admin/products"),
        ("put", "/v1/admin/products/{product_id}/price"),
        ("post", "/v1/admin/products/{product_id}/restock"),
        ("get", "/v1/products"),
        ("get", "/v1/products/{product_id}"),
        ("get", "/v1/products/search"),
        ("get", "/v1/products/popular"),
        ("post", "/v1/products/{product_id}/reviews"),
        ("post", "/v1/orders"),
        ("post", "/v1/orders/{order_id}/pay"),
        ("post", "/v1/orders/{order_id}/cancel"),
        ("post", "/v1/admin/orders/{order_id}/ship"),
        ("get", "/v1/orders"),
        ("get", "/v1/orders/{order_id}"),
        ("get", "/v1/admin/orders/search"),
        ("get", "/v1/admin/analytics/summary"),
        ("get", "/v1/sync"),
    }
    listed = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert expected <= listed, expected - listed
    for method, path in expected - {("get", "/v1/sync")}:
        operation = spec["paths"][path][method]
        assert "content" in next(iter(operation["responses"].values())), (method, path)
        if method in ("post", "put") and path.endswith(("products", "orders", "price", "restock", "reviews")):
            assert "requestBody" in operation, (method, path)
