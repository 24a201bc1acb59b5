from shop.settings import CommonSettings, Secret


class Settings(CommonSettings, frozen=True, kw_only=True):
    actor_key: Secret  # the gateway's key for the caller's signature (shop.signatures); ACTOR_KEY_FILE
    http_port: int = 8002
    opensearch_url: str = "http://127.0.0.1:9200"
    index_prefix: str = ""
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str = ""  # of the Redis ACL user query-service; REDIS_PASSWORD_FILE (unless the URL has one)
    analytics_prefix: str = "analytics:"  # key prefix of the analytics read model
    consistency_wait: float = 3.0  # longest a query waits for its projection to reach min_position
