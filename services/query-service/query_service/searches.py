"""OpenSearch request bodies for the list and search queries (pure), and what their hits become."""

import html
from typing import Any

from shop.contracts.queries import ListOrders, ListProducts, SearchOrders, SearchProducts
from shop.contracts.views import ProductHit, ProductSummary

Body = dict[str, Any]

# every sort ends on the id, so that pages never overlap or skip a document
PRODUCT_SORTS: dict[str, list[Body]] = {
    "newest": [{"created_at": "desc"}],
    "price_asc": [{"price": "asc"}],
    "price_desc": [{"price": "desc"}],
    "popular": [{"units_sold": {"order": "desc", "missing": "_last"}}],
    "rating": [{"average_rating": "desc"}, {"review_count": "desc"}],
}
NEWEST_ORDERS: list[Body] = [{"placed_at": "desc"}, {"id": "asc"}]


def paged(body: Body, page: int, size: int) -> Body:
    return {**body, "from": (page - 1) * size, "size": size, "track_total_hits": True}


def products_list(query: ListProducts) -> Body:
    filters = [{"term": {"category": query.category}}] if query.category else []
    return paged(
        {"query": {"bool": {"filter": filters}}, "sort": [*PRODUCT_SORTS[query.sort], {"id": "asc"}]},
        query.page,
        query.size,
    )


def products_search(query: SearchProducts) -> Body:
    filters: list[Body] = [{"term": {"category": query.category}}] if query.category else []
    if query.min_price is not None or query.max_price is not None:
        bounds = {"gte": query.min_price, "lte": query.max_price}
        filters.append({"range": {"price": {k: v for k, v in bounds.items() if v is not None}}})
    sort = [*PRODUCT_SORTS[query.sort], {"id": "asc"}] if query.sort else ["_score", {"id": "asc"}]
    body = {
        "query": {
            "bool": {
                "must": [{"multi_match": {"query": query.q, "fields": ["name^3", "description"]}}],
                "filter": filters,
            }
        },
        "sort": sort,
        # the html encoder escapes the name itself, so that only the <em> tags are markup
        "highlight": {
            "fields": {"name": {"number_of_fragments": 0}},
            "pre_tags": ["<em>"],
            "post_tags": ["</em>"],
            "encoder": "html",
        },
    }
    return paged(body, query.page, query.size)


def orders_list(user_id: str, query: ListOrders) -> Body:
    filters: list[Body] = [{"term": {"user_id": user_id}}]
    if query.status:
        filters.append({"term": {"status": query.status}})
    return paged({"query": {"bool": {"filter": filters}}, "sort": NEWEST_ORDERS}, query.page, query.size)


def orders_search(query: SearchOrders) -> Body:
    filters: list[Body] = []
    if query.status:
        filters.append({"term": {"status": query.status}})
    if query.placed_from or query.placed_to:
        # as epoch milliseconds: OpenSearch takes no offset beyond +-18:00, which ISO 8601 allows
        bounds = {"gte": query.placed_from, "lte": query.placed_to}
        range_ = {k: int(v.timestamp() * 1000) for k, v in bounds.items() if v is not None}
        filters.append({"range": {"placed_at": {**range_, "format": "epoch_millis"}}})
    must: list[Body] = []
    if query.q:
        matches = [{"match": {"items.name": query.q}}, {"term": {"id": query.q}}]
        must.append({"bool": {"should": matches, "minimum_should_match": 1}})
    return paged({"query": {"bool": {"must": must, "filter": filters}}, "sort": NEWEST_ORDERS}, query.page, query.size)


def product_summary(doc: Body) -> ProductSummary:
    return ProductSummary(
        id=doc["id"],
        name=doc["name"],
        thumbnail_url=doc["image_urls"][0] if doc["image_urls"] else None,
        price=doc["price"],
        review_count=doc["review_count"],
        average_rating=doc["average_rating"],
    )


def product_hit(hit: Body) -> ProductHit:
    doc = hit["_source"]
    return ProductHit(
        id=doc["id"],
        name=doc["name"],
        highlighted_name=hit.get("highlight", {}).get("name", [html.escape(doc["name"])])[0],
        thumbnail_url=doc["image_urls"][0] if doc["image_urls"] else None,
        price=doc["price"],
        category=doc["category"],
        review_count=doc["review_count"],
        average_rating=doc["average_rating"],
    )
