"""Query handlers: wait (bounded) for the projection to reach the caller's position, then read."""

import msgspec
from nats.aio.msg import Msg

from query_service import searches
from query_service.adapters.positions import ProjectionPositions
from query_service.adapters.read_models import AnalyticsCounters, SearchDocuments
from shop.contracts.commands import Actor
from shop.contracts.queries import (
    MAX_RESULT_WINDOW,
    GetAnalyticsSummary,
    GetOrder,
    GetProduct,
    GetSyncPositions,
    ListOrders,
    ListProducts,
    PopularProducts,
    Query,
    SearchOrders,
    SearchProducts,
    query_request_decoder,
)
from shop.contracts.replies import error_reply, result_reply
from shop.contracts.views import (
    AnalyticsSummary,
    DayStats,
    OrderPage,
    OrderView,
    PopularProduct,
    PopularProductList,
    ProductDetail,
    ProductPage,
    ProductSearchPage,
    RatingStats,
    SyncPositions,
    TopProduct,
)
from shop.errors import Forbidden, NotFound, ShopError, Unauthorized, ValidationFailed
from shop.read_models import PROJECTORS


class QueryHandlers:
    def __init__(
        self,
        orders: SearchDocuments,
        products: SearchDocuments,
        analytics: AnalyticsCounters,
        positions: ProjectionPositions,
        consistency_wait: float,
    ) -> None:
        self._orders, self._products, self._analytics = orders, products, analytics
        self._positions, self._consistency_wait = positions, consistency_wait

    async def answer(self, msg: Msg) -> bytes:
        request = query_request_decoder.decode(msg.data)
        query = request.query
        if query.subject != msg.subject:
            raise ValidationFailed(f"{type(query).__name__} must be sent on {query.subject}")
        if query.projection is None:
            return result_reply(await self.handle(query, request.meta.actor))
        projection, wanted = query.projection, request.meta.min_position
        aggregate = query.id if isinstance(query, GetOrder | GetProduct) else None
        searchable = aggregate is None  # a read by id is realtime; a list or search sees what was refreshed
        fresh = await self._positions.wait_for(projection, wanted, self._consistency_wait, searchable)
        read_position = self._positions.current(projection, searchable)
        parked = self._positions.parked_at(projection, aggregate) if aggregate else None
        consistency = "fresh" if fresh and (parked is None or parked > wanted) else "stale"
        try:
            result = await self.handle(query, request.meta.actor)
        except ShopError as exc:  # "not there yet" (stale) is not "not there" (fresh)
            return error_reply(exc, consistency=consistency, read_position=read_position)
        return result_reply(result, consistency=consistency, read_position=read_position)

    async def handle(self, query: Query, actor: Actor | None) -> object:
        if getattr(query, "page", 1) * getattr(query, "size", 0) > MAX_RESULT_WINDOW:
            raise ValidationFailed(f"page * size may not exceed {MAX_RESULT_WINDOW}")
        match query:
            case GetOrder(id=order_id):
                return await self.get_order(order_id, actor)
            case GetProduct(id=product_id):
                doc = await self._products.get(product_id)
                if doc is None:
                    raise NotFound(f"product {product_id} not found")
                return msgspec.convert(doc, ProductDetail)
            case ListProducts():
                hits, total = await self._products.search(searches.products_list(query))
                items = tuple(searches.product_summary(h["_source"]) for h in hits)
                return ProductPage(items=items, page=query.page, size=query.size, total=total)
            case SearchProducts():
                hits, total = await self._products.search(searches.products_search(query))
                items = tuple(searches.product_hit(h) for h in hits)
                return ProductSearchPage(items=items, page=query.page, size=query.size, total=total)
            case PopularProducts(limit=limit):
                popular = await self._analytics.popular(await self._analytics.generation(), limit)
                return PopularProductList(
                    items=tuple(PopularProduct(id=i, name=n, price=p, units_sold=u) for i, n, p, u in popular)
                )
            case ListOrders():
                if actor is None:
                    raise Unauthorized("orders are private to their owner")
                hits, total = await self._orders.search(searches.orders_list(actor.user_id, query))
                return self.order_page(hits, total, query.page, query.size)
            case SearchOrders():
                require_admin(actor, "searching orders")
                hits, total = await self._orders.search(searches.orders_search(query))
                return self.order_page(hits, total, query.page, query.size)
            case GetAnalyticsSummary() as summary:
                require_admin(actor, "analytics")
                return await self.analytics_summary(summary)
            case GetSyncPositions():
                return SyncPositions(positions={name: self._positions.current(name) for name in PROJECTORS})

    @staticmethod
    def order_page(hits: list[dict], total: int, page: int, size: int) -> OrderPage:
        return OrderPage(
            items=tuple(msgspec.convert(h["_source"], OrderView) for h in hits), page=page, size=size, total=total
        )

    async def get_order(self, order_id: str, actor: Actor | None) -> OrderView:
        if actor is None:
            raise Unauthorized("orders are private to their owner")
        doc = await self._orders.get(order_id)
        if doc is None:
            raise NotFound(f"order {order_id} not found")
        if doc["user_id"] != actor.user_id and not actor.is_admin:
            raise Forbidden("only the owner or an admin may see this order")
        return msgspec.convert(doc, OrderView)

    async def analytics_summary(self, query: GetAnalyticsSummary) -> AnalyticsSummary:
        keys = await self._analytics.generation()
        days = await self._analytics.days(keys, query.date_from, query.date_to)
        ranged = query.date_from is not None or query.date_to is not None
        top = await self._analytics.top_products(keys, [d for d, _, _ in days] if ranged else None, query.top)
        revenue, order_count = sum(r for _, r, _ in days), sum(c for _, _, c in days)
        return AnalyticsSummary(
            revenue=revenue,
            order_count=order_count,
            average_order_value=revenue // order_count if order_count else 0,
            by_day=tuple(DayStats(date=d, revenue=r, order_count=c) for d, r, c in days),
            top_products=tuple(TopProduct(product_id=p, name=n, units_sold=u) for p, n, u in top),
            ratings=rating_stats(await self._analytics.ratings(keys)),
        )


def rating_stats(distribution: dict[str, int]) -> RatingStats:
    count = sum(distribution.values())
    average = sum(int(r) * n for r, n in distribution.items()) / count if count else 0.0
    return RatingStats(count=count, average=round(average, 2), distribution=distribution)


def require_admin(actor: Actor | None, what: str) -> None:
    if actor is None or not actor.is_admin:
        raise Forbidden(f"{what} needs the admin role")
