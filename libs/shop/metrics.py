"""Prometheus metrics every process exports on /metrics."""

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("shop_requests_total", "NATS requests answered", ["subject", "outcome"])
HTTP_REQUESTS = Histogram(
    "shop_http_request_seconds",
    "Public HTTP requests",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_HANDLED = Counter("shop_events_handled_total", "Events applied by a projector", ["projector", "type"])
EVENTS_DEAD_LETTERED = Counter("shop_events_dead_lettered_total", "Events sent to the DLQ", ["projector"])
PROJECTION_RETRIES = Counter(
    "shop_projection_retries_total", "Batches tried again after a transient failure", ["projector"]
)
PROJECTION_WRITES = Counter(
    "shop_projection_writes_total", "Writes to the read model started (batches, checkpoints, letters)", ["projector"]
)
PROJECTION_FENCED = Counter(
    "shop_projection_fenced_total", "Writes refused because this process no longer held the lease", ["projector"]
)
EVENTS_PUBLISHED = Counter("shop_events_published_total", "Events published from the outbox")
OUTBOX_OLDEST_AGE = Gauge("shop_outbox_oldest_age_seconds", "Age of the oldest event not yet published")
PROJECTION_POSITION = Gauge("shop_projection_position", "Last stream sequence applied", ["projector"])
PROJECTION_LAG = Gauge("shop_projection_lag", "Events in the stream not yet applied", ["projector"])
