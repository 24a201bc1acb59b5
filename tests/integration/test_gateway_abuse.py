"""The gateway served as in production (uvicorn, shop.http_server) against a hostile client:
rate limits it cannot dodge, slow clients cut off, the headers a 429 and a 405 owe."""

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack

import httpx
import jwt
import msgspec
import pytest

from gateway.app import create_app
from shop import http_server
from shop.contracts.queries import GetSyncPositions
from shop.contracts.replies import result_reply
from shop.contracts.views import SyncPositions
from shop.projection.engine import Position, position_subject
from tests.conftest import free_port, gateway_settings

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
async def serve(quiet_nats) -> AsyncIterator[Callable]:
    servers = []

    async def start(**overrides) -> str:
        settings = gateway_settings(
            quiet_nats,
            jwt_secret=SECRET,
            http_port=free_port(),
            query_timeout=1,
            **{"rate_limit_per_minute": 3, "http_header_timeout": 1.0, "http_body_timeout": 1.0, **overrides},
        )
        server = http_server.server(create_app(settings), settings)
        servers.append((server, asyncio.create_task(server.serve())))
        deadline = time.monotonic() + 20
        while not server.started:
            assert time.monotonic() < deadline, "the gateway did not start"
            await asyncio.sleep(0.02)
        return f"http://127.0.0.1:{settings.http_port}"

    yield start
    for server, task in servers:
        server.should_exit = True
        await task


