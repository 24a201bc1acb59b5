"""Read models of one OpenSearch document per aggregate (the catalog, the order list).

A generation is an index `<alias>-v<n>`; the alias points at the active one. Documents carry their
aggregate's version as OpenSearch's external version, so a replay or an overlap changes nothing.
A batch costs one realtime `_mget` (for documents not in the writer's cache) and one `_bulk`;
each generation's checkpoint (one per partition) is a document in the `<prefix>projections` index,
written after its batch with the position as external version, so it never moves back."""

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import msgspec
from litestar import Litestar
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import NotFoundError, RequestError
from opensearchpy.serializer import JSONSerializer

from shop.contracts.events import DomainEvent, Envelope
from shop.projection.app import projector_app
from shop.projection.engine import WHOLE, Checkpoint, Event, Scope, partition_suffix, resolve_checkpoints
from shop.projection.rebuild import RebuildState
from shop.read_models import projection_state_index
from shop.settings import ProjectorSettings

Document = dict[str, Any]
DocumentFunction = Callable[[Document | None, Envelope, DomainEvent], Document | None]

KNOWN_IDS = 2_000_000  # ids a writer remembers (~200 MB) before it asks the index instead
# a replay writes without refreshes, replicas or an fsync per _bulk; its checkpoint is stored only after a flush
REPLAY_SETTINGS = {"index": {"refresh_interval": "-1", "number_of_replicas": 0, "translog.durability": "async"}}
REPLAY_FLUSH_SECONDS = 5.0
STATE_INDEX = {  # one replica where the cluster has a node for it: a single node stays green
    "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1"},
    "mappings": {"dynamic": False, "properties": {"position": {"type": "long"}, "generation": {"type": "keyword"}}},
}


class JSON(JSONSerializer):
    """msgspec instead of the standard library: a _bulk answer holds an item per document."""

    def loads(self, s: str | bytes) -> Any:
        return msgspec.json.decode(s)

    def dumps(self, data: Any) -> str | bytes:
        return data if isinstance(data, str | bytes) else msgspec.json.encode(data).decode()


def open_client(url: str) -> AsyncOpenSearch:
    return AsyncOpenSearch(hosts=[url], timeout=10, max_retries=0, serializer=JSON())


class Bulk(NamedTuple):
    rejected: dict[int, str]  # by the projection's own code
    covers: dict[str, list[int]]  # aggregate -> the events its new document covers
    body: bytes  # the _bulk lines of the documents


class TransientBulkFailure(Exception):
    """Some items of a _bulk were refused for a reason that passes (429, 5xx): the batch is tried again."""


