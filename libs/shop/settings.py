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
