"""The Product aggregate."""

from dataclasses import dataclass, replace

from shop.contracts.commands import CreateProduct
from shop.contracts.events import DomainEvent, ProductCreated, ProductStockDecreased
from shop.errors import InvalidState


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    price: int
    stock: int


def create_product(state: Product | None, command: CreateProduct) -> list[DomainEvent]:
    if state is not None:
        raise InvalidState("the product already exists")
    return [
        ProductCreated(
            name=command.name,
            description=command.description,
            price=command.price,
            stock=command.stock,
            category=command.category,
            seller_id=command.seller_id,
            image_urls=command.image_urls,
        )
    ]


def evolve(state: Product | None, event: DomainEvent) -> Product:
    match event:
        case ProductCreated(name=name, price=price, stock=stock):
            return Product(name=name, price=price, stock=stock)
        case ProductStockDecreased(quantity=quantity) if state is not None:
            return replace(state, stock=state.stock - quantity)
    raise ValueError(f"{type(event).__name__} cannot apply to product state {state!r}")
