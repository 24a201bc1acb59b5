"""How every process serves HTTP: uvicorn parsing with httptools (on uvloop: `ops.serve`), with
protection from slow clients. A request must arrive whole in time (its headers within
`header_timeout` of its first byte or of the connection, its body within `body_timeout` after
that), or its connection is closed; beyond `max_connections` open connections new requests get
503; proxy headers count only from the addresses in `trusted_proxies`."""

import asyncio
import contextlib

import uvicorn
from litestar import Litestar
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from shop.settings import CommonSettings


class SlowClientGuard(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 30.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._timer: asyncio.TimerHandle | None = None
        self._timed_body = None
        self._watch(self.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._timer is None and (self.cycle is None or self.cycle.response_complete):
            self._watch(self.header_timeout)  # the next request on a kept-alive connection
        super().data_received(data)
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return  # its headers are still coming
        if not cycle.more_body:
            self._stop_watching()  # the whole request is here
        elif cycle is not self._timed_body:
            self._timed_body = cycle
            self._watch(self.body_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _watch(self, seconds: float) -> None:
        self._stop_watching()
        self._timer = self.loop.call_later(seconds, self._too_slow)

    def _stop_watching(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _too_slow(self) -> None:
        self._timer = None
        self.logger.info("closing a connection whose request did not arrive in time")
        self.transport.close()


class SideServer(uvicorn.Server):
    """A second server of the process: the first one takes SIGTERM/SIGINT and stops this one."""

    def capture_signals(self):  # type: ignore[override]
        return contextlib.nullcontext()


def server(
    app: Litestar, settings: CommonSettings, host: str | None = None, port: int | None = None, signals: bool = True
) -> uvicorn.Server:
    guard = type(
        "SlowClientGuard",
        (SlowClientGuard,),
        {"header_timeout": settings.http_header_timeout, "body_timeout": settings.http_body_timeout},
    )
    config = uvicorn.Config(
        app,
        host=host or settings.http_host,
        port=port or settings.http_port,
        http=guard,
        limit_concurrency=settings.http_max_connections,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=settings.trusted_proxies or None,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
    )
    return uvicorn.Server(config) if signals else SideServer(config)
