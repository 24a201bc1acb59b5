"""The project's one error tree. Adapters translate driver errors into these; the gateway maps
them to problem+json (gateway/problems.py) and messaging maps them to NATS error replies."""


class ShopError(Exception):
    code = "internal_error"
    title = "Internal error"
    final = False  # a business rejection: the same request always gets it, so an Idempotency-Key replays it

    def __init__(self, detail: str = "") -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.headers: dict[str, str] = {}  # for the HTTP answer, e.g. a query's consistency


class ValidationFailed(ShopError):
    code = "validation_error"
    title = "The request is not valid"
    final = True


class PriceRuleViolation(ShopError):
    code = "price_rule_violation"
    title = "The price change breaks a pricing rule"
    final = True


class NotFound(ShopError):
    code = "not_found"
    title = "Not found"
    final = True


class InsufficientStock(ShopError):
    code = "insufficient_stock"
    title = "Not enough stock"
    final = True


class ConcurrencyError(ShopError):
    code = "concurrency_conflict"
    title = "The resource was changed concurrently"


class InvalidState(ShopError):
    code = "invalid_state"
    title = "The resource is not in a state that allows this"
    final = True


class IdempotencyKeyReused(ShopError):
    code = "idempotency_key_reused"
    title = "This Idempotency-Key was already used for a different request"


class Unauthorized(ShopError):
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(ShopError):
    code = "forbidden"
    title = "Not allowed"
    final = True


class UnsupportedMediaType(ShopError):
    code = "unsupported_media_type"
    title = "The body's media type is not accepted"


class RateLimited(ShopError):
    code = "rate_limited"
    title = "Too many requests"


class Unavailable(ShopError):
    code = "unavailable"
    title = "A service this request needs is unavailable"


class OutcomeUnknown(ShopError):
    code = "outcome_unknown"
    title = "The command may or may not have been carried out: retry it with the same Idempotency-Key"


ERRORS_BY_CODE: dict[str, type[ShopError]] = {cls.code: cls for cls in (ShopError, *ShopError.__subclasses__())}


def error_from_code(code: str, detail: str) -> ShopError:
    return ERRORS_BY_CODE.get(code, ShopError)(detail)
