"""Nobody gets in where they do not belong (issue 10): each attack of the issue, made with the credentials
the attacker would have, against the system's own NATS server (users of deploy/nats/auth.conf)."""

import asyncio
import contextlib
import time
from pathlib import Path

import asyncpg
import httpx
import msgspec
import nats
import pytest
import redis.exceptions
from nats.aio.client import Client as NATS
from nats.errors import NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import ConsumerConfig
from redis.asyncio import Redis

from shop.contracts.replies import reply_decoder
from shop.messaging import EVENTS_STREAM
from shop.read_models import PROJECTORS, analytics_pointer
from shop.settings import with_password
from shop.signatures import signed
from tests.conftest import ADMIN_DATABASE_URL, POSTGRES, REDIS_ADDRESS, STORE_SECRETS, store_password

pytestmark = pytest.mark.e2e

FORGED_ADMIN = {"actor": {"user_id": "mallory", "roles": ["admin"]}, "correlation_id": "forged"}
SECRET_NAMES = [
    *(f"nats-{user}" for user in ("gateway", "command-service", "query-service", "ops")),
    *(f"nats-projector-{name}" for name in PROJECTORS),
    "actor-key",
    "ops-token",
    "jwt-secret",
]
STORE_SECRET_NAMES = [  # of the tests' Redis and PostgreSQL (deploy/infra.sh)
    *(f"redis-{user}" for user in ("projector-analytics", "query-service", "ops")),
    *(f"postgres-{user}" for user in ("command-service", "ops")),
]
CREATE = {"type": "CreateProduct", "name": "Forged", "price": 1, "stock": 1, "category": "c", "seller_id": "s"}


class Intruder:
    """A connection as one user, which records the permission violations the server reports."""

    def __init__(self, nc: NATS, violations: list[str]) -> None:
        self.nc, self.violations = nc, violations

    async def refused(self, operation: str, subject: str, timeout: float = 5) -> None:
        expected = f'permissions violation for {operation} to "{subject}'.lower()  # (subject: or its start)
        deadline = time.monotonic() + timeout
        while not any(expected in v.lower() for v in self.violations):
            assert time.monotonic() < deadline, f"{operation} to {subject} was not refused: {self.violations}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def connect_as(system):
    opened: list[NATS] = []

    async def connect(user: str) -> Intruder:
        violations: list[str] = []

        async def on_error(exc: Exception) -> None:
            violations.append(str(exc))

        nc = await nats.connect(
            system.nats.url,
            user=user,
            password=system.nats.password(user),
            inbox_prefix=f"_INBOX.{user}",
            error_cb=on_error,
            allow_reconnect=False,
        )
        opened.append(nc)
        return Intruder(nc, violations)

    yield connect
    for nc in opened:
        await nc.close()


