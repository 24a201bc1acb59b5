"""Read-model shapes returned to callers (DESIGN §6)."""

from datetime import date, datetime

from msgspec import Struct


class OrderItemView(Struct, frozen=True, kw_only=True):
    product_id: str
    name: str
    quantity: int
    unit_price: int
    line_total: int


class StatusChange(Struct, frozen=True, kw_only=True):
    status: str
    at: datetime


class OrderView(Struct, frozen=True, kw_only=True):
    id: str
    user_id: str
    status: str
    items: tuple[OrderItemView, ...]
    total: int
    placed_at: datetime
    history: tuple[StatusChange, ...]
    version: int


class ReviewView(Struct, frozen=True, kw_only=True):
    user_id: str
    rating: int
    text: str
    at: datetime


class ProductDetail(Struct, frozen=True, kw_only=True):
    id: str
    name: str
    description: str
    image_urls: tuple[str, ...]
    price: int
    stock: int
    category: str
    seller_id: str
    review_count: int
    average_rating: float
    reviews: tuple[ReviewView, ...]
    version: int
    created_at: datetime


class DayStats(Struct, frozen=True, kw_only=True):
    date: date
    revenue: int
    order_count: int


class TopProduct(Struct, frozen=True, kw_only=True):
    product_id: str
    name: str
    units_sold: int


class AnalyticsSummary(Struct, frozen=True, kw_only=True):
    revenue: int
    order_count: int
    average_order_value: int
    by_day: tuple[DayStats, ...]
    top_products: tuple[TopProduct, ...]
