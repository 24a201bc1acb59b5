"""Input a hostile or careless client sends is a 4xx problem+json with a `code`, never a 500; who
may call a route is checked before its body is (DESIGN §6)."""

import time

import httpx
import jwt
import pytest

from tests.e2e.conftest import JWT_SECRET

pytestmark = pytest.mark.e2e

PRODUCT = {"name": "Thing", "price": 1_000, "stock": 100, "category": "misc", "seller_id": "s"}


@pytest.fixture(scope="module")
async def made(system) -> dict[str, str]:
    """A product and an order to aim the wrong kind of id at."""
    async with httpx.AsyncClient(base_url=system.gateway, timeout=15) as client:
        product = await client.post("/v1/admin/products", json=PRODUCT, headers=system.token("boss", "admin"))
        order = await client.post(
            "/v1/orders",
            json={"items": [{"product_id": product.json()["id"], "quantity": 1}]},
            headers=system.token("ann"),
        )
    return {"product": product.json()["id"], "order": order.json()["id"]}


def token(**claims) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode(claims, JWT_SECRET, "HS256")}


def refused(response, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    assert response.json()["code"], response.text


@pytest.mark.parametrize(
    ("field", "value"),
    [("name", "a\u0000b"), ("category", "\u0000"), ("seller_id", "s\u0000"), ("image_urls", ["https://x/\u0000"])],
)
async def test_a_nul_in_any_text_field_is_422(client, system, field, value):
    response = await client.post(
        "/v1/admin/products", json={**PRODUCT, field: value}, headers=system.token("boss", "admin")
    )
    refused(response, 422)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/products/a%00b"),
        ("GET", "/v1/orders/a%00b"),
        ("POST", "/v1/orders/a%00b/pay"),
        ("GET", "/v1/products?category=a%00b"),
        ("GET", "/v1/products/search?q=a%00b"),
    ],
)
async def test_a_nul_in_a_path_id_or_a_query_is_4xx(client, system, method, path):
    refused(await client.request(method, path, headers=system.token("ann")), 404, 422)


async def test_a_nul_in_a_review_text_is_422(client, system, made):
    response = await client.post(
        f"/v1/products/{made['product']}/reviews", json={"rating": 5, "text": "\u0000"}, headers=system.token("x")
    )
    refused(response, 422)


async def test_an_order_id_where_a_product_id_is_expected_and_back_is_not_found(client, system, made):
    admin = system.token("boss", "admin")
    refused(await client.post(f"/v1/products/{made['order']}/reviews", json={"rating": 4}, headers=admin), 404)
    refused(await client.post(f"/v1/admin/products/{made['order']}/restock", json={"quantity": 1}, headers=admin), 404)
    order = {"items": [{"product_id": made["order"], "quantity": 1}]}
    refused(await client.post("/v1/orders", json=order, headers=admin), 404)
    refused(await client.post(f"/v1/orders/{made['product']}/pay", headers=admin), 404)
    refused(await client.post(f"/v1/orders/{made['product']}/cancel", headers=admin), 404)
    refused(await client.post(f"/v1/admin/orders/{made['product']}/ship", headers=admin), 404)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"items": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"items": [{"product_id": "\xff\xfe", "quantity": 1}]}',
        b"\xc3\x28",
        b'{"items": [{"product_id": "p", "quantity": 1}]',
    ],
)
async def test_a_body_too_deep_not_utf8_or_cut_short_is_4xx(client, system, body):
    headers = {**system.token("ann"), "content-type": "application/json"}
    refused(await client.post("/v1/orders", content=body, headers=headers), 400, 422)


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_a_content_type_that_lies_is_4xx(client, system, content_type):
    headers = {**system.token("ann"), "content-type": content_type}
    body = b'{"items": [{"product_id": "p", "quantity": 1}]}'
    refused(await client.post("/v1/orders", content=body, headers=headers), 400, 415, 422)


@pytest.mark.parametrize(
    "params",
    [{"min_position": "\u00b2"}, {"min_position": "\u0663"}, {"max_price": str(2**64)}, {"min_price": "1e400"}],
)
async def test_numbers_that_are_not_64_bit_integers_are_422(client, system, params):
    refused(await client.get("/v1/products/search", params={"q": "x", **params}), 422)


async def test_a_consistency_token_that_is_digit_like_but_no_integer_is_422(client, system):
    refused(await client.get("/v1/products", headers={"X-Consistency-Token": "\u00b2".encode("latin-1")}), 422)


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-01-01T00:00:00+02:00", "to": "2026-02-01T00:00:00"},
        {"from": "2026-01-01T00:00:00"},
    ],
)
async def test_a_naive_datetime_is_422(client, system, params):
    refused(await client.get("/v1/admin/orders/search", params=params, headers=system.token("boss", "admin")), 422)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/admin/products"),
        ("PUT", "/v1/admin/products/p1/price"),
        ("POST", "/v1/admin/products/p1/restock"),
        ("POST", "/v1/admin/orders/o1/ship"),
    ],
)
async def test_admin_routes_check_the_caller_before_the_body(client, system, method, path):
    body = b"{not json"
    headers = {"content-type": "application/json"}
    refused(await client.request(method, path, content=body, headers=headers), 401)
    refused(await client.request(method, path, content=body, headers={**headers, **system.token("ann")}), 403)


async def test_user_routes_check_the_caller_before_the_body(client, system):
    headers = {"content-type": "application/json"}
    refused(await client.post("/v1/orders", content=b"{not json", headers=headers), 401)
    refused(await client.post("/v1/products/p1/reviews", content=b"{not json", headers=headers), 401)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": "ann"},  # no exp
        {"sub": "ann", "exp": int(time.time()) - 3600},
        {"sub": "", "exp": int(time.time()) + 600},
        {"sub": "a" * 65, "exp": int(time.time()) + 600},
        {"sub": "a\u0000b", "exp": int(time.time()) + 600},
        {"sub": 12, "exp": int(time.time()) + 600},
    ],
)
async def test_a_token_without_exp_or_with_a_bad_sub_is_401(client, system, claims):
    refused(await client.get("/v1/orders", headers=token(**claims)), 401)


async def test_a_token_a_little_behind_the_clock_is_still_accepted(client, system):
    response = await client.get("/v1/orders", headers=token(sub="ann", exp=int(time.time()) - 5))
    assert response.status_code == 200, response.text


async def test_search_highlighting_escapes_the_names_html(client, system):
    name = f"<img src=x onerror=alert(1)> Lamp{time.time_ns()}"
    made = await client.post(
        "/v1/admin/products", json={**PRODUCT, "name": name}, headers=system.token("boss", "admin")
    )
    word = name.split()[-1]

    found = await client.get(
        "/v1/products/search", params={"q": word}, headers={"X-Consistency-Token": str(made.json()["position"])}
    )

    [hit] = found.json()["items"]
    assert hit["highlighted_name"] == f"&lt;img src=x onerror=alert(1)&gt; <em>{word}</em>"
    assert hit["name"] == name


@pytest.mark.parametrize("url", ["javascript:alert(1)", "http://img.example/p.png", "data:image/png;base64,AAAA"])
async def test_image_urls_are_https_only(client, system, url):
    response = await client.post(
        "/v1/admin/products", json={**PRODUCT, "image_urls": [url]}, headers=system.token("boss", "admin")
    )
    refused(response, 422)
