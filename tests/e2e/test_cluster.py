"""The system on a 3-node JetStream cluster (NATS_CLUSTER=3, streams R3): the node leading EVENTS is
killed with SIGKILL while orders flow. Commands go on (a 503 now and then, never a 500); every event
of the event store is in EVENTS exactly once, in commit order; the read models equal a rebuild; the
node comes back and holds the same stream as the others (its own /jsz)."""

import asyncio
import time

import asyncpg
import httpx
import pytest

from shop.messaging import DLQ_STREAM, EVENTS_STREAM
from tests.conftest import NatsServer
from tests.e2e.conftest import running_system
from tests.e2e.test_faults import everything_accounted_for, placed_at_least, traffic

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory):
    server = NatsServer(tmp_path_factory.mktemp("cluster-nats"), nodes=3)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def clustered(cluster, tmp_path_factory):
    async with running_system(tmp_path_factory.mktemp("cluster-run"), cluster, NATS_STREAM_REPLICAS="3") as system:
        yield system


async def test_the_streams_are_replicated_on_three_nodes(clustered):
    nc = await clustered.nats.connect("ops")
    try:
        for name in (EVENTS_STREAM, DLQ_STREAM):
            info = await nc.jetstream().stream_info(name)
            assert info.config.num_replicas == 3
            assert info.cluster.leader and len(info.cluster.replicas) == 2, info.cluster
    finally:
        await nc.close()


async def test_the_stream_leader_killed_under_writes(clustered, cluster):
    nc = await cluster.connect("ops")
    try:
        async with traffic(clustered) as flow:
            await placed_at_least(flow, 10)
            leader = (await nc.jetstream().stream_info(EVENTS_STREAM)).cluster.leader
            killed = int(leader.rsplit("-", 1)[1])  # shop-nats-<node>
            cluster.kill(killed)
            await placed_at_least(flow, 20)
            cluster.start()
            await placed_at_least(flow, 10)
        assert set(flow.statuses) <= {201, 503}, flow.statuses
        await node_caught_up(cluster, killed)
        await every_event_once(clustered.database_url, nc)
        await everything_accounted_for(clustered, flow)
    finally:
        await nc.close()


async def every_event_once(database_url: str, nc) -> None:
    """EVENTS holds each event of the event store once, at the sequence the relay recorded for it."""
    db = await asyncpg.connect(database_url)
    try:
        rows = await db.fetch("select event_id::text, stream_seq from events order by global_position")
    finally:
        await db.close()
    js = nc.jetstream()
    last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
    stored = {seq: (await js.get_msg(EVENTS_STREAM, seq)).headers["Nats-Msg-Id"] for seq in range(1, last + 1)}
    assert stored == {r["stream_seq"]: r["event_id"] for r in rows}


async def node_caught_up(cluster: NatsServer, node: int, timeout: float = 30) -> None:
    """Until the node's own monitoring shows the streams in the same state as every other node's."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as http:
        while True:
            states = []
            for port in cluster.monitor_ports:
                jsz = (await http.get(f"http://127.0.0.1:{port}/jsz", params={"accounts": 1, "streams": 1})).json()
                streams = [s for a in jsz.get("account_details", []) for s in a.get("stream_detail", [])]
                states.append(  # (the projectors' lease buckets change every second: not compared)
                    {
                        s["name"]: (s["state"]["messages"], s["state"]["first_seq"], s["state"]["last_seq"])
                        for s in streams
                        if s["name"] in (EVENTS_STREAM, DLQ_STREAM)
                    }
                )
            if all(state == states[0] and set(state) == {EVENTS_STREAM, DLQ_STREAM} for state in states):
                return
            assert time.monotonic() < deadline, f"node {node} not caught up after {timeout}s: {states}"
            await asyncio.sleep(0.2)
