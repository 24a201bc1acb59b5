"""An aggregate's state, from its latest snapshot and the events after it."""

import msgspec

from command_service.adapters.event_store import Session
from command_service.domain import order, product
from shop.contracts.events import decode_data

EVOLVE = {"product": product.evolve, "order": order.evolve}
# the state type of each aggregate and its snapshot schema: bump the number when the type changes
SNAPSHOTS = {"product": (product.Product, 1), "order": (order.Order, 1)}


async def load_many(
    session: Session, stream_type: str, stream_ids: list[str], snapshot_every: int = 0
) -> dict[str, tuple[object | None, int]]:
    """Each aggregate's state and version (0 if it has no events yet), from its snapshot and the events
    after it, all read in one round trip. When `snapshot_every` or more events had to be replayed, a
    new snapshot is saved in the same statement as the transaction's events (no round trip of its
    own); a snapshot newer than its stream (a restore, a manual fix) is deleted."""
    state_type, schema = SNAPSHOTS[stream_type]
    loaded = await session.load_streams(stream_type, stream_ids, schema if snapshot_every else None)
    aggregates = {}
    for stream_id, (snapshot, replayed) in loaded.items():
        state, version = None, 0
        if snapshot is not None and not snapshot.trusted:
            await session.delete_snapshot(stream_id)  # its events were read from version 0
        elif snapshot is not None and snapshot.schema == schema:
            try:
                state, version = msgspec.json.decode(snapshot.state, type=state_type), snapshot.version
            except msgspec.ValidationError:  # unreadable snapshot: replay everything instead
                replayed = await session.load(stream_type, stream_id)
        for envelope in replayed:
            state, version = EVOLVE[stream_type](state, decode_data(envelope)), envelope.version
        if snapshot_every and len(replayed) >= snapshot_every:  # saved with the transaction's events
            session.snapshot_later(stream_id, stream_type, version, schema, msgspec.json.encode(state))
        aggregates[stream_id] = (state, version)
    return aggregates


async def load(
    session: Session, stream_type: str, stream_id: str, snapshot_every: int = 0
) -> tuple[object | None, int]:
    """One aggregate's state and version: see `load_many`."""
    return (await load_many(session, stream_type, [stream_id], snapshot_every))[stream_id]
