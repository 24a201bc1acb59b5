"""Ops HTTP endpoints every process serves (health, metrics) and the process runner. Health and metrics
are open (on loopback unless HTTP_HOST says otherwise); what changes state needs the ops token."""

import argparse
import asyncio
import gc
import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import TypeVar

import msgspec
import structlog
import uvloop
from litestar import Litestar, MediaType, Response, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from litestar.handlers import BaseRouteHandler
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from shop import http_server
from shop.logs import configure_logging
from shop.settings import CommonSettings, load_settings

log = structlog.get_logger()

S = TypeVar("S", bound=CommonSettings)
GC_THRESHOLD = 50_000  # allocations between young-generation collections (Python's default: 700)
PROCESSES = (  # as deploy/services.sh starts them
    "gateway",
    "command-service",
    "query-service",
    "projector-order-list",
    "projector-analytics",
    "projector-catalog",
)
Check = Callable[[], Awaitable[object]]


class Readiness:
    """Named checks of a process's real dependencies; filled in by its lifespan."""

    def __init__(self, timeout: float = 2.0) -> None:
        self.checks: dict[str, Check] = {}
        self.timeout = timeout

    async def run(self) -> tuple[bool, dict[str, str]]:
        async def one(check: Check) -> str:
            try:
                await asyncio.wait_for(check(), self.timeout)
                return "ok"
            except Exception as exc:
                return f"failed: {type(exc).__name__}: {exc}"[:300]

        if not self.checks:
            return False, {"startup": "failed: still starting"}
        names = list(self.checks)
        results = await asyncio.gather(*(one(self.checks[n]) for n in names))
        report = dict(zip(names, results, strict=True))
        return all(r == "ok" for r in results), report


def ops_handlers(readiness: Readiness) -> list:
    @get("/health/live", media_type=MediaType.JSON, include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @get("/health/ready", media_type=MediaType.JSON, include_in_schema=False)
    async def ready() -> Response[Mapping[str, object]]:
        ok, checks = await readiness.run()
        return Response({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)

    @get("/metrics", include_in_schema=False)
    async def metrics() -> Response[bytes]:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return [live, ready, metrics]


def ops_token_guard(token: str) -> Callable[[ASGIConnection, BaseRouteHandler], None]:
    """Only `Authorization: Bearer <ops token>` passes: a header a web page cannot make a browser send
    to another origin, so no page a developer visits can trigger the endpoint."""
    expected = f"Bearer {token}".encode()

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:  # async: not run in a thread
        given = connection.headers.get("authorization", "").encode("utf-8", "replace")
        if not token or not hmac.compare_digest(given, expected):
            raise NotAuthorizedException("this ops endpoint needs 'Authorization: Bearer <ops token>'")

    return guard


def serve(app: Litestar, settings: CommonSettings) -> None:
    """Run the app on uvloop until SIGTERM/SIGINT; uvicorn then runs the lifespan shutdown (drain, close). An
    app with `state.ops_app` (the gateway) serves it beside, on OPS_HOST:OPS_PORT, and stops it after itself."""
    uvloop.run(run_servers(app, settings))


async def run_servers(app: Litestar, settings: CommonSettings) -> None:
    ops = app.state.get("ops_app")
    if ops is None:
        await http_server.server(app, settings).serve()
        return
    side = http_server.server(ops, settings, settings.ops_host, settings.ops_port, signals=False)
    serving = asyncio.create_task(side.serve())
    try:
        await http_server.server(app, settings).serve()
    finally:
        side.should_exit = True
        await serving


def main(service: str, settings_type: type[S], create_app: Callable[[S], Litestar], description: str) -> None:
    """Entry point of every process: `--help`, settings from the environment, logging, serve."""
    argparse.ArgumentParser(
        prog=f"python -m {service.replace('-', '_')}",
        description=description,
        epilog=f"Each setting FOO is read from {service.upper().replace('-', '_')}_FOO or FOO; "
        f"fields: {', '.join(f.name.upper() for f in msgspec.structs.fields(settings_type))}.",
    ).parse_args()
    settings = load_settings(settings_type, service)
    configure_logging(service, settings.log_level)
    app = create_app(settings)
    # Every event and request makes many short-lived containers: with the default threshold (a young
    # collection every 700 allocations) collections were a large share of a replay's time in py-spy's
    # samples. What start-up made (modules, the app) lives as long as the process: no collection need look
    # at it again.
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, 20, 10)
    serve(app, settings)


def ops_app(readiness: Readiness, lifespan: Callable | None, more_handlers: list | None = None) -> Litestar:
    """The ops HTTP app: health, metrics (and more_handlers), no OpenAPI; the whole HTTP of a process but
    the gateway, whose public app runs the lifespan."""
    return Litestar(
        route_handlers=[*ops_handlers(readiness), *(more_handlers or [])],
        lifespan=[lifespan] if lifespan else [],
        openapi_config=None,
        logging_config=None,
    )
