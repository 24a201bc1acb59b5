"""Envelopes for tests, as the command-service writes them."""

import uuid
from datetime import UTC, datetime

import msgspec

from shop.contracts.events import DomainEvent, Envelope, schema_version


def envelope(
    stream_id: str,
    version: int,
    event: DomainEvent,
    *,
    stream_type: str = "product",
    schema: int | None = None,
    data: bytes | None = None,  # instead of the event's own JSON, e.g. an old schema's
    at: datetime | None = None,
) -> Envelope:
    name = type(event).__name__
    return Envelope(
        event_id=str(uuid.uuid4()),
        type=name,
        schema_version=schema or schema_version(name),
        stream_id=stream_id,
        stream_type=stream_type,
        version=version,
        occurred_at=at or datetime.now(UTC),
        correlation_id="test",
        data=msgspec.Raw(data or msgspec.json.encode(event)),
    )
