"""How catalog events change a product document (pure)."""

from typing import Any

from shop.contracts.events import (
    DomainEvent,
    Envelope,
    ProductCreated,
    ProductPriceChanged,
    ProductRestocked,
    ProductStockDecreased,
    ProductStockReleased,
    ReviewAdded,
)

RECENT_REVIEWS = 10

MAPPING = {
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {
        "dynamic": "strict",
        "properties": {
            "id": {"type": "keyword"},
            "name": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
            "description": {"type": "text"},
            "image_urls": {"type": "keyword", "index": False},
            "price": {"type": "long"},
            "stock": {"type": "long"},
            "category": {"type": "keyword"},
            "seller_id": {"type": "keyword"},
            "review_count": {"type": "integer"},
            "rating_sum": {"type": "long"},
            "average_rating": {"type": "float"},
            "reviews": {"type": "object", "enabled": False},
            "units_sold": {"type": "long"},
            "created_at": {"type": "date"},
            "version": {"type": "long"},
        },
    },
}


def product_document(doc: dict[str, Any] | None, envelope: Envelope, event: DomainEvent) -> dict[str, Any] | None:
    """The document after the event, or None if the event does not concern the catalog."""
    match event:
        case ProductCreated():
            return {
                "id": envelope.stream_id,
                "name": event.name,
                "description": event.description,
                "image_urls": list(event.image_urls),
                "price": event.price,
                "stock": event.stock,
                "category": event.category,
                "seller_id": event.seller_id,
                "review_count": 0,
                "rating_sum": 0,
                "average_rating": 0.0,
                "reviews": [],
                "units_sold": 0,
                "created_at": envelope.occurred_at.isoformat(),
                "version": envelope.version,
            }
        case ProductStockDecreased(quantity=quantity):
            doc = _existing(doc, envelope)
            sold = doc.get("units_sold", 0) + quantity
            return {**doc, "stock": doc["stock"] - quantity, "units_sold": sold, "version": envelope.version}
        case ProductStockReleased(quantity=quantity):  # a cancelled order gives its units back
            doc = _existing(doc, envelope)
            sold = doc.get("units_sold", 0) - quantity
            return {**doc, "stock": doc["stock"] + quantity, "units_sold": sold, "version": envelope.version}
        case ProductRestocked(quantity=quantity):
            doc = _existing(doc, envelope)
            return {**doc, "stock": doc["stock"] + quantity, "version": envelope.version}
        case ProductPriceChanged(new_price=price):
            return {**_existing(doc, envelope), "price": price, "version": envelope.version}
        case ReviewAdded(user_id=user_id, rating=rating, text=text):
            doc = _existing(doc, envelope)
            count, rating_sum = doc["review_count"] + 1, doc["rating_sum"] + rating
            review = {"user_id": user_id, "rating": rating, "text": text, "at": envelope.occurred_at.isoformat()}
            return {
                **doc,
                "review_count": count,
                "rating_sum": rating_sum,
                "average_rating": round(rating_sum / count, 2),
                "reviews": [review, *doc["reviews"]][:RECENT_REVIEWS],
                "version": envelope.version,
            }
    return None


def _existing(doc: dict[str, Any] | None, envelope: Envelope) -> dict[str, Any]:
    if doc is None:
        raise LookupError(f"{envelope.type} v{envelope.version} for product {envelope.stream_id} that is not projected")
    return doc
