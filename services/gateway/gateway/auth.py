"""Bearer JWT -> Actor (`sub` is the user id, `roles` a list; "admin" opens the admin routes).
Route guards check the caller before anything reads the body."""

from collections.abc import Callable

import msgspec
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.types import ASGIApp, Receive, Scope, Send

from gateway.tokens import TokenVerifier
from shop.contracts.commands import Actor
from shop.errors import Forbidden, Unauthorized, Unavailable, UnsupportedMediaType


def actor_from(request: ASGIConnection, tokens: TokenVerifier) -> tuple[Actor, float] | None:
    """The caller and when its token expires (Unix time); None without a token."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("use 'Authorization: Bearer <JWT>'")
    claims = tokens.claims(token)
    try:
        actor = msgspec.convert({"user_id": claims["sub"], "roles": claims.get("roles", [])}, Actor)
    except msgspec.ValidationError as exc:
        raise Unauthorized(
            f"invalid token: 'sub' must be a user id of 1 to 64 characters, 'roles' strings ({exc})"
        ) from exc
    return actor, float(claims["exp"])


def key_set_middleware(tokens: TokenVerifier) -> Callable[[ASGIApp], ASGIApp]:
    """Fetches the key set that a request's bearer token needs before anything verifies it: verifying is
    synchronous (guards, the rate limiter's key), fetching is not."""

    def factory(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] == "http":
                scheme, _, token = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token:
                    await tokens.prepare(token)
            await app(scope, receive, send)

        return middleware

    return factory


def caller(connection: ASGIConnection) -> Actor | None:
    """The request's caller, decoded once (or refused once) and kept in the request's state; a token
    already verified by this gateway, and not expired since, is not verified again."""
    state = connection.scope.setdefault("state", {})
    if "caller" not in state:
        app_state, header = connection.app.state, connection.headers.get("authorization")
        found = app_state.verified_tokens.get(header) if header else None
        if found is None:
            try:
                found = actor_from(connection, app_state.tokens)
            except (Unauthorized, Unavailable) as exc:
                found = exc
            if isinstance(found, tuple):
                app_state.verified_tokens.put(header, found, found[1])
        state["caller"] = found
    if isinstance(state["caller"], Unauthorized | Unavailable):
        raise state["caller"]
    return state["caller"][0] if state["caller"] else None


def token_expiry(connection: ASGIConnection) -> float:
    """When the caller's token expires (Unix time); only for a route with a signed-in caller."""
    caller(connection)
    return connection.scope["state"]["caller"][1]


# guards are coroutines: Litestar would run a plain function guard in a worker thread
async def require_user(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    if caller(connection) is None:
        raise Unauthorized("this route needs a bearer token")


async def require_admin(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    await require_user(connection, handler)
    if not caller(connection).is_admin:
        raise Forbidden("this route needs the admin role")


async def json_body(connection: ASGIConnection, _: BaseRouteHandler) -> None:
    """A body is JSON and says so: another Content-Type is refused rather than parsed as JSON."""
    has_body = connection.headers.get("content-length", "0") != "0" or "transfer-encoding" in connection.headers
    media_type = connection.headers.get("content-type", "").split(";")[0].strip().lower()
    if has_body and media_type != "application/json":
        raise UnsupportedMediaType("send the body as 'Content-Type: application/json'")


USER = [require_user, json_body]  # the guards of a route for any signed-in user
ADMIN = [require_admin, json_body]  # ... and of an admin route


def rate_limit_key(request: Request) -> str:
    """Callers are limited per user; callers without a (valid) token per address."""
    try:
        found = caller(request)  # kept in the request's state: the guards do not verify it again
    except (Unauthorized, Unavailable):
        found = None
    return f"user:{found.user_id}" if found else f"address:{request.client.host if request.client else 'unknown'}"
