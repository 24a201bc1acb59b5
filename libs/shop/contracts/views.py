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


class ProductSummary(Struct, frozen=True, kw_only=True):
    id: str
    name: str
    thumbnail_url: str | None
    price: int
    review_count: int
    average_rating: float


class ProductPage(Struct, frozen=True, kw_only=True):
    items: tuple[ProductSummary, ...]
    page: int
    size: int
    total: int


class ProductHit(Struct, frozen=True, kw_only=True):
    id: str
    name: str
    highlighted_name: str
    thumbnail_url: str | None
    price: int
    category: str
    review_count: int
    average_rating: float


class ProductSearchPage(Struct, frozen=True, kw_only=True):
    items: tuple[ProductHit, ...]
    page: int
    size: int
    total: int


class PopularProduct(Struct, frozen=True, kw_only=True):
    id: str
    name: str
    price: int
    units_sold: int


class PopularProductList(Struct, frozen=True, kw_only=True):
    items: tuple[PopularProduct, ...]


class OrderPage(Struct, frozen=True, kw_only=True):
    items: tuple[OrderView, ...]
    page: int
    size: int
    total: int


class SyncPositions(Struct, frozen=True, kw_only=True):
    positions: dict[str, int]  # projector -> last stream position applied


class RatingStats(Struct, frozen=True, kw_only=True):
    count: int
    average: float
    distribution: dict[str, int]  # "1".."5" -> number of reviews


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
    ratings: RatingStats  # all reviews, whatever the date range
