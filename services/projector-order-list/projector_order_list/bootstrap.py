"""Composition root of projector-order-list."""

from litestar import Litestar

from projector_order_list.documents import MAPPING, order_document
from projector_order_list.settings import Settings
from shop.projection.documents import document_projector_app
from shop.read_models import ORDER_LIST, ORDERS_ALIAS


def create_app(settings: Settings) -> Litestar:
    return document_projector_app(ORDER_LIST, settings, ORDERS_ALIAS, MAPPING, "order", order_document)
