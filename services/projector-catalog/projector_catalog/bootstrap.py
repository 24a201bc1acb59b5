"""Composition root of projector-catalog."""

from litestar import Litestar

from projector_catalog.documents import MAPPING, product_document
from projector_catalog.settings import Settings
from shop.projection.documents import document_projector_app
from shop.read_models import CATALOG, PRODUCTS_ALIAS


def create_app(settings: Settings) -> Litestar:
    return document_projector_app(CATALOG, settings, PRODUCTS_ALIAS, MAPPING, "product", product_document)
