"""Bad input sent straight over NATS (signed with the gateway's actor key, so that it is read) gets an error
reply; the services never crash on it."""

import httpx
import msgspec
import pytest

from shop.contracts.replies import reply_decoder
from shop.signatures import signed

pytestmark = pytest.mark.e2e

META = {"actor": {"user_id": "u1", "roles": ["admin"]}, "correlation_id": "c1"}
CREATE = {"type": "CreateProduct", "name": "X", "price": 1, "stock": 1, "category": "c", "seller_id": "s"}


@pytest.fixture
async def nc(system):
    connection = await system.nats.connect("gateway")
    yield connection
    await connection.close()


@pytest.mark.parametrize(
    ("subject", "payload"),
    [
        ("cmd.order.place", b"not json"),
        ("cmd.order.place", b"[1, 2, 3]"),
        ("cmd.order.place", msgspec.json.encode({"meta": META, "command": {"type": "PlaceOrder", "items": "x"}})),
        ("cmd.order.place", msgspec.json.encode({"meta": META, "command": CREATE})),  # wrong subject for the command
        ("cmd.nothing.here", msgspec.json.encode({"meta": META, "command": CREATE})),
        ("cmd.product.create", msgspec.json.encode({"meta": META, "command": {**CREATE, "price": -1}})),
        ("qry.orders.get", b"\xff\xfe"),
        (
            "qry.products.get",
            msgspec.json.encode({"meta": {"correlation_id": "c"}, "query": {"type": "GetOrder", "id": "o"}}),
        ),
    ],
)
async def test_malformed_requests_get_a_validation_error_reply(nc, system, subject, payload):
    key = system.nats.secret("actor-key")
    reply = reply_decoder.decode((await nc.request(subject, payload, 5, headers=signed(key, subject, payload))).data)
    assert reply.error is not None and reply.error.code == "validation_error", reply


async def test_the_services_are_still_ready_after_bad_input(nc, system):
    key = system.nats.secret("actor-key")
    for payload in (b"", b"{", b"null", b'{"meta": null}'):
        for subject in ("cmd.order.place", "qry.orders.get"):
            await nc.request(subject, payload, timeout=5, headers=signed(key, subject, payload))
    async with httpx.AsyncClient(timeout=5) as http:
        for name in ("command-service", "query-service"):
            assert (await http.get(f"http://127.0.0.1:{system.ports[name]}/health/ready")).status_code == 200
