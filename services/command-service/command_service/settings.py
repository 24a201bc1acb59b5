from shop.settings import CommonSettings, Secret


class Settings(CommonSettings, frozen=True, kw_only=True):
    actor_key: Secret  # the gateway's key for the caller's signature (shop.signatures); ACTOR_KEY_FILE
    http_port: int = 8001
    database_url: str = "postgresql://shop@127.0.0.1:5432/shop"  # the event store's owner, the only writer
    database_password: str = ""  # DATABASE_PASSWORD_FILE (deploy/secrets.sh); unless the URL has one
    database_pool_size: int = 20
    request_timeout: float = 10.0  # the deadline of a command that came without one
    publish_wait: float = 8.0  # how long a command waits for its events to reach JetStream (an election: seconds)
    relay_interval: float = 0.5  # how often the outbox relay looks for unpublished events
    idempotency_ttl: float = 86_400.0  # seconds an Idempotency-Key is remembered
    conflict_attempts: int = 3  # tries of a command whose streams were appended to concurrently
    snapshot_every: int = 10  # an aggregate is snapshotted once this many events had to be replayed; 0: never
