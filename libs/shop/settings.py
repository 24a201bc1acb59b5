"""Settings from the environment into one msgspec Struct per service."""

import os
from typing import TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True):
    nats_url: str = "nats://127.0.0.1:4222"
    http_host: str = "127.0.0.1"
    http_port: int
    log_level: str = "info"
    environment: str = "development"
    shutdown_timeout: float = 10.0
    http_header_timeout: float = 10.0  # seconds a request's headers may take to arrive
    http_body_timeout: float = 30.0  # seconds its body may take after them
    http_max_connections: int = 1000  # open connections beyond which requests get 503
    trusted_proxies: str = ""  # addresses whose X-Forwarded-For is believed ("10.0.0.1,10.0.0.2"); none by default


def load_settings(cls: type[S], service: str) -> S:
    """Each field `foo` is read from `<SERVICE>_FOO` if set, else from `FOO`.

    A required field with neither set stops the process with the variable's name."""
    prefix = service.upper().replace("-", "_") + "_"
    values: dict[str, str] = {}
    for field in msgspec.structs.fields(cls):
        name = field.name.upper()
        for var in (prefix + name, name):
            if var in os.environ:
                values[field.name] = os.environ[var]
                break
        else:
            if field.required:
                raise SystemExit(f"missing required setting: set {name} (or {prefix + name})")
    try:
        return msgspec.convert(values, cls, strict=False)
    except msgspec.ValidationError as exc:
        raise SystemExit(f"invalid setting: {exc}") from exc