class DocumentStore:
    """One index generation, written by one projector at a time."""

    refreshes = True
    reads = None  # every type of its aggregate's events
    # a generation being replayed (REPLAY_SETTINGS): a _bulk is not durable by itself, so the checkpoint is
    # stored only after a flush (every REPLAY_FLUSH_SECONDS, and before any commit)
    replaying = False

    def __init__(
        self,
        client: AsyncOpenSearch,
        index: str,
        state_index: str,
        stream_type: str,
        document: DocumentFunction,
        cache_size: int = 20_000,
    ) -> None:
        self._client, self.name, self._state_index = client, index, state_index
        self._stream_type, self._document = stream_type, document
        self.events = f"evt.{stream_type}.>"
        self._cache: OrderedDict[str, tuple[Document | None, int]] = OrderedDict()
        self._cache_size = cache_size
        # the id of every document in the index, while this writer knows them all (it started on an empty
        # index): an id not in it needs no _mget, which on an unrefreshed replay index would force a refresh
        self._known: set[str] | None = None
        # the checkpoint of a batch whose documents are written, to go with the next _bulk or refresh
        self._pending: tuple[Checkpoint, Scope] | None = None
        self._flushed_at = time.monotonic()

    async def checkpoints(self, count: int, partitions: Iterable[int]) -> dict[int, Checkpoint]:
        await self._write_pending()
        self._cache.clear()  # whoever wrote meanwhile, the store is the truth
        await self._client.indices.refresh(index=self.name)  # a replayed generation is not refreshed by itself
        self._known = set() if (await self._client.count(index=self.name))["count"] == 0 else None
        own = [self.name + partition_suffix(p, count) for p in partitions]
        found = await self._client.mget(index=self._state_index, body={"ids": [*own, self.name]}, realtime=True)
        docs = {doc["_id"]: doc["_source"] for doc in found["docs"] if doc.get("found")}
        if any(i not in docs for i in own):  # P changed: the checkpoints of the generation's other partitionings
            every = await self._client.search(
                index=self._state_index,
                body={"query": {"term": {"generation": self.name}}, "size": 1000},
            )
            docs = {hit["_id"]: hit["_source"] for hit in every["hits"]["hits"]} | docs
        stored = {
            i.removeprefix(self.name): msgspec.convert(d, Checkpoint)
            for i, d in docs.items()
            if i == self.name or i.startswith(self.name + "#")
        }
        return resolve_checkpoints(stored, count, partitions)

    async def commit(self, checkpoint: Checkpoint, scope: Scope = WHOLE) -> None:
        """The fencing tokens are not checked here: a _bulk is no atomic step, so the engine checks the leases
        right before each write, and documents carry external versions (an older state never replaces a
        newer one)."""
        self._pending = None
        if self.replaying:  # what the checkpoint covers must be durable first
            await self._client.indices.flush(index=self.name)
            self._flushed_at = time.monotonic()
        answer = await self._client.bulk(body=self._checkpoint_lines(checkpoint, scope), filter_path="items.*.status")
        failed = [item["index"]["status"] for item in answer["items"] if item["index"]["status"] not in (200, 201, 409)]
        if failed:  # 409: a later one is there
            raise TransientBulkFailure(f"checkpoint not stored: {failed[0]}")

    def _checkpoint_lines(self, checkpoint: Checkpoint, scope: Scope) -> bytes:
        """_bulk lines of each partition's checkpoint document. The position is its external version: the
        same one may come again (the parked set changed), a lower one is refused (409)."""
        lines = []
        for p, part in scope.split(checkpoint).items():
            action = {
                "_index": self._state_index,
                "_id": self.name + partition_suffix(p, scope.count),
                "version": part.position,
                "version_type": "external_gte",
            }
            lines += [
                msgspec.json.encode({"index": action}),
                msgspec.json.encode(msgspec.to_builtins(part) | {"generation": self.name}),
            ]
        return b"\n".join(lines) + b"\n"

    async def _write_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            try:
                await self.commit(*pending)
            except BaseException:
                self._pending = self._pending or pending
                raise

    async def prepare(self, events: Sequence[Event]) -> Bulk:
        try:
            return await self._prepare([e for e in events if e.envelope.stream_type == self._stream_type])
        except BaseException:
            self._forget_all()
            raise

    async def send(self, prepared: Bulk, checkpoint: Checkpoint | None, scope: Scope = WHOLE) -> dict[int, str]:
        rejected = dict(prepared.rejected)
        if prepared.covers:
            try:
                rejected.update(await self._bulk(prepared))
            except BaseException:
                self._forget_all()  # what reached the index is unknown now
                raise
        if checkpoint is not None and not rejected:
            self._pending = (checkpoint, scope)  # written with the next _bulk, or by the next refresh
            if self.replaying and time.monotonic() - self._flushed_at > REPLAY_FLUSH_SECONDS:
                await self._write_pending()
        return rejected

    async def _prepare(self, events: list[Event]) -> Bulk:
        first: dict[str, int] = {}  # aggregate -> its first version in the batch
        for _, envelope, _ in events:
            first.setdefault(envelope.stream_id, envelope.version)
        # an aggregate that starts here has no document yet (if it has, the _bulk says 409: applied already)
        states = await self._load({aggregate for aggregate, version in first.items() if version > 1})
        rejected: dict[int, str] = {}
        blocked: dict[str, int] = {}  # aggregate -> its rejected event
        covers: dict[str, list[int]] = {}  # aggregate -> the events its new document covers
        for seq, envelope, event in events:
            aggregate = envelope.stream_id
            if aggregate in blocked:
                rejected[seq] = f"parked behind #{blocked[aggregate]}"
                continue
            doc, version = states.get(aggregate, (None, 0))
            if envelope.version <= version:
                continue  # applied already
            if envelope.version != version + 1:
                why = f"out of order: {aggregate} v{envelope.version} came before v{version + 1}"
            else:
                try:
                    new = self._document(doc, envelope, event)
                    why = None
                except Exception as exc:  # the projection's own code refuses it
                    why = f"{type(exc).__name__}: {exc}"
            if why:
                blocked[aggregate], rejected[seq] = seq, why
                continue
            if new is None and doc is None:
                continue  # nothing to show for this aggregate
            states[aggregate] = ({**(new if new is not None else doc), "version": envelope.version}, envelope.version)
            covers.setdefault(aggregate, []).append(seq)
        lines = []
        for aggregate in covers:  # remembered now: the next batch is prepared while this one is sent
            self._remember(aggregate, states[aggregate])
            doc, version = states[aggregate]
            action = {"index": {"_index": self.name, "_id": aggregate, "version": version, "version_type": "external"}}
            lines += [msgspec.json.encode(action), msgspec.json.encode(doc)]
        return Bulk(rejected, covers, b"\n".join(lines) + b"\n")

    async def _load(self, aggregates: set[str]) -> dict[str, tuple[Document | None, int]]:
        states = {a: self._cache[a] for a in aggregates if a in self._cache}
        missing = [a for a in aggregates if a not in states and (self._known is None or a in self._known)]
        if missing:
            found = await self._client.mget(index=self.name, body={"ids": missing}, realtime=True)
            for doc in found["docs"]:
                if doc.get("found"):
                    states[doc["_id"]] = (doc["_source"], doc["_version"])
        return states

    async def _bulk(self, prepared: Bulk) -> dict[int, str]:
        body = prepared.body
        included = None if self.replaying else self._pending  # the last batch's checkpoint: its documents are written
        if included is not None:
            body = self._checkpoint_lines(*included) + body
        answer = await self._client.bulk(body=body, filter_path="items.*.status,items.*.error")
        items = answer["items"]
        if included is not None:
            parts = len(included[1].tokens)
            # 409: a later one is there
            written = all(item["index"].get("status", 500) in (200, 201, 409) for item in items[:parts])
            if written and self._pending is included:
                self._pending = None
            items = items[parts:]
        rejected, transient = {}, []
        for aggregate, item in zip(prepared.covers, items, strict=True):
            result = item["index"]
            status = result.get("status", 500)
            if status < 300:
                continue
            if status == 409:  # a later or equal version is there: applied already
                self._forget(aggregate)
            elif status == 429 or status >= 500:
                transient.append(f"{status} {result.get('error', {}).get('type', '')}")
            else:  # mapping or argument errors never pass: poison, with every event the document covered
                self._forget(aggregate)
                error = result.get("error", {})
                why = f"OpenSearch refused the document: {status} {error.get('type')}: {error.get('reason')}"
                rejected.update(dict.fromkeys(prepared.covers[aggregate], why))
        if transient:
            raise TransientBulkFailure(f"{len(transient)} items refused, e.g. {transient[0]}")
        return rejected

    def _forget_all(self) -> None:
        self._cache.clear()
        self._known = None

    def _remember(self, aggregate: str, state: tuple[Document | None, int]) -> None:
        self._cache[aggregate] = state
        self._cache.move_to_end(aggregate)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        if self._known is not None:
            self._known.add(aggregate)
            if len(self._known) > KNOWN_IDS:
                self._known = None

    def _forget(self, aggregate: str) -> None:
        self._cache.pop(aggregate, None)
        if self._known is not None:
            self._known.add(aggregate)  # it may be there

    async def refresh(self) -> None:
        await self._client.indices.refresh(index=self.name)
        await self._write_pending()


