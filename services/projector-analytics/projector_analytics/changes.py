"""How events change the analytics counters (pure): a list of Redis commands to run atomically."""

from collections.abc import Iterable
from datetime import datetime

from shop.contracts.events import (
    DomainEvent,
    Envelope,
    OrderCancelled,
    OrderItem,
    OrderPlaced,
    ProductCreated,
    ProductPriceChanged,
    ReviewAdded,
)
from shop.read_models import AnalyticsKeys

RedisCommand = list[str | int]


# the events whose data counts; of the others only the aggregate's version is recorded
READS = frozenset(
    cls.__name__ for cls in (ProductCreated, ProductPriceChanged, OrderPlaced, OrderCancelled, ReviewAdded)
)


def analytics_changes(keys: AnalyticsKeys, envelope: Envelope, event: DomainEvent | None) -> list[RedisCommand]:
    match event:
        case ProductCreated(name=name, price=price):
            return [
                ["HSET", keys.product_names, envelope.stream_id, name],
                ["HSET", keys.prices, envelope.stream_id, price],
            ]
        case ProductPriceChanged(new_price=price):
            return [["HSET", keys.prices, envelope.stream_id, price]]
        case OrderPlaced(placed_at=placed_at, total=total, items=items):
            return order_totals(keys, placed_at, total, items, sign=1)
        case OrderCancelled(placed_at=placed_at, total=total, items=items):
            return order_totals(keys, placed_at, total, items, sign=-1)  # subtract what placing added
        case ReviewAdded(rating=rating):
            return [["HINCRBY", keys.ratings, str(rating), 1]]
    return []


def order_totals(
    keys: AnalyticsKeys, placed_at: datetime, total: int, items: tuple[OrderItem, ...], sign: int
) -> list[RedisCommand]:
    """Counted on the day the order was placed, also when it is cancelled later."""
    day = placed_at.date()
    iso = day.isoformat()
    day_key, day_units, units, names = keys.day(iso), keys.day_units(iso), keys.units, keys.product_names
    changes: list[RedisCommand] = [
        ["HINCRBY", day_key, "revenue", sign * total],
        ["HINCRBY", day_key, "orders", sign],
        ["ZADD", keys.days, day.toordinal(), iso],
    ]
    for item in items:
        product, quantity = item.product_id, sign * item.quantity
        changes += (
            ["ZINCRBY", units, quantity, product],
            ["ZINCRBY", day_units, quantity, product],
            ["HSET", names, product, item.name],
        )
    return changes


# an increment's command -> where its field (or member) and its amount are
INCREMENTS = {"HINCRBY": (2, 3), "ZINCRBY": (3, 2)}  # HINCRBY key field amount, ZINCRBY key amount member


def merge(commands: Iterable[list]) -> list[list]:
    """One command per key and field: increments added up, the last value set (HSET, ZADD)."""
    merged: dict[tuple, list] = {}
    for command in commands:
        name, key = command[0], command[1]
        at = INCREMENTS.get(name)
        if at is None:  # HSET key field value, ZADD key score member
            merged[name, key, command[2] if name == "HSET" else command[3]] = command
            continue
        field, amount = at
        found = merged.get((name, key, command[field]))
        if found is None:
            merged[name, key, command[field]] = list(command)
        else:
            found[amount] += command[amount]
    return list(merged.values())
