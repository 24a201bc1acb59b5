"""Admin analytics routes."""

from datetime import date

from litestar import Controller, Response, get
from litestar.params import QueryParameter

from gateway.auth import ADMIN
from gateway.dependencies import BusDependency, Caller, MinPosition, RequestId, query_response
from gateway.problems import ADMIN_QUERY
from shop.contracts.queries import GetAnalyticsSummary
from shop.contracts.views import AnalyticsSummary


class AnalyticsController(Controller):
    path = "/v1/admin/analytics"
    tags = ["analytics"]
    guards = ADMIN

    @get(
        "/summary",
        responses=ADMIN_QUERY,
        summary="Revenue, order count, average order value, by day, top products (admin)",
    )
    async def summary(
        self,
        bus: BusDependency,
        actor: Caller,
        request_id: RequestId,
        min_position: MinPosition,
        date_from: date | None = QueryParameter(name="from", default=None),
        date_to: date | None = QueryParameter(name="to", default=None),
    ) -> Response[AnalyticsSummary]:
        query = GetAnalyticsSummary(date_from=date_from, date_to=date_to)
        reply = await bus.query(query, actor, request_id, min_position)
        return query_response(reply, AnalyticsSummary)
