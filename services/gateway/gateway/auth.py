"""Bearer JWT -> Actor (`sub` is the user id, `roles` a list; "admin" opens the admin routes)."""

import jwt
from litestar import Request

from shop.contracts.commands import Actor
from shop.errors import Forbidden, Unauthorized


def actor_from(request: Request, secret: str, algorithm: str) -> Actor | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("use 'Authorization: Bearer <JWT>'")
    try:
        claims = jwt.decode(token, secret, algorithms=[algorithm], options={"require": ["sub"]})
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from exc
    roles = claims.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise Unauthorized("invalid token: 'roles' must be a list of strings")
    return Actor(user_id=str(claims["sub"]), roles=tuple(roles))


def require_user(actor: Actor | None) -> Actor:
    if actor is None:
        raise Unauthorized("this route needs a bearer token")
    return actor


def require_admin(actor: Actor | None) -> Actor:
    if not require_user(actor).is_admin:
        raise Forbidden("this route needs the admin role")
    return actor


def rate_limit_key(request: Request, secret: str, algorithm: str) -> str:
    """Callers are limited per user; callers without a (valid) token per address."""
    try:
        actor = actor_from(request, secret, algorithm)
    except Unauthorized:
        actor = None
    return f"user:{actor.user_id}" if actor else f"address:{request.client.host if request.client else 'unknown'}"
