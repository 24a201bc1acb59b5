from shop.settings import CommonSettings, Secret


class Settings(CommonSettings, frozen=True, kw_only=True):
    http_port: int = 8000  # the public API
    ops_host: str = "127.0.0.1"  # health and metrics, off the public port
    ops_port: int = 8006
    actor_key: Secret  # signs the caller of each command and query (shop.signatures); ACTOR_KEY_FILE
    jwt_secret: str = ""  # HS256, at least 32 bytes (GATEWAY_JWT_SECRET or JWT_SECRET_FILE); or:
    jwt_jwks_url: str = ""  # RS256/ES256 with the keys of this JWKS document
    jwt_jwks_refetch: float = 30.0  # seconds between fetches of the key set for an unknown key id
    jwt_issuer: str = ""  # when set, tokens must carry this `iss`
    jwt_audience: str = ""  # when set, tokens must carry this `aud`
    jwt_leeway: float = 30.0  # seconds of clock skew allowed on `exp` (at most 300)
    command_timeout: float = 10.0
    query_timeout: float = 8.0  # covers the query-service's bounded wait for read-your-writes
    rate_limit_per_minute: int = 6000  # per user (per address without a token); 0 turns it off
    sync_streams_per_user: int = 5  # open /v1/sync streams of one user in this process
    sync_streams_total: int = 500  # open /v1/sync streams in this process
    sync_max_lifetime: float = 3600.0  # seconds a /v1/sync stream lasts at most (then the app reconnects)
