"""NATS and JetStream helpers shared by every process: connect, streams, request/reply."""

import asyncio
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import msgspec
import nats
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shop.contracts.replies import Reply, error_reply, reply_decoder
from shop.errors import ShopError, Unauthorized, Unavailable, ValidationFailed
from shop.metrics import REQUESTS
from shop.signatures import is_signed

log = structlog.get_logger()

EVENTS_STREAM = "EVENTS"
DLQ_STREAM = "DLQ"
# the outbox relay's re-publish after a crash is dropped as a duplicate within this window (seconds)
DUPLICATE_WINDOW = 600
# seconds the creation of a stream or consumer may take: on a cluster it waits for its group's election
API_TIMEOUT = 15.0


async def connect(url: str, name: str, password: str = "", deadline: float = 60.0) -> NATS:
    """Connect as the NATS user `name` (with `password`, else as the user in `url`), retrying with backoff
    until `deadline` seconds have passed; reconnects forever after, to any of the servers. `url` may list
    several, comma-separated (the nodes of a cluster). Replies come to the user's own inbox prefix, the
    only one deploy/nats/auth.conf lets it read."""
    delay, loop = 0.2, asyncio.get_running_loop()
    give_up = loop.time() + deadline
    servers = url.split(",")
    user = name if password else urlsplit(servers[0]).username
    credentials = {"user": user, "password": password} if password else {}
    while True:
        try:
            return await nats.connect(
                servers,
                name=name,
                inbox_prefix=f"_INBOX.{user}" if user else "_INBOX",
                **credentials,
                max_reconnect_attempts=-1,
                reconnect_time_wait=1,
                connect_timeout=2,
                allow_reconnect=True,
            )
        except (OSError, NoServersError, NatsTimeout) as exc:
            if loop.time() > give_up:
                raise Unavailable(f"NATS at {redacted(url)} unreachable: {exc}") from exc
            log.warning("nats_connect_retry", error=str(exc), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def ensure_streams(nc: NATS, replicas: int = 1, mend: bool = False) -> None:
    """Create the EVENTS and DLQ streams with `replicas` copies (3 on a cluster); safe to call from every
    process. With `mend` (the command-service: only it may update them), also mend a config that drifted
    (fewer replicas than that included), or that an older version made.

    Nothing is ever discarded to make room: EVENTS is the log every rebuild replays, so a full store
    refuses new publishes (the outbox keeps them) rather than dropping old events. A 10-minute
    duplicate window makes the outbox relay's re-publish after a crash a no-op."""
    js = nc.jetstream(timeout=API_TIMEOUT)
    for name, subject in ((EVENTS_STREAM, "evt.>"), (DLQ_STREAM, "dlq.>")):
        config = StreamConfig(
            name=name,
            subjects=[subject],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.NEW,
            max_age=0,
            max_bytes=-1,
            max_msgs=-1,
            duplicate_window=DUPLICATE_WINDOW,
            num_replicas=replicas,
            allow_direct=name == DLQ_STREAM or None,  # letters are listed in batches (shop.projection.dlq)
        )
        try:
            existing = (await js.stream_info(name)).config
        except NotFoundError:
            await js.add_stream(config)
            continue
        drifted = (
            existing.discard,
            existing.max_age or 0,
            existing.max_bytes,
            existing.max_msgs,
            bool(existing.allow_direct),
        ) != (DiscardPolicy.NEW, 0, -1, -1, bool(config.allow_direct))
        if drifted or (existing.num_replicas or 1) < replicas:
            if not mend:
                log.warning("stream_config_drifted", stream=name, mended_by="command-service")
                continue
            log.warning("stream_config_mended", stream=name)
            await js.update_stream(config)


def redacted(url: str) -> str:
    """The URL (or URLs) without the password it may carry."""
    if "," in url:
        return ",".join(map(redacted, url.split(",")))
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=f"{parts.hostname}:{parts.port}" if parts.port else parts.hostname).geturl()


Handler = Callable[[Msg], Awaitable[bytes]]


class Responder:
    """Serves request/reply subjects in a queue group, each request in its own task, so a slow
    request never blocks the others; `drain()` stops taking requests and finishes in-flight ones.
    A request the gateway did not sign with `actor_key` is refused (`unauthorized`) unread."""

    def __init__(self, nc: NATS, actor_key: str) -> None:
        self._nc, self._actor_key = nc, actor_key
        self._tasks: set[asyncio.Task] = set()
        self._subscriptions: list = []

    async def serve(self, subject: str, queue: str, handle: Handler) -> None:
        async def on_message(msg: Msg) -> None:
            task = asyncio.create_task(self._answer(msg, handle))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

        self._subscriptions.append(await self._nc.subscribe(subject, queue=queue, cb=on_message))

    async def _answer(self, msg: Msg, handle: Handler) -> None:
        structlog.contextvars.bind_contextvars(subject=msg.subject)
        try:
            if not is_signed(self._actor_key, msg):
                raise Unauthorized("the request does not carry the gateway's signature of its caller")
            payload = await handle(msg)
            outcome = "ok"
        except msgspec.ValidationError as exc:
            payload, outcome = error_reply(ValidationFailed(str(exc))), "validation_error"
        except msgspec.DecodeError as exc:
            payload, outcome = error_reply(ValidationFailed(f"malformed JSON: {exc}")), "validation_error"
        except ShopError as exc:
            payload, outcome = error_reply(exc), exc.code
        except Exception as exc:  # never crash on input: answer, log, carry on
            log.exception("request_failed")
            payload, outcome = error_reply(ShopError(f"unexpected error: {type(exc).__name__}")), "internal_error"
        REQUESTS.labels(subject=msg.subject, outcome=outcome).inc()
        if msg.reply:
            try:
                await msg.respond(payload)
            except Exception:
                log.warning("reply_failed", exc_info=True)

    async def drain(self, timeout: float) -> None:
        for subscription in self._subscriptions:
            await subscription.drain()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)


async def request(
    nc: NATS,
    subject: str,
    payload: bytes,
    timeout: float,
    on_timeout: type[ShopError] = Unavailable,
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send a request and decode the reply; raises the reply's error as a ShopError. No responder is
    Unavailable (nothing was done); no answer in time is `on_timeout` (a command's outcome is unknown)."""
    try:
        msg = await nc.request(subject, payload, timeout=timeout, headers=headers)
    except NoRespondersError as exc:
        raise Unavailable(f"no service answers {subject}; nothing was done") from exc
    except NatsTimeout as exc:
        raise on_timeout(f"{subject} did not answer within {timeout:.0f}s") from exc
    try:
        reply = reply_decoder.decode(msg.data)
    except msgspec.MsgspecError as exc:
        raise ShopError(f"{subject} sent a malformed reply: {exc}") from exc
    reply.raise_for_error()
    return reply