async def test_an_anonymous_caller_cannot_pick_its_bucket_with_x_forwarded_for(serve):
    async with httpx.AsyncClient(base_url=await serve()) as client:
        replies = [await client.get("/v1/orders", headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(4)]

    assert [r.status_code for r in replies] == [401, 401, 401, 429]
    limited = replies[-1]
    assert limited.json()["code"] == "rate_limited"
    assert int(limited.headers["Retry-After"]) > 0
    assert limited.headers["RateLimit-Limit"] == "3" and limited.headers["RateLimit-Remaining"] == "0"


async def test_a_trusted_proxy_forwards_the_callers_address(serve):
    async with httpx.AsyncClient(base_url=await serve(trusted_proxies="127.0.0.1")) as client:
        replies = [await client.get("/v1/orders", headers={"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(4)]

    assert [r.status_code for r in replies] == [401, 401, 401, 401]


async def test_paths_that_merely_contain_health_metrics_or_schema_are_limited(serve):
    async with httpx.AsyncClient(base_url=await serve()) as client:
        limited = [await client.get(f"/v1/products/{p}") for p in ("health", "metrics", "schema", "health-x")]
        schema = [await client.get("/schema/openapi.json") for _ in range(4)]
        ops = [await client.get(p) for p in ("/health/live", "/health/ready", "/metrics")]

    assert limited[-1].status_code == 429
    assert {r.status_code for r in schema} == {200}
    assert {r.status_code for r in ops} == {404}, "the ops endpoints are served on the ops port only"


async def test_a_405_says_which_methods_are_allowed(serve):
    async with httpx.AsyncClient(base_url=await serve(rate_limit_per_minute=0)) as client:
        response = await client.delete("/v1/orders")

    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


async def trickle(port: int, request: bytes, every: float, until: float) -> float | None:
    """Sends `request`, then one header byte every `every` seconds; when the server closed the
    connection (seconds after opening it), None if it was still open at `until`."""
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        while time.monotonic() < until:
            try:
                if await asyncio.wait_for(reader.read(1024), every) == b"":
                    return time.monotonic() - opened
            except TimeoutError:
                pass
            try:
                writer.write(b"X")
                await writer.drain()
            except ConnectionError:
                return time.monotonic() - opened
        return None
    finally:
        writer.close()


async def test_slow_clients_are_cut_off_while_others_keep_their_latency(serve):
    base = await serve(rate_limit_per_minute=0)
    port = int(base.rsplit(":", 1)[1])
    async with httpx.AsyncClient(base_url=base) as client:
        await client.get("/schema/openapi.json")  # made once, on the first request
    until = time.monotonic() + 6
    slow_headers = [
        trickle(port, b"GET /schema/openapi.json HTTP/1.1\r\nHost: x\r\nX-Slow: ", 0.2, until) for _ in range(100)
    ]
    slow_body = [
        trickle(port, b"POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{", 0.2, until)
        for _ in range(20)
    ]
    attackers = asyncio.gather(*slow_headers, *slow_body)

    latencies = []
    async with httpx.AsyncClient(base_url=base) as client:
        for _ in range(20):
            started = time.monotonic()
            assert (await client.get("/schema/openapi.json")).status_code == 200
            latencies.append(time.monotonic() - started)
            await asyncio.sleep(0.05)
    closed_after = await attackers

    assert None not in closed_after, "a slow client kept its connection"
    assert max(closed_after) < 4.0  # header / body timeouts of 1 s each, plus scheduling
    assert sorted(latencies)[len(latencies) // 2] < 0.1 and max(latencies) < 1.0


async def test_connections_beyond_the_cap_are_refused_until_slow_ones_are_cut_off(serve):
    base = await serve(rate_limit_per_minute=0, http_max_connections=10, http_header_timeout=1.5)
    port = int(base.rsplit(":", 1)[1])
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
    for _, writer in held:
        writer.write(b"GET /schema/openapi.json HTTP/1.1\r\nHost: x\r\n")  # and nothing more
    await asyncio.gather(*(writer.drain() for _, writer in held))

    async with httpx.AsyncClient(base_url=base) as client:
        over_the_cap = await client.get("/schema/openapi.json")
        deadline = time.monotonic() + 5
        while (after := await client.get("/schema/openapi.json")).status_code != 200:
            assert time.monotonic() < deadline, "the held connections were never cut off"
            await asyncio.sleep(0.1)
    for _, writer in held:
        writer.close()

    assert over_the_cap.status_code == 503
    assert after.status_code == 200


def bearer(user_id: str, expires_in: float = 3600) -> dict[str, str]:
    claims = {"sub": user_id, "exp": int(time.time() + expires_in)}
    return {"Authorization": "Bearer " + jwt.encode(claims, SECRET, "HS256")}


@pytest.fixture
async def projections(quiet_nats) -> AsyncIterator[None]:
    """Stands in for the query-service's snapshot (catalog at 5) while the catalog projector announces
    position 7 in between, as it would while the gateway reads the snapshot."""
    nc, projector = await quiet_nats.connect("query-service"), await quiet_nats.connect("projector-catalog")

    async def snapshot(msg) -> None:
        announcement = msgspec.json.encode(Position(projector="catalog", position=7))
        await projector.publish(position_subject("catalog"), announcement)
        await projector.flush()
        await msg.respond(result_reply(SyncPositions(positions={"catalog": 5})))

    await nc.subscribe(GetSyncPositions.subject, queue="query-service", cb=snapshot)
    await nc.flush()
    yield
    await nc.close()
    await projector.close()


async def events(response: httpx.Response, until: float) -> AsyncIterator[str]:
    """The `data:` lines of a Server-Sent Events response, until it ends or `until` passes."""
    lines = response.aiter_lines()
    while (left := until - time.monotonic()) > 0:
        try:
            line = await asyncio.wait_for(anext(lines), left)
        except (StopAsyncIteration, TimeoutError):
            return
        if line.startswith("data:"):
            yield line


async def test_sync_subscribes_before_its_snapshot_so_no_announcement_is_lost(serve, projections):
    async with (
        httpx.AsyncClient(base_url=await serve(rate_limit_per_minute=0)) as client,
        client.stream("GET", "/v1/sync", headers=bearer("ann")) as response,
    ):
        seen = [line async for line in events(response, time.monotonic() + 3) if "7" in line or "5" in line][:2]

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert seen == ['data: {"projector":"catalog","position":5}', 'data: {"projector":"catalog","position":7}']


async def test_sync_streams_are_capped_per_user_and_per_process(serve, projections):
    base = await serve(rate_limit_per_minute=0, sync_streams_per_user=2, sync_streams_total=3)
    async with httpx.AsyncClient(base_url=base, timeout=5) as client, AsyncExitStack() as streams:
        opened = [await streams.enter_async_context(client.stream("GET", "/v1/sync", headers=bearer("ann")))]
        opened.append(await streams.enter_async_context(client.stream("GET", "/v1/sync", headers=bearer("ann"))))
        third_of_ann = await client.get("/v1/sync", headers=bearer("ann"))
        opened.append(await streams.enter_async_context(client.stream("GET", "/v1/sync", headers=bearer("bob"))))
        over_the_process = await client.get("/v1/sync", headers=bearer("cid"))

    assert [r.status_code for r in opened] == [200, 200, 200]
    for refused in (third_of_ann, over_the_process):
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
        assert int(refused.headers["Retry-After"]) > 0


async def test_sync_streams_share_one_nats_subscription(serve, projections, quiet_nats):
    base = await serve(rate_limit_per_minute=0)
    async with httpx.AsyncClient(base_url=base, timeout=5) as client, AsyncExitStack() as streams:
        for user in ("a", "b", "c", "d"):
            response = await streams.enter_async_context(client.stream("GET", "/v1/sync", headers=bearer(user)))
            assert response.status_code == 200
        connections = (await client.get("/schema/openapi.json")).status_code  # the gateway is still fine
        connz = (await client.get(f"{quiet_nats.monitor_url}/connz", params={"subs": 1})).json()["connections"]
        subscriptions = next(c["subscriptions"] for c in connz if c.get("name") == "gateway")

    assert connections == 200
    assert subscriptions == 2  # the position feed and the request/reply inbox, whatever the number of streams


async def test_a_sync_stream_ends_when_its_token_expires(serve, projections):
    async with httpx.AsyncClient(base_url=await serve(rate_limit_per_minute=0), timeout=10) as client:
        started = time.monotonic()
        async with client.stream("GET", "/v1/sync", headers=bearer("ann", expires_in=2)) as response:
            async for _ in events(response, time.monotonic() + 8):
                pass
        lasted = time.monotonic() - started

    assert response.status_code == 200
    assert 1.0 < lasted < 5.0


async def test_a_token_is_verified_once_until_it_expires(serve, monkeypatch):
    verified = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *args, **kwargs: verified.append(1) or decode(*args, **kwargs))
    expires_in = 2.0
    headers = bearer("ann", expires_in) | {"Content-Type": "application/json"}
    async with httpx.AsyncClient(base_url=await serve(rate_limit_per_minute=100)) as client:

        async def place() -> int:  # the body is refused after the guards and the rate limit read the token
            return (await client.post("/v1/orders", content=b"{}", headers=headers)).status_code

        statuses = [await place() for _ in range(3)]
        once = len(verified)
        await asyncio.sleep(expires_in + 1)  # past `exp`, inside the clock-skew leeway: verified again, accepted
        statuses.append(await place())
        wrong = bearer("ann") | {"Authorization": headers["Authorization"][:-2] + "xx"}  # a bad signature
        refused = [(await client.post("/v1/orders", content=b"{}", headers=wrong)).status_code for _ in range(2)]

    assert statuses == [422] * 4
    assert once == 1 and len(verified) == 2 + 2  # the expired token again, and the bad one once a request
    assert refused == [401, 401]
