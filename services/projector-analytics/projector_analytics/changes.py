"""How events change the analytics counters (pure): a list of Redis commands to run atomically."""

from shop.contracts.events import DomainEvent, Envelope, OrderPlaced, ProductCreated
from shop.read_models import AnalyticsKeys

RedisCommand = list[str | int]


def analytics_changes(keys: AnalyticsKeys, envelope: Envelope, event: DomainEvent) -> list[RedisCommand]:
    match event:
        case ProductCreated(name=name):
            return [["HSET", keys.product_names, envelope.stream_id, name]]
        case OrderPlaced(placed_at=placed_at, total=total, items=items):
            day = placed_at.date()
            changes: list[RedisCommand] = [
                ["HINCRBY", keys.day(day.isoformat()), "revenue", total],
                ["HINCRBY", keys.day(day.isoformat()), "orders", 1],
                ["ZADD", keys.days, day.toordinal(), day.isoformat()],
            ]
            for item in items:
                changes += [
                    ["ZINCRBY", keys.units, item.quantity, item.product_id],
                    ["ZINCRBY", keys.day_units(day.isoformat()), item.quantity, item.product_id],
                    ["HSET", keys.product_names, item.product_id, item.name],
                ]
            return changes
    return []
