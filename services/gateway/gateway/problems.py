"""The one place errors become HTTP: application/problem+json {type, title, status, detail, code}."""

import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from shop.errors import ShopError

log = structlog.get_logger()

STATUS = {
    "validation_error": 422,
    "price_rule_violation": 422,
    "not_found": 404,
    "insufficient_stock": 409,
    "concurrency_conflict": 409,
    "invalid_state": 409,
    "unauthorized": 401,
    "forbidden": 403,
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


def problem(status: int, code: str, title: str, detail: str) -> Response:
    body = {
        "type": f"https://errors.shop.example/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    return Response(body, status_code=status, media_type="application/problem+json")


def shop_error(_: Request, exc: ShopError) -> Response:
    return problem(STATUS.get(exc.code, 500), exc.code, exc.title, exc.detail)


def validation_error(_: Request, exc: ValidationException) -> Response:
    detail = "; ".join(
        f"{e.get('key') or 'body'}: {e.get('message')}" for e in (exc.extra or []) if isinstance(e, dict)
    )
    return problem(422, "validation_error", "The request is not valid", detail or exc.detail)


def http_error(_: Request, exc: HTTPException) -> Response:
    code = HTTP_CODES.get(exc.status_code, "http_error")
    return problem(exc.status_code, code, exc.detail, exc.detail)


def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled_error", path=request.url.path)
    return problem(500, "internal_error", "Internal error", "an unexpected error occurred; it has been logged")


EXCEPTION_HANDLERS = {
    ShopError: shop_error,
    ValidationException: validation_error,
    HTTPException: http_error,
    Exception: unexpected_error,
}
