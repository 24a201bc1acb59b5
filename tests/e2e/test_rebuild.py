"""Rebuild with no downtime (DESIGN §5.7): each projector replays the stream into a new generation
while the old one serves reads and takes writes, then switches; nothing is lost or doubled."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest
from opensearchpy import AsyncOpenSearch
from redis.asyncio import Redis

from shop.read_models import PROJECTORS, analytics_pointer
from tests.conftest import OPENSEARCH_URL, REDIS_URL
from tests.e2e.histories import history, read_models

pytestmark = pytest.mark.e2e


async def rebuild_status(http: httpx.AsyncClient, system, projector: str) -> dict:
    return (await http.get(f"http://127.0.0.1:{system.ports[f'projector-{projector}']}/rebuild")).json()


async def test_every_read_model_is_rebuilt_while_it_keeps_serving(client, system):
    products, orders, _ = await history(client, system)
    restock = {"quantity": 10_000}  # enough for the orders placed while rebuilding
    restocked = await client.post(
        f"/v1/admin/products/{products[1]}/restock", json=restock, headers=system.token("boss", "admin")
    )
    before = await read_models(client, system, products, orders, restocked.json()["position"])
    price = before[products[1]]["price"]

    async with httpx.AsyncClient(timeout=10) as http:
        for projector in PROJECTORS:
            url = f"http://127.0.0.1:{system.ports[f'projector-{projector}']}/rebuild"
            started = await http.post(url, headers=system.ops)
            assert started.status_code == 202, started.text
        extra, reads, first_write_at, false_fresh = [], 0, None, 0
        while True:  # writes and reads go on while the read models are rebuilt
            body = {"items": [{"product_id": products[1], "quantity": 1}]}
            placed = await client.post("/v1/orders", json=body, headers=system.token("during-rebuild"))
            assert placed.status_code == 201, placed.text
            extra.append(placed.json())
            first_write_at = first_write_at or datetime.now(UTC)
            for path in (f"/v1/products/{products[1]}", f"/v1/orders/{orders[0]}", "/v1/admin/analytics/summary"):
                read = await client.get(path, headers=system.token("boss", "admin"))
                assert read.status_code == 200, (path, read.text)
                reads += 1
            token = {**system.token("during-rebuild"), "X-Consistency-Token": str(extra[-1]["position"])}
            own = await client.get(f"/v1/orders/{extra[-1]['id']}", headers=token)
            if own.headers["X-Consistency"] == "fresh" and own.status_code != 200:
                false_fresh += 1
            statuses = {p: await rebuild_status(http, system, p) for p in PROJECTORS}
            if all(s["state"] in ("done", "failed") for s in statuses.values()):
                break
            await asyncio.sleep(0.02)
    print(f"\n{len(extra)} orders placed and {reads} reads answered while rebuilding")
    assert false_fresh == 0, f"{false_fresh} reads of the caller's own order said fresh without it"
    assert {p: s["state"] for p, s in statuses.items()} == dict.fromkeys(PROJECTORS, "done"), statuses
    assert all(first_write_at < datetime.fromisoformat(s["finished_at"]) for s in statuses.values())  # overlapped

    after = await read_models(client, system, products, orders, max(o["position"] for o in extra))
    n = len(extra)
    assert after[products[0]] == before[products[0]]
    assert {k: after[products[1]][k] for k in ("stock", "version")} == {
        "stock": before[products[1]]["stock"] - n,
        "version": before[products[1]]["version"] + n,
    }
    assert all(after[o] == before[o] for o in orders)
    assert after["summary"]["order_count"] == before["summary"]["order_count"] + n
    assert after["summary"]["revenue"] == before["summary"]["revenue"] + n * price
    units = {p["id"]: p["units_sold"] for p in after["popular"]["items"]}
    before_units = {p["id"]: p["units_sold"] for p in before["popular"]["items"]}
    assert units[products[1]] == before_units[products[1]] + n
    for o in extra:
        order = await client.get(f"/v1/orders/{o['id']}", headers=system.token("during-rebuild"))
        assert order.status_code == 200 and order.json()["status"] == "placed"

    # the new generations serve; the old ones are gone
    search = AsyncOpenSearch(hosts=[OPENSEARCH_URL])
    try:
        for alias in ("products", "orders"):
            served = list(await search.indices.get_alias(name=system.index_prefix + alias))
            previous = statuses["catalog" if alias == "products" else "order-list"]["previous"]
            assert served == [statuses["catalog" if alias == "products" else "order-list"]["generation"]]
            assert not await search.indices.exists(index=previous)
    finally:
        await search.close()
    redis = Redis.from_url(REDIS_URL)
    try:
        base = system.env["ANALYTICS_PREFIX"]
        assert (await redis.get(analytics_pointer(base))).decode() == statuses["analytics"]["generation"]
        assert not [k async for k in redis.scan_iter(match=f"{statuses['analytics']['previous']}*")]
    finally:
        await redis.aclose()


async def test_just_rebuild_follows_a_rebuild_to_its_end(system):
    port = system.ports["projector-catalog"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shop.projection.rebuild",
            "catalog",
            "--url",
            f"http://127.0.0.1:{port}",
            "--timeout",
            "60",
        ],
        env=system.env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "events replayed into" in done.stdout.splitlines()[-1]
    assert "rebuild catalog" in done.stderr  # the progress bar
