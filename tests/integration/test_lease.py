"""A projector's lease (shop.projection.lease) on a real NATS server (a bucket of its own: the tests'
system holds the projectors' own; the end-to-end tests run the projectors under their NATS users): one
holder at a time, taken over once the holder stops renewing (the TTL), given up at once on release,
and invalid for its holder before it can have expired on the server."""

import asyncio
import time

import pytest

from shop.projection.lease import Lease, LeaseLost, Partitions

TTL = 2.0


@pytest.fixture
async def pair(nats):
    first, second = await nats.connect("ops"), await nats.connect("ops")
    leases = [Lease(nc.jetstream(), "lease-test", member, ttl=TTL) for nc, member in ((first, "a"), (second, "b"))]
    for lease in leases:
        await lease.open()
    yield leases
    for lease in leases:
        await lease.release()
    await first.close()
    await second.close()


async def until(condition, timeout: float) -> float:
    started = time.monotonic()
    while not await condition():
        assert time.monotonic() - started < timeout, f"not within {timeout}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def test_one_holder_at_a_time_and_a_release_hands_it_over_at_once(pair):
    a, b = pair
    assert await until(a.acquire, TTL * 3) >= 0  # one left by an earlier test runs out first
    assert not await b.acquire()
    assert await a.renew() and a.valid() and await b.owner() == "a"
    await a.release()
    assert not a.held and await b.acquire()
    assert b.token > 0 and await a.owner() == "b"


async def test_a_holder_that_stops_renewing_loses_it_within_the_ttl_and_knows_first(pair):
    a, b = pair
    await until(a.acquire, TTL * 3)
    taken_at = time.monotonic()
    # a stops renewing (stalled): it counts itself invalid before the server can let b take it
    await until(lambda: asyncio.sleep(0, result=not a.valid()), TTL * 2)
    invalid_after = time.monotonic() - taken_at
    with pytest.raises(LeaseLost):
        a.check()
    await until(b.acquire, TTL * 2 + 1)
    assert time.monotonic() - taken_at > invalid_after  # no overlap: a had given up first
    assert b.token > a.token
    assert not await a.renew() and not a.held  # it learns it has lost it


async def test_a_bucket_made_with_another_ttl_is_used_with_its_own(nats):
    nc = await nats.connect("ops")
    try:
        await Lease(nc.jetstream(), "lease-ttl-test", "a", ttl=TTL).open()
        longer = Lease(nc.jetstream(), "lease-ttl-test", "b", ttl=TTL * 5)
        await longer.open()  # refused by the server as a new bucket: the one there counts
        assert longer.ttl == TTL and longer.interval == TTL / 5
    finally:
        await nc.close()


async def test_partitions_are_shared_fairly_and_a_rebuild_takes_them_all(nats):
    """Members count while they renew; the share is ceil(count / members); the process running a rebuild
    is due every partition, the others none; a graceful leave frees everything at once."""
    first, second = await nats.connect("ops"), await nats.connect("ops")
    a, b = (Partitions(nc.jetstream(), "partitions-test", m, 8, ttl=TTL) for nc, m in ((first, "a:1"), (second, "b:2")))
    try:
        for member in (a, b):
            await member.open()
        await a.renew()
        assert await a.share(rebuilding=False) == 8
        await a.take(8)
        assert a.owned == frozenset(range(8))
        await b.renew()
        assert await a.share(rebuilding=False) == await b.share(rebuilding=False) == 4
        await b.take(4)
        assert b.owned == frozenset()  # nothing free until a gives its extra up
        await a.release(frozenset(range(4, 8)))
        await b.take(4)
        assert b.owned == frozenset(range(4, 8)) and a.owned == frozenset(range(4))
        with pytest.raises(LeaseLost):
            a.check(frozenset({4}))
        a.check(a.owned)
        assert b.token(4) > a.token(0)

        assert await a.share(rebuilding=True) == 8 and await b.share(rebuilding=False) == 0
        assert await a.share(rebuilding=False) == 4  # the rebuild over: the key is given up

        await b.leave()
        assert b.owned == frozenset()
        assert await a.share(rebuilding=False) == 8  # b no longer counts
        await a.take(8)
        assert a.owned == frozenset(range(8))
    finally:
        for member in (a, b):
            await member.leave()
        await first.close()
        await second.close()


async def test_a_release_after_a_renewal_whose_answer_was_lost_still_gives_the_lease_up(pair):
    """A renewal cancelled after the server took it (a graceful stop in the middle of it) leaves the holder
    an older revision: the release must still delete the key, not leave it to expire."""
    a, b = pair
    await until(a.acquire, TTL * 3)
    await a._kv.update(a.key, a.member.encode(), last=a._revision)  # taken by the server, never seen by `a`
    await a.release()
    assert await b.acquire()
