from shop.settings import CommonSettings

DEV_JWT_SECRET = "dev-secret"


class Settings(CommonSettings, frozen=True, kw_only=True):
    http_port: int = 8000
    jwt_secret: str = DEV_JWT_SECRET  # GATEWAY_JWT_SECRET
    jwt_algorithm: str = "HS256"
    command_timeout: float = 10.0
    query_timeout: float = 8.0  # covers the query-service's bounded wait for read-your-writes
    rate_limit_per_minute: int = 6000  # per user (per address without a token); 0 turns it off
    sync_streams_per_user: int = 5  # open /v1/sync streams of one user in this process
    sync_streams_total: int = 500  # open /v1/sync streams in this process
    sync_max_lifetime: float = 3600.0  # seconds a /v1/sync stream lasts at most (then the app reconnects)