class DocumentReadModel:
    """The generations of one document read model and the alias that names the active one."""

    def __init__(
        self,
        client: AsyncOpenSearch,
        alias: str,
        prefix: str,
        mapping: dict,
        stream_type: str,
        document: DocumentFunction,
    ) -> None:
        self._client, self._alias, self._mapping = client, alias, mapping
        self._stream_type, self._document = stream_type, document
        self._state_index = projection_state_index(prefix)
        self.checks = {"opensearch": lambda: client.cluster.health(index=alias)}

    def _store(self, index: str) -> DocumentStore:
        return DocumentStore(self._client, index, self._state_index, self._stream_type, self._document)

    async def active(self) -> DocumentStore:
        """The generation the alias points at; the first one is made here."""
        if not await self._client.indices.exists(index=self._state_index):
            await self._client.indices.create(index=self._state_index, body=STATE_INDEX, ignore=400)
        else:  # one made before the generation field
            await self._client.indices.put_mapping(index=self._state_index, body=STATE_INDEX["mappings"])
        if not await self._client.indices.exists_alias(name=self._alias):
            index = f"{self._alias}-v1"
            await self._client.indices.create(index=index, body=self._mapping, ignore=400)  # 400: it exists
            await self._client.indices.put_alias(index=index, name=self._alias)
        index = await self.active_name()
        # fields added since the index was made; a changed field needs a rebuild instead
        await self._client.indices.put_mapping(index=index, body=self._mapping["mappings"])
        return self._store(index)

    async def active_name(self) -> str:
        return next(iter(await self._client.indices.get_alias(name=self._alias)))

    async def next_generation(self) -> str:
        existing = await self._client.indices.get(index=f"{self._alias}-v*", allow_no_indices=True)
        return f"{self._alias}-v{max((int(index.rsplit('-v', 1)[1]) for index in existing), default=0) + 1}"

    async def generation(self, name: str) -> DocumentStore:
        """The generation `name` (made if missing), set up for a bulk replay."""
        if not await self._client.indices.exists(index=name):
            body = {**self._mapping, "settings": {**self._mapping.get("settings", {}), **REPLAY_SETTINGS["index"]}}
            try:
                await self._client.indices.create(index=name, body=body)
            except RequestError as exc:  # the rebuild and the processes helping it make it at the same moment
                if exc.error != "resource_already_exists_exception":
                    raise
        store = self._store(name)
        store.replaying = True
        return store

    async def prepare(self, store: DocumentStore) -> None:
        """Ready a replayed generation for readers: the mapping's settings back, everything searchable and durable
        (called while the replay is held, so that no _bulk straddles the change)."""
        settings = self._mapping.get("settings", {})
        restore = {
            "refresh_interval": None,
            "number_of_replicas": settings.get("number_of_replicas", 1),
            "translog.durability": None,
        }
        await self._client.indices.put_settings(index=store.name, body={"index": restore})
        await self._client.indices.refresh(index=store.name)
        await self._client.indices.flush(index=store.name)  # what was written is durable, and from here each _bulk
        store.replaying = False

    async def activate(self, store: DocumentStore) -> None:
        """Point the alias at `store`'s generation, in one step."""
        current = list(await self._client.indices.get_alias(name=self._alias))
        actions = [{"remove": {"index": index, "alias": self._alias}} for index in current if index != store.name]
        await self._client.indices.update_aliases(
            body={"actions": [*actions, {"add": {"index": store.name, "alias": self._alias}}]}
        )

    async def retire(self, name: str) -> None:
        """Delete a generation no reader uses; the active one is refused."""
        if name == await self.active_name():
            raise RuntimeError(f"{name} is the active generation of {self._alias}: not deleted")
        await self._client.indices.delete(index=name, ignore_unavailable=True)
        await self._client.delete_by_query(
            index=self._state_index, body={"query": {"term": {"generation": name}}}, refresh=True, conflicts="proceed"
        )
        await self._client.delete(index=self._state_index, id=name, ignore=404)  # one written before partitions

    async def rebuild_state(self) -> RebuildState | None:
        try:
            found = await self._client.get(index=self._state_index, id=f"rebuild:{self._alias}")
        except NotFoundError:
            return None
        return msgspec.convert(found["_source"], RebuildState)

    async def save_rebuild_state(self, state: RebuildState | None) -> None:
        if state is None:
            await self._client.delete(index=self._state_index, id=f"rebuild:{self._alias}", ignore=404)
        else:
            await self._client.index(
                index=self._state_index, id=f"rebuild:{self._alias}", body=msgspec.to_builtins(state)
            )


class SearchProjectorSettings(ProjectorSettings, frozen=True, kw_only=True):
    opensearch_url: str = "http://127.0.0.1:9200"
    index_prefix: str = ""  # lets tests and parallel systems share one OpenSearch


def document_projector_app(
    name: str,
    settings: SearchProjectorSettings,
    alias: str,
    mapping: dict,
    stream_type: str,
    document: DocumentFunction,
) -> Litestar:
    @asynccontextmanager
    async def open_read_model() -> AsyncIterator[DocumentReadModel]:
        client = open_client(settings.opensearch_url)
        try:
            yield DocumentReadModel(
                client, settings.index_prefix + alias, settings.index_prefix, mapping, stream_type, document
            )
        finally:
            await client.close()

    return projector_app(name, settings, open_read_model)
