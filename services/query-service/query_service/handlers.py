"""Query handlers: wait (bounded) for the projection to reach the caller's position, then read."""

import msgspec
from nats.aio.msg import Msg

from query_service.adapters.positions import ProjectionPositions
from query_service.adapters.read_models import AnalyticsCounters, SearchDocuments
from shop.contracts.commands import Actor
from shop.contracts.queries import GetAnalyticsSummary, GetOrder, GetProduct, Query, query_request_decoder
from shop.contracts.replies import result_reply
from shop.contracts.views import AnalyticsSummary, DayStats, OrderView, ProductDetail, TopProduct
from shop.errors import Forbidden, NotFound, Unauthorized, ValidationFailed


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
        fresh = await self._positions.wait_for(query.projection, request.meta.min_position, self._consistency_wait)
        read_position = self._positions.current(query.projection)
        result = await self.handle(query, request.meta.actor)
        return result_reply(result, consistency="fresh" if fresh else "stale", read_position=read_position)

    async def handle(self, query: Query, actor: Actor | None) -> object:
        match query:
            case GetOrder(id=order_id):
                return await self.get_order(order_id, actor)
            case GetProduct(id=product_id):
                doc = await self._products.get(product_id)
                if doc is None:
                    raise NotFound(f"product {product_id} not found")
                return msgspec.convert(doc, ProductDetail)
            case GetAnalyticsSummary() as summary:
                if actor is None or not actor.is_admin:
                    raise Forbidden("analytics need the admin role")
                return await self.analytics_summary(summary)

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
        if query.date_from and query.date_to and query.date_from > query.date_to:
            raise ValidationFailed("date_from is after date_to")
        days = await self._analytics.days(query.date_from, query.date_to)
        ranged = query.date_from is not None or query.date_to is not None
        top = await self._analytics.top_products([d for d, _, _ in days] if ranged else None, query.top)
        revenue, order_count = sum(r for _, r, _ in days), sum(c for _, _, c in days)
        return AnalyticsSummary(
            revenue=revenue,
            order_count=order_count,
            average_order_value=revenue // order_count if order_count else 0,
            by_day=tuple(DayStats(date=d, revenue=r, order_count=c) for d, r, c in days),
            top_products=tuple(TopProduct(product_id=p, name=n, units_sold=u) for p, n, u in top),
        )
