"""Admin analytics routes."""

from datetime import date

from litestar import Controller, Response, get
from litestar.params import Parameter

from gateway.auth import require_admin
from gateway.bus import Bus
from gateway.dependencies import query_response
from shop.contracts.commands import Actor
from shop.contracts.queries import GetAnalyticsSummary
from shop.contracts.views import AnalyticsSummary


class AnalyticsController(Controller):
    path = "/v1/admin/analytics"
    tags = ["analytics"]

    @get("/summary", summary="Revenue, order count, average order value, by day, top products (admin)")
    async def summary(
        self,
        bus: Bus,
        actor: Actor | None,
        request_id: str,
        min_position: int,
        date_from: date | None = Parameter(query="from", default=None),
        date_to: date | None = Parameter(query="to", default=None),
    ) -> Response[AnalyticsSummary]:
        query = GetAnalyticsSummary(date_from=date_from, date_to=date_to)
        reply = await bus.query(query, require_admin(actor), request_id, min_position)
        return query_response(reply, AnalyticsSummary)
