"""The gateway sends every command with its deadline and tells a timeout with an unknown outcome
(504 outcome_unknown) from a refusal where nothing was done (503 unavailable)."""

from datetime import UTC, datetime

import jwt
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from shop.contracts.commands import command_request_decoder
from tests.conftest import gateway_settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
USER = {"Authorization": "Bearer " + jwt.encode({"sub": "u1", "exp": 4_000_000_000}, SECRET, "HS256")}
ORDER = {"items": [{"product_id": "p1", "quantity": 1}]}


def gateway(server):
    return create_app(gateway_settings(server, jwt_secret=SECRET, command_timeout=1, rate_limit_per_minute=0))


async def test_a_command_left_unanswered_is_504_outcome_unknown_and_carried_its_deadline(quiet_nats):
    nc = await quiet_nats.connect("command-service")
    silent = await nc.subscribe("cmd.order.place", queue="command-service")  # takes the command, never answers
    await nc.flush()
    try:
        async with AsyncTestClient(app=gateway(quiet_nats)) as client:
            sent_at = datetime.now(UTC)
            response = await client.post("/v1/orders", json=ORDER, headers=USER)
        received = await silent.next_msg(timeout=5)
    finally:
        await silent.unsubscribe()
        await nc.close()

    assert response.status_code == 504, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "outcome_unknown" and "Idempotency-Key" in response.json()["title"]
    deadline = command_request_decoder.decode(received.data).meta.deadline
    assert 0.5 < (deadline - sent_at).total_seconds() <= 1.5


async def test_a_command_nobody_serves_is_503_unavailable(quiet_nats):
    async with AsyncTestClient(app=gateway(quiet_nats)) as client:
        response = await client.post("/v1/orders", json=ORDER, headers=USER)

    assert response.status_code == 503 and response.json()["code"] == "unavailable"
