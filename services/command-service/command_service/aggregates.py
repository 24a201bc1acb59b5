"""An aggregate's state, from its latest snapshot and the events after it."""

import msgspec

from command_service.adapters.event_store import Session
from command_service.domain import order, product
from shop.contracts.events import decode_data

EVOLVE = {"product": product.evolve, "order": order.evolve}
# the state type of each aggregate and its snapshot schema: bump the number when the type changes
SNAPSHOTS = {"product": (product.Product, 1), "order": (order.Order, 1)}


async def load(
    session: Session, stream_type: str, stream_id: str, snapshot_every: int = 0
) -> tuple[object | None, int]:
    """The aggregate's state and version (0 if it has no events yet), from its snapshot and the events
    after it. When `snapshot_every` or more events had to be replayed, a new snapshot is saved."""
    state_type, schema = SNAPSHOTS[stream_type]
    state, version = None, 0
    snapshot = await session.load_snapshot(stream_type, stream_id) if snapshot_every else None
    if snapshot is not None and not await session.has_version(stream_id, snapshot[1]):
        await session.delete_snapshot(stream_id)  # newer than its stream (a restore, a manual fix): not trusted
    elif snapshot is not None and snapshot[2] == schema:
        try:
            state, version = msgspec.json.decode(snapshot[0], type=state_type), snapshot[1]
        except msgspec.ValidationError:  # unreadable snapshot: replay everything instead
            state, version = None, 0
    replayed = await session.load(stream_type, stream_id, after_version=version)
    for envelope in replayed:
        state, version = EVOLVE[stream_type](state, decode_data(envelope)), envelope.version
    if snapshot_every and len(replayed) >= snapshot_every:
        await session.save_snapshot(stream_id, stream_type, version, schema, msgspec.json.encode(state))
    return state, version
