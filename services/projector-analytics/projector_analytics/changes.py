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


def analytics_changes(keys: AnalyticsKeys, envelope: Envelope, event: DomainEvent) -> list[RedisCommand]:
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
    changes: list[RedisCommand] = [
        ["HINCRBY", keys.day(day.isoformat()), "revenue", sign * total],
        ["HINCRBY", keys.day(day.isoformat()), "orders", sign],
        ["ZADD", keys.days, day.toordinal(), day.isoformat()],
    ]
    for item in items:
        changes += [
            ["ZINCRBY", keys.units, sign * item.quantity, item.product_id],
            ["ZINCRBY", keys.day_units(day.isoformat()), sign * item.quantity, item.product_id],
            ["HSET", keys.product_names, item.product_id, item.name],
        ]
    return changes


def merge(commands: Iterable[list]) -> list[list]:
    """One command per key and field: increments added up, the last value set (HSET, ZADD)."""
    merged: dict[tuple, list] = {}
    for command in commands:
        name, key = command[0], command[1]
        if name == "HINCRBY":
            found = merged.setdefault((name, key, command[2]), [name, key, command[2], 0])
            found[3] += command[3]
        elif name == "ZINCRBY":
            found = merged.setdefault((name, key, command[3]), [name, key, 0, command[3]])
            found[2] += command[2]
        else:  # HSET key field value, ZADD key score member
            merged[name, key, command[2] if name == "HSET" else command[3]] = command
    return list(merged.values())
