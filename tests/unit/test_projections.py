"""What each projector makes of an event (pure functions, no store)."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from projector_analytics.changes import READS, analytics_changes
from projector_catalog.documents import product_document
from projector_order_list.documents import order_document
from shop.contracts.events import (
    EVENT_TYPES,
    OrderCancelled,
    OrderItem,
    OrderPaid,
    OrderPlaced,
    OrderShipped,
    ProductCreated,
    ProductStockDecreased,
    ReviewAdded,
)
from shop.read_models import AnalyticsKeys
from tests.envelopes import envelope

AT = datetime(2026, 11, 24, 9, 30, tzinfo=UTC)


CREATED = ProductCreated(name="Phone", description="d", price=500, stock=4, category="phones", seller_id="s1")
PLACED = OrderPlaced(
    user_id="u1",
    total=1100,
    placed_at=AT,
    items=(
        OrderItem(product_id="p1", name="Phone", quantity=2, unit_price=500, line_total=1000),
        OrderItem(product_id="p2", name="Case", quantity=1, unit_price=100, line_total=100),
    ),
)


def test_catalog_document_follows_creation_and_stock_decrease():
    doc = product_document(None, envelope("p1", 1, CREATED, stream_type="product", at=AT), CREATED)
    assert (doc["id"], doc["price"], doc["stock"], doc["version"]) == ("p1", 500, 4, 1)
    decreased = ProductStockDecreased(quantity=3, order_id="o1")
    after = product_document(doc, envelope("p1", 2, decreased, stream_type="product", at=AT), decreased)
    assert (after["stock"], after["version"], after["name"]) == (1, 2, "Phone")


def test_order_document_holds_items_total_and_history():
    doc = order_document(None, envelope("o1", 1, PLACED, stream_type="order", at=AT), PLACED)
    assert doc["status"] == "placed" and doc["total"] == 1100 and doc["user_id"] == "u1"
    assert [i["line_total"] for i in doc["items"]] == [1000, 100]
    assert doc["history"] == [{"status": "placed", "at": AT.isoformat()}]


def test_analytics_counts_revenue_orders_and_units_per_day():
    keys = AnalyticsKeys("a:")
    changes = analytics_changes(keys, envelope("o1", 1, PLACED, stream_type="order", at=AT), PLACED)
    assert ["HINCRBY", "a:day:2026-11-24", "revenue", 1100] in changes
    assert ["HINCRBY", "a:day:2026-11-24", "orders", 1] in changes
    assert ["ZINCRBY", "a:units", 2, "p1"] in changes and ["ZINCRBY", "a:units:2026-11-24", 1, "p2"] in changes


def test_analytics_ignores_stock_events():
    decreased = ProductStockDecreased(quantity=1, order_id="o1")
    assert (
        analytics_changes(AnalyticsKeys(), envelope("p1", 2, decreased, stream_type="product", at=AT), decreased) == []
    )


@given(st.one_of([st.builds(cls) for name, cls in EVENT_TYPES.items() if name not in READS]))
def test_analytics_changes_nothing_for_the_types_whose_data_it_does_not_read(event):
    """The engine leaves the data of those undecoded (AnalyticsStore.reads): none may count."""
    assert analytics_changes(AnalyticsKeys(), envelope("x1", 2, event, stream_type="product", at=AT), event) == []


@given(st.one_of([st.builds(cls) for name, cls in EVENT_TYPES.items() if name in READS]))
def test_analytics_reads_only_types_whose_data_changes_something(event):
    assert analytics_changes(AnalyticsKeys(), envelope("x1", 2, event, stream_type="order", at=AT), event)


def test_catalog_keeps_review_statistics_and_the_newest_reviews_first():
    doc = product_document(None, envelope("p1", 1, CREATED, stream_type="product", at=AT), CREATED)
    for version, (user, rating) in enumerate([("u1", 5), ("u2", 4), ("u3", 1)], start=2):
        review = ReviewAdded(user_id=user, rating=rating, text="t")
        doc = product_document(doc, envelope("p1", version, review, stream_type="product", at=AT), review)
    assert (doc["review_count"], doc["average_rating"], doc["version"]) == (3, 3.33, 4)
    assert [r["user_id"] for r in doc["reviews"]] == ["u3", "u2", "u1"]


def test_order_document_appends_each_status_to_its_history():
    doc = order_document(None, envelope("o1", 1, PLACED, stream_type="order", at=AT), PLACED)
    for version, event in enumerate([OrderPaid(by="u1"), OrderShipped(by="a1")], start=2):
        doc = order_document(doc, envelope("o1", version, event, stream_type="order", at=AT), event)
    assert doc["status"] == "shipped" and [h["status"] for h in doc["history"]] == ["placed", "paid", "shipped"]


def test_analytics_subtracts_a_cancelled_order_on_the_day_it_was_placed():
    keys = AnalyticsKeys("a:")
    cancelled = OrderCancelled(by="u1", items=PLACED.items, total=PLACED.total, placed_at=AT)
    changes = analytics_changes(keys, envelope("o1", 2, cancelled, stream_type="order", at=AT), cancelled)
    assert ["HINCRBY", "a:day:2026-11-24", "revenue", -1100] in changes
    assert ["HINCRBY", "a:day:2026-11-24", "orders", -1] in changes
    assert ["ZINCRBY", "a:units", -2, "p1"] in changes
