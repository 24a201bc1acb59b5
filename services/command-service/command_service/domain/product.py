"""The Product aggregate: price >= 0, a price may at most double in one change, stock never
negative, one review per user."""

from dataclasses import dataclass, replace

from shop.contracts.commands import AddReview, ChangePrice, CreateProduct, Restock
from shop.contracts.events import (
    DomainEvent,
    ProductCreated,
    ProductPriceChanged,
    ProductRestocked,
    ProductStockDecreased,
    ProductStockReleased,
    ReviewAdded,
)
from shop.errors import InvalidState, NotFound, PriceRuleViolation


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    price: int
    stock: int
    reviewers: frozenset[str] = frozenset()


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


def change_price(state: Product | None, command: ChangePrice) -> list[DomainEvent]:
    product = existing(state, command.product_id)
    if command.new_price > 2 * product.price:
        raise PriceRuleViolation(
            f"a price may rise by at most 100% at once: {product.price} -> at most {2 * product.price}, "
            f"not {command.new_price}"
        )
    if command.new_price == product.price:
        return []
    return [ProductPriceChanged(old_price=product.price, new_price=command.new_price, reason=command.reason)]


def restock(state: Product | None, command: Restock) -> list[DomainEvent]:
    existing(state, command.product_id)
    return [ProductRestocked(quantity=command.quantity)]


def add_review(state: Product | None, command: AddReview, user_id: str) -> list[DomainEvent]:
    if user_id in existing(state, command.product_id).reviewers:
        raise InvalidState(f"user {user_id} has already reviewed product {command.product_id}")
    return [ReviewAdded(user_id=user_id, rating=command.rating, text=command.text)]


def existing(state: Product | None, product_id: str) -> Product:
    if state is None:
        raise NotFound(f"product {product_id} does not exist")
    return state


def evolve(state: Product | None, event: DomainEvent) -> Product:
    match state, event:
        case None, ProductCreated(name=name, price=price, stock=stock):
            return Product(name=name, price=price, stock=stock)
        case Product(), ProductPriceChanged(new_price=price):
            return replace(state, price=price)
        case Product(), ProductRestocked(quantity=quantity) | ProductStockReleased(quantity=quantity):
            return replace(state, stock=state.stock + quantity)
        case Product(), ProductStockDecreased(quantity=quantity):
            return replace(state, stock=state.stock - quantity)
        case Product(), ReviewAdded(user_id=user_id):
            return replace(state, reviewers=state.reviewers | {user_id})
    raise ValueError(f"{type(event).__name__} cannot apply to product state {state!r}")
