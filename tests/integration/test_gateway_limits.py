"""The gateway's rate limit, in process against a real NATS server (a limited request is refused
before it is sent anywhere, so no other service is needed)."""

import jwt
from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.rate_limit import rate_limit
from tests.conftest import gateway_settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(user_id: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + jwt.encode({"sub": user_id, "exp": 4_000_000_000}, SECRET, "HS256")}


async def test_a_caller_over_the_limit_gets_429_problem_json_and_others_do_not(nats):
    app = create_app(gateway_settings(nats, jwt_secret=SECRET, rate_limit_per_minute=3, query_timeout=1))
    async with AsyncTestClient(app=app) as client:
        allowed = [await client.get("/v1/orders/o1", headers=token("ann")) for _ in range(3)]
        limited = await client.get("/v1/orders/o1", headers=token("ann"))
        someone_else = await client.get("/v1/orders/o1", headers=token("bob"))
        schema = [await client.get("/schema/openapi.json") for _ in range(5)]

    assert 429 not in [r.status_code for r in allowed]  # let through (whatever the query-service, if any, says)
    assert limited.status_code == 429
    assert limited.headers["content-type"].startswith("application/problem+json")
    assert limited.json()["code"] == "rate_limited" and limited.headers["X-Request-ID"]
    assert someone_else.status_code != 429
    assert {r.status_code for r in schema} == {200}


async def test_a_limited_caller_is_let_through_again_once_its_window_ends():
    now = [1000.0]

    @get("/x")
    async def answer() -> str:
        return "ok"

    limit = rate_limit(2, lambda request: request.headers.get("x-caller", ""), clock=lambda: now[0])
    app = Litestar(route_handlers=[answer], middleware=[limit])
    async with AsyncTestClient(app=app) as client:
        first = [(await client.get("/x", headers={"X-Caller": "ann"})) for _ in range(3)]
        now[0] += 59
        still = await client.get("/x", headers={"X-Caller": "ann"})
        now[0] += 1
        again = await client.get("/x", headers={"X-Caller": "ann"})

    assert [r.status_code for r in first] == [200, 200, 429]
    assert [r.headers.get("RateLimit-Remaining") for r in first[:2]] == ["1", "0"]
    assert first[2].headers["RateLimit-Reset"] == "60"
    assert still.status_code == 429 and still.headers["RateLimit-Reset"] == "1"
    assert again.status_code == 200 and again.headers["RateLimit-Remaining"] == "1"
