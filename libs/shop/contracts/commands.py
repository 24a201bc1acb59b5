"""Commands: what a caller asks the command-service to do, one NATS subject each."""

from datetime import datetime
from typing import Annotated, ClassVar

import msgspec
from msgspec import Meta, Struct

NO_NUL = r"^[^\x00]*$"  # PostgreSQL's text and jsonb cannot hold a NUL: refused at the edge, like any invalid text
Name = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_NUL)]
Id = Annotated[str, Meta(min_length=1, max_length=64, pattern=NO_NUL)]
# an image is shown by the apps: https, a host name, no whitespace or control characters
IMAGE_URL = {
    "type": "string",
    "maxLength": 2048,
    "pattern": r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[^\x00-\x20\x7f]*)?$",
}
ImageUrl = Annotated[str, Meta(max_length=IMAGE_URL["maxLength"], pattern=IMAGE_URL["pattern"])]
MAX_MONEY = 10**12
Money = Annotated[int, Meta(ge=0, le=MAX_MONEY)]
Quantity = Annotated[int, Meta(ge=1, le=10_000)]
Reason = Annotated[str, Meta(max_length=500, pattern=NO_NUL)]
ReviewText = Annotated[str, Meta(max_length=5000, pattern=NO_NUL)]
Rating = Annotated[int, Meta(ge=1, le=5)]


class Actor(Struct, frozen=True, kw_only=True):
    user_id: Id
    roles: tuple[str, ...] = ()

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class CreateProduct(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.product.create"
    name: Name
    description: Annotated[str, Meta(max_length=10_000, pattern=NO_NUL)] = ""
    price: Money
    stock: Annotated[int, Meta(ge=0, le=10**9)]
    category: Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_NUL)]
    seller_id: Id
    # Litestar's OpenAPI drops the constraints of list items: given again as its schema's "extra"
    image_urls: Annotated[list[ImageUrl], Meta(max_length=20, extra_json_schema={"extra": {"items": IMAGE_URL}})] = []


class ChangePrice(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.product.change_price"
    product_id: Id
    new_price: Money
    reason: Reason = ""


class Restock(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.product.restock"
    product_id: Id
    quantity: Quantity


class AddReview(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.product.add_review"
    product_id: Id
    rating: Rating
    text: ReviewText = ""


class OrderLine(Struct, frozen=True, kw_only=True):
    product_id: Id
    quantity: Quantity


class PlaceOrder(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.order.place"
    items: Annotated[list[OrderLine], Meta(min_length=1, max_length=50)]


class PayOrder(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.order.pay"
    order_id: Id


class ShipOrder(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.order.ship"
    order_id: Id


class CancelOrder(Struct, frozen=True, kw_only=True, tag=True, tag_field="type"):
    subject: ClassVar[str] = "cmd.order.cancel"
    order_id: Id
    reason: Reason = ""


Command = CreateProduct | ChangePrice | Restock | AddReview | PlaceOrder | PayOrder | ShipOrder | CancelOrder


class CommandMeta(Struct, frozen=True, kw_only=True):
    actor: Actor
    correlation_id: str
    idempotency_key: Annotated[str, Meta(max_length=200, pattern=NO_NUL)] | None = None
    deadline: Annotated[datetime, Meta(tz=True)] | None = (
        None  # when the caller stops waiting: nothing commits after it
    )


class CommandRequest(Struct, frozen=True, kw_only=True):
    meta: CommandMeta
    command: Command


command_request_decoder = msgspec.json.Decoder(CommandRequest)
