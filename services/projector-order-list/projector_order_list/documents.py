"""How order events change an order document (pure)."""

from typing import Any

from shop.contracts.events import DomainEvent, Envelope, OrderCancelled, OrderPaid, OrderPlaced, OrderShipped

STATUS_AFTER = {OrderPaid: "paid", OrderShipped: "shipped", OrderCancelled: "cancelled"}

MAPPING = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            "user_id": {"type": "keyword"},
            "status": {"type": "keyword"},
            "items": {
                "properties": {
                    "product_id": {"type": "keyword"},
                    "name": {"type": "text"},
                    "quantity": {"type": "integer"},
                    "unit_price": {"type": "long"},
                    "line_total": {"type": "long"},
                }
            },
            "total": {"type": "long"},
            "placed_at": {"type": "date"},
            "history": {"type": "object", "enabled": False},
            "version": {"type": "long"},
        },
    },
}


def order_document(doc: dict[str, Any] | None, envelope: Envelope, event: DomainEvent) -> dict[str, Any] | None:
    """The document after the event, or None if the event does not concern the order list."""
    match event:
        case OrderPlaced():
            at = event.placed_at.isoformat()
            return {
                "id": envelope.stream_id,
                "user_id": event.user_id,
                "status": "placed",
                "items": [
                    {
                        "product_id": i.product_id,
                        "name": i.name,
                        "quantity": i.quantity,
                        "unit_price": i.unit_price,
                        "line_total": i.line_total,
                    }
                    for i in event.items
                ],
                "total": event.total,
                "placed_at": at,
                "history": [{"status": "placed", "at": at}],
                "version": envelope.version,
            }
        case OrderPaid() | OrderShipped() | OrderCancelled():
            if doc is None:
                raise LookupError(f"{envelope.type} v{envelope.version} for order {envelope.stream_id} not projected")
            status = STATUS_AFTER[type(event)]
            history = [*doc["history"], {"status": status, "at": envelope.occurred_at.isoformat()}]
            return {**doc, "status": status, "history": history, "version": envelope.version}
    return None
