"""Domain events (past tense) and the envelope they travel in (DESIGN §4)."""

from collections.abc import Callable
from datetime import datetime

import msgspec
from msgspec import Struct


class ProductCreated(Struct, frozen=True, kw_only=True):
    name: str
    description: str
    price: int
    stock: int
    category: str
    seller_id: str
    image_urls: tuple[str, ...] = ()


class ProductStockDecreased(Struct, frozen=True, kw_only=True):
    quantity: int
    order_id: str


class ProductPriceChanged(Struct, frozen=True, kw_only=True):
    old_price: int
    new_price: int
    reason: str = ""


class ProductRestocked(Struct, frozen=True, kw_only=True):
    quantity: int


class ProductStockReleased(Struct, frozen=True, kw_only=True):
    quantity: int
    order_id: str


class ReviewAdded(Struct, frozen=True, kw_only=True):
    user_id: str
    rating: int
    text: str


class OrderItem(Struct, frozen=True, kw_only=True):
    product_id: str
    name: str
    quantity: int
    unit_price: int
    line_total: int


class OrderPlaced(Struct, frozen=True, kw_only=True):
    user_id: str
    items: tuple[OrderItem, ...]
    total: int
    placed_at: datetime


class OrderPaid(Struct, frozen=True, kw_only=True):
    by: str


class OrderShipped(Struct, frozen=True, kw_only=True):
    by: str


class OrderCancelled(Struct, frozen=True, kw_only=True):
    """Carries what the order had added, so that read models can subtract it."""

    by: str
    reason: str = ""
    items: tuple[OrderItem, ...]
    total: int
    placed_at: datetime


DomainEvent = (
    ProductCreated
    | ProductPriceChanged
    | ProductRestocked
    | ProductStockDecreased
    | ProductStockReleased
    | ReviewAdded
    | OrderPlaced
    | OrderPaid
    | OrderShipped
    | OrderCancelled
)

EVENT_TYPES: dict[str, type[DomainEvent]] = {cls.__name__: cls for cls in DomainEvent.__args__}
_data_decoders = {name: msgspec.json.Decoder(cls) for name, cls in EVENT_TYPES.items()}


class Envelope(Struct, frozen=True, kw_only=True):
    event_id: str
    type: str
    schema_version: int = 1
    stream_id: str
    stream_type: str
    version: int
    occurred_at: datetime
    correlation_id: str | None = None
    causation_id: str | None = None
    data: msgspec.Raw

    @property
    def subject(self) -> str:
        return f"evt.{self.stream_type}.{self.type}"


envelope_decoder = msgspec.json.Decoder(Envelope)


def _product_created_v1(data: dict) -> dict:
    """Schema 1 is the shape of the original design note (Kotlin: camelCase `categoryId`, `sellerId`,
    no images); schema 2 is snake_case with `image_urls`."""
    lifted = {k: v for k, v in data.items() if k not in ("categoryId", "sellerId")}
    return {**lifted, "category": data["categoryId"], "seller_id": data["sellerId"], "image_urls": []}


# Stored events are never rewritten: an older schema_version is lifted step by step when read.
SCHEMA_VERSIONS: dict[str, int] = {"ProductCreated": 2}
UPCASTERS: dict[tuple[str, int], Callable[[dict], dict]] = {("ProductCreated", 1): _product_created_v1}


def schema_version(event_type: str) -> int:
    return SCHEMA_VERSIONS.get(event_type, 1)


def decode_data(envelope: Envelope) -> DomainEvent:
    """The typed event inside an envelope, upcast to the current schema; unknown types and schema
    versions raise msgspec.ValidationError."""
    cls = EVENT_TYPES.get(envelope.type)
    current = schema_version(envelope.type)
    if cls is None or not 1 <= envelope.schema_version <= current:
        raise msgspec.ValidationError(f"unknown event {envelope.type!r} schema {envelope.schema_version}")
    if envelope.schema_version == current:
        return _data_decoders[envelope.type].decode(envelope.data)
    data = msgspec.json.decode(envelope.data)
    try:
        for version in range(envelope.schema_version, current):
            data = UPCASTERS[envelope.type, version](data)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise msgspec.ValidationError(
            f"{envelope.type} schema {envelope.schema_version} cannot be upcast: {exc!r}"
        ) from exc
    return msgspec.convert(data, cls)