async def last_event(system) -> int:
    nc = await system.nats.connect("ops")
    try:
        return (await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq
    finally:
        await nc.close()


@pytest.mark.parametrize("credentials", [{}, {"user": "gateway", "password": "not-the-password"}])
async def test_a_client_without_valid_credentials_is_refused(system, credentials):
    with pytest.raises((nats.errors.Error, NoServersError, OSError)):
        nc = await nats.connect(
            system.nats.url, allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2, **credentials
        )
        await nc.close()


async def test_the_monitoring_port_is_on_loopback_and_shows_no_password(system):
    async with httpx.AsyncClient(base_url=system.nats.monitor_url) as http:
        varz = (await http.get("/varz")).json()
        connz = (await http.get("/connz", params={"auth": "true"})).text

    assert varz["auth_required"] is True and varz["http_host"] == "127.0.0.1"
    for user in ("gateway", "command-service", "ops"):
        assert system.nats.password(user) not in connz + str(varz)


async def test_the_gateway_cannot_publish_events_nor_consume_or_delete_the_stream(system, connect_as):
    before = await last_event(system)
    gateway = await connect_as("gateway")
    js = gateway.nc.jetstream(timeout=1)

    await gateway.nc.publish("evt.order.OrderPlaced", b'{"forged": true}')
    await gateway.refused("publish", "evt.order.OrderPlaced")
    await gateway.nc.subscribe("evt.>")
    await gateway.refused("subscription", "evt.>")
    with pytest.raises(NatsTimeout):
        await js.add_consumer(EVENTS_STREAM, ConsumerConfig(durable_name="eavesdropper", filter_subject="evt.>"))
    await gateway.refused("publish", "$JS.API.CONSUMER.")  # CREATE or DURABLE.CREATE, as nats-py chooses
    with pytest.raises(NatsTimeout):
        await js.delete_stream(EVENTS_STREAM)
    await gateway.refused("publish", "$JS.API.STREAM.DELETE.EVENTS")

    assert await last_event(system) == before  # nothing forged reached the stream, and it is still there


async def test_a_service_reads_no_other_users_replies(system, connect_as):
    gateway = await connect_as("gateway")
    for inbox in ("_INBOX.>", "_INBOX.query-service.>", "_INBOX.command-service.>"):
        await gateway.nc.subscribe(inbox)
        await gateway.refused("subscription", inbox)


async def test_a_projector_sends_no_command_and_touches_no_other_consumer(system, connect_as):
    projector = await connect_as("projector-analytics")
    js = projector.nc.jetstream(timeout=1)

    await projector.nc.publish("cmd.order.ship", msgspec.json.encode({"meta": FORGED_ADMIN}))
    await projector.refused("publish", "cmd.order.ship")
    for forbidden in (js.delete_consumer(EVENTS_STREAM, "catalog"), js.purge_stream(EVENTS_STREAM)):
        with pytest.raises(NatsTimeout):
            await forbidden
    await projector.refused("publish", "$JS.API.CONSUMER.DELETE.EVENTS.catalog")
    await projector.refused("publish", "$JS.API.STREAM.PURGE.EVENTS")
    await projector.nc.publish("proj.catalog.position", b'{"projector": "catalog", "position": 999999}')
    await projector.refused("publish", "proj.catalog.position")


@pytest.mark.parametrize("user", ["gateway", "query-service", "command-service", "projector-order-list", "ops"])
async def test_no_one_but_the_catalog_projector_announces_its_position(system, connect_as, user):
    listener = await system.nats.connect("ops")
    heard = await listener.subscribe("proj.catalog.position")
    forger = await connect_as(user)
    try:
        await forger.nc.publish("proj.catalog.position", b'{"projector": "catalog", "position": 999999}')
        await forger.refused("publish", "proj.catalog.position")
        await forger.nc.flush()
        with contextlib.suppress(NatsTimeout, TimeoutError):
            while True:  # the real projector's announcements may come; the forged one never does
                assert b"999999" not in (await heard.next_msg(timeout=0.5)).data
    finally:
        await listener.close()


@pytest.mark.parametrize(
    ("subject", "body"),
    [
        ("cmd.product.create", {"meta": FORGED_ADMIN, "command": CREATE}),
        ("qry.orders.search", {"meta": FORGED_ADMIN, "query": {"type": "SearchOrders"}}),
    ],
)
async def test_a_forged_caller_with_the_gateways_own_credentials_is_refused(system, connect_as, subject, body):
    before = await last_event(system)
    gateway = await connect_as("gateway")
    payload = msgspec.json.encode(body)
    key = system.nats.secret("actor-key")
    forgeries = [
        None,  # no signature
        signed("a-key-that-is-not-the-gateways-key-00000", subject, payload),
        signed(key, subject, payload.replace(b"mallory", b"mallorx")),  # the signature of another caller
        signed(
            key, "qry.products.get" if subject.startswith("qry") else "cmd.order.pay", payload
        ),  # of another subject
    ]
    for headers in forgeries:
        reply = reply_decoder.decode((await gateway.nc.request(subject, payload, 5, headers=headers)).data)
        assert reply.error is not None and reply.error.code == "unauthorized", reply

    assert await last_event(system) == before


async def test_the_projectors_state_changing_ops_endpoints_need_the_ops_token(system):
    async with httpx.AsyncClient(timeout=10) as http:
        for name in PROJECTORS:
            base = f"http://127.0.0.1:{system.ports['projector-' + name]}"
            for headers in (
                {},
                {"Authorization": "Bearer not-the-token"},
                {"Authorization": system.ops["Authorization"][7:]},
            ):
                started = await http.post(f"{base}/rebuild", headers=headers)
                assert started.status_code == 401, started.text
                assert (await http.delete(f"{base}/rebuild", headers=headers)).status_code == 401
                assert (await http.post(f"{base}/dlq/redrive", json={}, headers=headers)).status_code == 401
            assert (await http.get(f"{base}/rebuild")).status_code == 200  # reading it is open, as health is
            assert (await http.get(f"{base}/health/ready")).status_code == 200
            assert (await http.get(f"{base}/rebuild")).json()["state"] != "replaying"  # none was started


def read_logs(*folders: Path) -> dict[str, str]:
    return {str(log): log.read_text(errors="replace") for folder in folders for log in folder.glob("*.log")}


async def test_no_secret_is_in_any_log_or_error_reply(system, client):
    secrets = {name: system.nats.secret(name) for name in SECRET_NAMES}
    secrets |= {name: store_password(name) for name in STORE_SECRET_NAMES}
    secrets["e2e JWT secret"] = system.env["GATEWAY_JWT_SECRET"]
    assert len(secrets) >= 15 and all(len(value) >= 32 for value in secrets.values())
    replies = [  # errors that could echo what they were given
        await client.get("/v1/orders", headers={"Authorization": f"Bearer {secrets['jwt-secret']}"}),
        await client.post("/v1/orders", content=secrets["actor-key"], headers=system.token("u1")),
        await client.get("/v1/admin/orders/search", headers=system.token("u1")),
    ]
    async with httpx.AsyncClient(timeout=10) as http:
        port = system.ports["projector-catalog"]
        replies.append(await http.post(f"http://127.0.0.1:{port}/rebuild", headers={"Authorization": "Bearer x"}))
    texts = {f"reply {r.request.method} {r.request.url.path}": str(r.headers) + r.text for r in replies}
    logs = read_logs(Path(system.env["RUN_DIR"], "logs"), Path(system.nats.run_dir, "logs"))
    assert len(logs) >= 7  # the six processes and NATS
    stores = STORE_SECRETS.parent / "logs"  # (deploy/infra.sh's)
    logs |= {str(stores / name): (stores / name).read_text(errors="replace") for name in ("redis.log", "postgres.log")}
    texts |= logs

    leaks = [(secret, where) for secret, value in secrets.items() for where, text in texts.items() if value in text]
    assert leaks == []


def analytics_redis_as(user: str | None) -> Redis:
    """The tests' Redis as one ACL user of deploy/infra.sh, with its password (None: anonymous)."""
    password = store_password(f"redis-{user}") if user else ""
    return Redis.from_url(with_password(REDIS_ADDRESS, password, user), socket_timeout=5)


async def test_redis_refuses_anonymous_clients_and_the_default_user():
    for client in (analytics_redis_as(None), Redis.from_url(with_password(REDIS_ADDRESS, "guess", "default"))):
        with pytest.raises((redis.exceptions.AuthenticationError, redis.exceptions.ResponseError)):
            await client.ping()
        await client.aclose()
    ops = analytics_redis_as("ops")
    assert await ops.ping()  # (the server is up: what was refused was the client)
    await ops.aclose()


async def test_the_query_services_redis_user_reads_the_analytics_keys_and_writes_nothing(system):
    pointer = analytics_pointer(system.env["ANALYTICS_PREFIX"])
    reader = analytics_redis_as("query-service")
    try:
        active = await reader.get(pointer)
        assert active  # the projector has written its generation, and the query-service may read it
        writes = [
            reader.set(pointer, b"analytics:forged-"),
            reader.delete(pointer),
            reader.hset(f"{active.decode()}checkpoint", "position", 1),
            reader.eval("return redis.call('SET', KEYS[1], 'x')", 1, pointer),
            reader.flushdb(),
            reader.config_set("appendonly", "no"),
        ]
        for write in writes:
            with pytest.raises(redis.exceptions.NoPermissionError):
                await write
        assert await reader.get(pointer) == active
    finally:
        await reader.aclose()


async def test_the_analytics_projectors_redis_user_writes_only_analytics_keys(system):
    writer = analytics_redis_as("projector-analytics")
    try:
        await writer.set(f"{system.env['ANALYTICS_PREFIX']}probe", 1)  # its own keys: yes
        await writer.delete(f"{system.env['ANALYTICS_PREFIX']}probe")
        for forbidden in (writer.set("elsewhere", 1), writer.flushdb(), writer.keys("*"), writer.acl_list()):
            with pytest.raises(redis.exceptions.NoPermissionError):
                await forbidden
    finally:
        await writer.aclose()


async def test_only_the_command_services_role_writes_the_event_store(system):
    database = system.database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(ADMIN_DATABASE_URL, database=database)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.execute("insert into outbox values (1)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.execute("delete from events")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await admin.fetchval("select count(*) from events")
    finally:
        await admin.close()
    owner = await asyncpg.connect(system.database_url)  # the command-service's own role: the one that may
    try:
        assert await owner.fetchval("select count(*) from events") >= 0
    finally:
        await owner.close()
    with pytest.raises(asyncpg.InvalidPasswordError):  # the old fixed password is gone
        await asyncpg.connect(f"postgresql://shop:shop@{POSTGRES.removeprefix('postgresql://')}/shop")
