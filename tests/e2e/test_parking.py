"""A poison event parks its aggregate (DESIGN §5.5, §5.8): a read whose token covers the parked event
says `stale`, errors carry the consistency headers too, a rebuild parks it again without dead-lettering
anything twice, and `just dlq` drops the poison and re-drives the rest, which unparks the aggregate."""

import subprocess
import sys

import msgspec
import pytest

from shop.contracts.events import ProductRestocked
from tests.e2e.histories import history
from tests.envelopes import envelope

pytestmark = pytest.mark.e2e


def dlq(system, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "shop.projection.dlq", *args], env=system.env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def test_a_parked_aggregate_reads_stale_until_its_letters_are_redriven(client, system):
    [product, _], _, position = await history(client, system)
    admin = system.token("boss", "admin")
    current = await client.get(f"/v1/products/{product}", headers={"X-Consistency-Token": str(position)})
    version = current.json()["version"]
    nc = await system.nats.connect("command-service")  # as a bug in it would
    try:  # an event whose predecessors never came: the projections reject it and park the product
        poison = envelope(product, version + 5, ProductRestocked(quantity=1_000))
        await nc.jetstream().publish(poison.subject, msgspec.json.encode(poison))
    finally:
        await nc.close()
    restocked = await client.post(f"/v1/admin/products/{product}/restock", json={"quantity": 7}, headers=admin)
    token = {"X-Consistency-Token": str(restocked.json()["position"])}

    parked = await client.get(f"/v1/products/{product}", headers=token)
    assert parked.status_code == 200 and parked.headers["X-Consistency"] == "stale"
    assert parked.json()["version"] == version  # the restock waits in the DLQ behind the poison
    missing = await client.get("/v1/products/no-such-product", headers=token)
    assert missing.status_code == 404 and missing.headers["X-Consistency"] == "fresh"
    assert int(missing.headers["X-Read-Position"]) >= int(token["X-Consistency-Token"])

    listed = dlq(system, "list", "--projector", "catalog")
    rebuilt = subprocess.run(
        [sys.executable, "-m", "shop.projection.rebuild", "catalog"], env=system.env, capture_output=True, timeout=90
    )
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert dlq(system, "list", "--projector", "catalog") == listed  # the replay re-dead-lettered nothing
    again = await client.get(f"/v1/products/{product}", headers=token)
    assert again.headers["X-Consistency"] == "stale"  # parked in the new generation too
    poison_letter = next(line.split()[0] for line in listed.splitlines() if f"v{version + 5}" in line)
    dlq(system, "drop", "--seq", poison_letter)
    assert "1 re-driven" in dlq(system, "redrive", "--projector", "catalog")

    fresh = await client.get(f"/v1/products/{product}", headers=token)
    assert fresh.headers["X-Consistency"] == "fresh"
    assert fresh.json()["version"] == version + 1
    assert f"product/{product}" not in dlq(system, "list", "--projector", "catalog")
