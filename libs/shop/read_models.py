"""Where each read model lives, shared by the projector that writes it and the query-service."""

ORDER_LIST = "order-list"
ANALYTICS = "analytics"
CATALOG = "catalog"
PROJECTORS = (ORDER_LIST, ANALYTICS, CATALOG)


ORDERS_ALIAS = "orders"
PRODUCTS_ALIAS = "products"


class AnalyticsKeys:
    """Redis keys of the analytics read model under one prefix (a rebuild writes a new prefix)."""

    def __init__(self, prefix: str = "analytics:") -> None:
        self.prefix = prefix

    def day(self, day: str) -> str:  # hash: revenue, orders
        return f"{self.prefix}day:{day}"

    @property
    def days(self) -> str:  # sorted set: date -> ordinal
        return f"{self.prefix}days"

    @property
    def units(self) -> str:  # sorted set: product id -> units sold
        return f"{self.prefix}units"

    def day_units(self, day: str) -> str:  # sorted set: product id -> units sold that day
        return f"{self.prefix}units:{day}"

    @property
    def product_names(self) -> str:  # hash: product id -> name
        return f"{self.prefix}product_names"

    @property
    def prices(self) -> str:  # hash: product id -> current price
        return f"{self.prefix}prices"

    @property
    def ratings(self) -> str:  # hash: rating (1..5) -> number of reviews
        return f"{self.prefix}ratings"

    @property
    def applied(self) -> str:  # hash: stream id -> last applied version
        return f"{self.prefix}applied"

    @property
    def position(self) -> str:  # last stream sequence applied
        return f"{self.prefix}position"
