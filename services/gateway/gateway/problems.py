"""The one place errors become HTTP: application/problem+json {type, title, status, detail, code}."""

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from msgspec import Struct

from shop.errors import ShopError

log = structlog.get_logger()

STATUS = {
    "validation_error": 422,
    "price_rule_violation": 422,
    "not_found": 404,
    "insufficient_stock": 409,
    "concurrency_conflict": 409,
    "invalid_state": 409,
    "idempotency_key_reused": 409,
    "unauthorized": 401,
    "forbidden": 403,
    "unsupported_media_type": 415,
    "rate_limited": 429,
    "unavailable": 503,
    "outcome_unknown": 504,
}
HTTP_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
    503: "unavailable",
}


class Problem(Struct, frozen=True, kw_only=True):
    """An error, as every route answers it (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    code: str


REASONS = {
    400: "Malformed request (e.g. a body that is not JSON)",
    401: "No valid bearer token",
    403: "The caller may not do this",
    404: "Not found",
    409: "Conflicts with the current state (insufficient_stock, concurrency_conflict, invalid_state, "
    "idempotency_key_reused)",
    413: "Body too large",
    415: "The body is not application/json",
    422: "Invalid request (validation_error, price_rule_violation)",
    429: "Too many requests (see Retry-After)",
    503: "A service is unavailable; nothing was done",
    504: "No answer in time; the command may have been carried out: retry with the same Idempotency-Key",
}


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """The OpenAPI error responses of a route: these statuses and those every route may answer."""
    return {
        status: ResponseSpec(
            data_container=Problem,
            media_type="application/problem+json",
            description=REASONS[status],
            generate_examples=False,
        )
        for status in sorted({400, 422, 429, 503, *statuses})
    }


QUERY = problems()
DETAIL = problems(404)
USER_QUERY = problems(401, 403, 404)
ADMIN_QUERY = problems(401, 403)
COMMAND = problems(401, 403, 404, 409, 413, 415, 504)


def problem(status: int, code: str, title: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    body = {
        "type": f"https://errors.shop.example/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    return Response(body, status_code=status, media_type="application/problem+json", headers=headers)


RETRY_AFTER = "5"  # seconds a caller refused for load (429 without a rate-limit window, 503) should wait


def shop_error(_: Request, exc: ShopError) -> Response:
    status = STATUS.get(exc.code, 500)
    headers = {**exc.headers, **({"Retry-After": RETRY_AFTER} if status in (429, 503) else {})}
    return problem(status, exc.code, exc.title, exc.detail, headers or None)


def validation_error(_: Request, exc: ValidationException) -> Response:
    detail = "; ".join(
        f"{e.get('key') or 'body'}: {e.get('message')}" for e in (exc.extra or []) if isinstance(e, dict)
    )
    return problem(422, "validation_error", "The request is not valid", detail or exc.detail)


def http_error(_: Request, exc: HTTPException) -> Response:
    """Keeps the exception's headers: `Allow` on a 405, `RateLimit-*` on a 429 (and `Retry-After` from them)."""
    code = HTTP_CODES.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 429 and "RateLimit-Reset" in headers:
        headers["Retry-After"] = headers["RateLimit-Reset"]
    return problem(exc.status_code, code, exc.detail, exc.detail, headers)


def malformed_body(_: Request, exc: Exception) -> Response:
    """The body is nested too deep or is not UTF-8: the JSON decoder gave up on it."""
    return problem(400, "validation_error", "The request is not valid", f"malformed JSON body: {exc}"[:300])


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return problem(500, "internal_error", "Internal error", "an unexpected error occurred; it has been logged")


EXCEPTION_HANDLERS = {
    ShopError: shop_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    RecursionError: malformed_body,
    UnicodeDecodeError: malformed_body,
    Exception: unexpected_error,
}
