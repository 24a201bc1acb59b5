"""The gateway app: public API under /v1, OpenAPI at /schema; its ops endpoints (health, metrics) are a
second app (`state.ops_app`) on their own port, OPS_PORT."""

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from gateway.analytics import AnalyticsController
from gateway.auth import key_set_middleware, rate_limit_key
from gateway.bus import Bus
from gateway.dependencies import provide_actor, provide_bus, provide_min_position, provide_request_id
from gateway.orders import AdminOrderController, OrderController
from gateway.problems import EXCEPTION_HANDLERS
from gateway.products import ProductController
from gateway.rate_limit import rate_limit
from gateway.settings import Settings
from gateway.sync import PositionFeed, SyncController
from gateway.tokens import TokenVerifier
from gateway.verified_tokens import VerifiedTokens
from shop import messaging
from shop.metrics import HTTP_REQUESTS
from shop.ops import Readiness, ops_app

log = structlog.get_logger()


def request_id_middleware(app: ASGIApp) -> ASGIApp:
    """Takes X-Request-ID (the caller's, or a new one) as the correlation id; times the request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = given if 0 < len(given) <= 128 else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(correlation_id=request_id)
        started, status = time.perf_counter(), 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await app(scope, receive, send_with_status)
        finally:
            route = scope.get("path_template") or "unmatched"
            HTTP_REQUESTS.labels(method=scope["method"], route=route, status=status).observe(
                time.perf_counter() - started
            )
            structlog.contextvars.unbind_contextvars("correlation_id")

    return middleware


async def add_request_id(message: Message, scope: Scope) -> None:
    """Runs for every response, also those Litestar answers before any middleware (404, 405)."""
    if message["type"] == "http.response.start":
        request_id = scope.get("state", {}).get("request_id") or uuid.uuid4().hex
        message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]


async def allow_every_method(message: Message, scope: Scope) -> None:
    """An OPTIONS answer lists every method of its path: Litestar's own lists only the methods of the
    first handler registered on a path that several handlers share."""
    if message["type"] == "http.response.start" and scope.get("method") == "OPTIONS":
        route = next((r for r in scope["litestar_app"].routes if r.path == scope.get("path_template")), None)
        if route is not None:
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
            message["headers"] = [*headers, (b"allow", ", ".join(sorted(route.methods)).encode())]


def create_app(settings: Settings) -> Litestar:
    tokens = TokenVerifier(
        settings.jwt_secret,
        settings.jwt_jwks_url,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_leeway,
        settings.jwt_jwks_refetch,
    )
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        nc = await messaging.connect(settings.nats_url, "gateway", settings.nats_password)
        app.state.bus = Bus(nc, settings.actor_key, settings.command_timeout, settings.query_timeout)
        app.state.feed = PositionFeed(settings.sync_streams_per_user, settings.sync_streams_total)
        await app.state.feed.start(nc)
        readiness.checks.update(nats=lambda: nc.flush(timeout=1))
        log.info("started", port=settings.http_port)
        try:
            yield
        finally:
            readiness.checks.clear()
            await nc.drain()
            log.info("stopped")

    return Litestar(
        route_handlers=[
            ProductController,
            OrderController,
            AdminOrderController,
            AnalyticsController,
            SyncController,
        ],
        dependencies={
            "bus": Provide(provide_bus, sync_to_thread=False),
            "actor": Provide(provide_actor, sync_to_thread=False),
            "request_id": Provide(provide_request_id, sync_to_thread=False),
            "min_position": Provide(provide_min_position, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            request_id_middleware,
            *([key_set_middleware(tokens)] if settings.jwt_jwks_url else []),
            *([rate_limit(settings.rate_limit_per_minute, rate_limit_key)] if settings.rate_limit_per_minute else []),
        ],
        before_send=[add_request_id, allow_every_method],
        lifespan=[lifespan],
        state=State(
            {
                "settings": settings,
                "tokens": tokens,
                "verified_tokens": VerifiedTokens(),
                "ops_app": ops_app(readiness, None),
            }
        ),
        openapi_config=OpenAPIConfig(title="Mobile shop API", version="1.0.0", path="/schema"),
        request_max_body_size=1_000_000,
        logging_config=None,  # shop.logs configured it
    )
