from shop.projection.documents import SearchProjectorSettings


class Settings(SearchProjectorSettings, frozen=True, kw_only=True):
    http_port: int = 8005
