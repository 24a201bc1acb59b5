"""How long a write takes to become visible in each read model (`just bench`).

Places orders one after another through the gateway of a running system (`./justw up`) and, from
GET /v1/sync, times the moment each projection announces a position at or past the order's
`position`. Prints p50/p95/p99/max of the command reply and of each read model's visibility."""

import argparse
import asyncio
import os
import statistics
import time

import httpx
import jwt
import msgspec

PROJECTIONS = ("catalog", "order-list", "analytics")


def percentiles(samples: list[float]) -> str:
    ms = sorted(s * 1000 for s in samples)
    q = statistics.quantiles(ms, n=100, method="inclusive")
    return f"p50 {q[49]:7.1f} ms   p95 {q[94]:7.1f} ms   p99 {q[98]:7.1f} ms   max {ms[-1]:7.1f} ms"


async def follow(http: httpx.AsyncClient, headers: dict, seen: dict[str, tuple[int, float]], ready: asyncio.Event):
    """Keeps `seen[projection] = (position, monotonic time it was announced)` up to date."""
    async with http.stream("GET", "/v1/sync", headers=headers, timeout=None) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data:"):
                announced = msgspec.json.decode(line.removeprefix("data:").strip())
                seen[announced["projector"]] = (announced["position"], time.monotonic())
                if len(seen) == len(PROJECTIONS):
                    ready.set()


async def main(url: str, writes: int, secret: str) -> None:
    admin = {
        "Authorization": "Bearer "
        + jwt.encode({"sub": "bench-admin", "roles": ["admin"], "exp": int(time.time()) + 3600}, secret, "HS256")
    }
    user = {
        "Authorization": "Bearer "
        + jwt.encode({"sub": "bench-user", "roles": [], "exp": int(time.time()) + 3600}, secret, "HS256")
    }
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:
        body = {"name": "Bench item", "price": 100, "stock": writes * 10, "category": "bench", "seller_id": "bench"}
        product = (await http.post("/v1/admin/products", json=body, headers=admin)).raise_for_status().json()
        seen: dict[str, tuple[int, float]] = {}
        ready = asyncio.Event()
        follower = asyncio.create_task(follow(http, user, seen, ready))
        await asyncio.wait_for(ready.wait(), 10)
        replies, visible = [], {p: [] for p in (*PROJECTIONS, "all three")}
        order = {"items": [{"product_id": product["id"], "quantity": 1}]}
        for n in range(1, writes + 1):
            started = time.monotonic()
            reply = (await http.post("/v1/orders", json=order, headers=user)).raise_for_status().json()
            replies.append(time.monotonic() - started)
            deadline = started + 10
            while any(seen[p][0] < reply["position"] for p in PROJECTIONS):
                if time.monotonic() > deadline:
                    raise SystemExit(f"write {n} (position {reply['position']}) not visible after 10 s: {seen}")
                await asyncio.sleep(0.0005)
            for p in PROJECTIONS:
                visible[p].append(seen[p][1] - started)
            visible["all three"].append(max(seen[p][1] for p in PROJECTIONS) - started)
            if n % 100 == 0:
                print(f"  {n}/{writes} writes", flush=True)
        follower.cancel()
    print(f"\n{writes} orders, one at a time, against {url}")
    print(f"{'command reply':>14}: {percentiles(replies)}")
    for name, samples in visible.items():
        print(f"{name:>14}: {percentiles(samples)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("GATEWAY_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--jwt-secret", default=os.environ.get("GATEWAY_JWT_SECRET", "dev-secret"))
    args = parser.parse_args()
    asyncio.run(main(args.url, args.writes, args.jwt_secret))
