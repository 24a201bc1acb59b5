from shop.settings import ProjectorSettings


class Settings(ProjectorSettings, frozen=True, kw_only=True):
    http_port: int = 8004
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str = ""  # of the Redis ACL user projector-analytics; REDIS_PASSWORD_FILE (unless the URL has one)
    analytics_prefix: str = "analytics:"  # key prefix of the analytics read model
