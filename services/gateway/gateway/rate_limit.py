"""The rate limit: each caller (`rate_limit_key`) may make `per_minute` requests in a window of a
minute from its first one; beyond that it gets 429 until the window ends. A plain ASGI middleware
with a counter per caller: Litestar's own re-reads and re-writes every request's timestamp of the
window through its store, on every request."""

import re
import time
from collections.abc import Callable

from litestar.connection import Request
from litestar.exceptions import TooManyRequestsException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

WINDOW = 60  # seconds
UNLIMITED = re.compile(r"^/health/|^/metrics$|^/schema(/|$)")  # anchored: /v1/x/health is limited
SWEEP_ABOVE = 100_000  # callers remembered before the expired windows are dropped


def rate_limit(per_minute: int, key: Callable[[Request], str], clock: Callable[[], float] = time.time):
    windows: dict[str, list[int]] = {}  # caller -> [requests, end of the window (Unix seconds)]

    def headers(used: int, ends: int, now: int) -> dict[str, str]:
        return {
            "RateLimit-Policy": f"{per_minute}; w={WINDOW}",
            "RateLimit-Limit": str(per_minute),
            "RateLimit-Remaining": str(max(0, per_minute - used)),
            "RateLimit-Reset": str(max(1, ends - now)),
        }

    def middleware(app: ASGIApp) -> ASGIApp:
        async def limited(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or UNLIMITED.match(scope["path"]):
                await app(scope, receive, send)
                return
            now, caller = int(clock()), key(Request(scope, receive))
            window = windows.get(caller)
            if window is None or window[1] <= now:
                if len(windows) >= SWEEP_ABOVE:
                    for stale in [k for k, (_, ends) in windows.items() if ends <= now]:
                        del windows[stale]
                window = windows[caller] = [0, now + WINDOW]
            if window[0] >= per_minute:
                raise TooManyRequestsException(headers=headers(window[0], window[1], now))
            window[0] += 1
            added = [(k.lower().encode(), v.encode()) for k, v in headers(window[0], window[1], now).items()]

            async def send_with_headers(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [*message.get("headers", []), *added]
                await send(message)

            await app(scope, receive, send_with_headers)

        return limited

    return middleware
