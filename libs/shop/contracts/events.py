"""Domain events (past tense) and the envelope they travel in (DESIGN §4)."""

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


def decode_data(envelope: Envelope) -> DomainEvent:
    """The typed event inside an envelope; unknown types raise msgspec.ValidationError."""
    decoder = _data_decoders.get(envelope.type)
    if decoder is None:
        raise msgspec.ValidationError(f"unknown event type {envelope.type!r}")
    return decoder.decode(envelope.data)
