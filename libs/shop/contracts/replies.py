"""Replies over NATS: a result or an error {code, title, detail}."""

import msgspec
from msgspec import Struct

from shop.contracts.views import OrderView
from shop.errors import ShopError, error_from_code


class ErrorBody(Struct, frozen=True, kw_only=True):
    code: str
    title: str
    detail: str


class Reply(Struct, frozen=True, kw_only=True, omit_defaults=True):
    result: msgspec.Raw = msgspec.Raw(b"null")  # msgspec.Raw cannot be part of a union
    error: ErrorBody | None = None
    consistency: str | None = None  # queries: "fresh" or "stale"
    read_position: int | None = None  # queries: the projection's position when read

    def raise_for_error(self) -> None:
        if self.error is not None:
            error = error_from_code(self.error.code, self.error.detail)
            if self.consistency is not None:  # a query's error: how fresh the read that found it was
                error.headers = {"X-Consistency": self.consistency, "X-Read-Position": str(self.read_position or 0)}
            raise error


class CommandResult(Struct, frozen=True, kw_only=True, omit_defaults=True):
    id: str
    version: int
    position: int | None
    order: OrderView | None = None


reply_decoder = msgspec.json.Decoder(Reply)


def error_reply(error: ShopError, consistency: str | None = None, read_position: int | None = None) -> bytes:
    body = ErrorBody(code=error.code, title=error.title, detail=error.detail)
    return msgspec.json.encode(Reply(error=body, consistency=consistency, read_position=read_position))


def result_reply(result: object, consistency: str | None = None, read_position: int | None = None) -> bytes:
    raw = msgspec.Raw(msgspec.json.encode(result))
    return msgspec.json.encode(Reply(result=raw, consistency=consistency, read_position=read_position))
