from shop.search_index import SearchProjectorSettings


class Settings(SearchProjectorSettings, frozen=True, kw_only=True):
    http_port: int = 8005
