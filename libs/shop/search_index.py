"""An OpenSearch index behind an alias whose documents carry their aggregate's version
(external versioning): a write of an older or equal version is refused, so replays change nothing."""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from litestar import Litestar
from opensearchpy import AsyncOpenSearch
from opensearchpy.exceptions import ConflictError, NotFoundError

from shop.contracts.events import DomainEvent, Envelope
from shop.projector_app import projector_app
from shop.settings import CommonSettings


def open_client(url: str) -> AsyncOpenSearch:
    return AsyncOpenSearch(hosts=[url], timeout=10, max_retries=3, retry_on_timeout=True)


class VersionedIndex:
    def __init__(self, client: AsyncOpenSearch, alias: str, body: dict[str, Any]) -> None:
        self._client, self.alias, self._body = client, alias, body

    async def ensure(self) -> None:
        """Create `<alias>-v1` with its mapping and point the alias at it, or add new fields to the index."""
        if await self._client.indices.exists_alias(name=self.alias):
            # fields added since the index was made; a changed field needs a rebuild instead
            await self._client.indices.put_mapping(index=self.alias, body=self._body["mappings"])
            return
        index = f"{self.alias}-v1"
        if not await self._client.indices.exists(index=index):
            await self._client.indices.create(index=index, body=self._body)
        await self._client.indices.put_alias(index=index, name=self.alias)

    async def get(self, doc_id: str) -> tuple[dict[str, Any], int] | None:
        try:
            found = await self._client.get(index=self.alias, id=doc_id)
        except NotFoundError:
            return None
        return found["_source"], found["_version"]

    async def put(self, doc_id: str, doc: dict[str, Any], version: int) -> bool:
        """Write the document at `version`; False if that version (or a later one) is already there."""
        try:
            await self._client.index(index=self.alias, id=doc_id, body=doc, version=version, version_type="external")
        except ConflictError:
            return False
        return True

    async def refresh(self) -> None:
        await self._client.indices.refresh(index=self.alias)

    async def ping(self) -> None:
        await self._client.cluster.health(index=self.alias)


Document = dict[str, Any]


class OutOfOrder(Exception):
    """An aggregate's event arrived before an earlier one was applied."""


class DocumentProjection:
    """A projection keeping one document per aggregate of `stream_type`; `document(doc, envelope, event)`
    returns the document after the event (or None if the event changes nothing here)."""

    def __init__(
        self,
        index: VersionedIndex,
        stream_type: str,
        document: Callable[[Document | None, Envelope, DomainEvent], Document | None],
    ) -> None:
        self._index, self._stream_type, self._document = index, stream_type, document
        self._dirty = False

    async def apply(self, envelope: Envelope, event: DomainEvent, position: int) -> None:
        if envelope.stream_type != self._stream_type:
            return
        found = await self._index.get(envelope.stream_id)
        applied = found[1] if found else 0
        if applied >= envelope.version:
            return  # already applied
        if envelope.version != applied + 1:  # never skip one: wait (retry, then DLQ) for the missing one
            raise OutOfOrder(f"{envelope.stream_id} v{envelope.version} came before v{applied + 1}")
        doc = self._document(found[0] if found else None, envelope, event)
        if doc is None:
            if found is None:
                return
            doc = {**found[0], "version": envelope.version}  # nothing to show, but the version moves on
        self._dirty |= await self._index.put(envelope.stream_id, doc, envelope.version)

    async def flush(self) -> None:
        if self._dirty:
            await self._index.refresh()
            self._dirty = False


class SearchProjectorSettings(CommonSettings, frozen=True, kw_only=True):
    opensearch_url: str = "http://127.0.0.1:9200"
    index_prefix: str = ""  # lets tests and parallel systems share one OpenSearch


class DocumentReadModel:
    """Documents of one aggregate type; its generations are indexes `<alias>-v<n>`, and the alias
    points at the active one, so readers and the live projection switch in one step."""

    def __init__(
        self,
        client: AsyncOpenSearch,
        alias: str,
        mapping: dict[str, Any],
        stream_type: str,
        document: Callable[[Document | None, Envelope, DomainEvent], Document | None],
    ) -> None:
        self._client, self._alias, self._mapping = client, alias, mapping
        self._stream_type, self._document = stream_type, document
        self.index = VersionedIndex(client, alias, mapping)
        self.live = DocumentProjection(self.index, stream_type, document)
        self.checks = {"opensearch": self.index.ping}

    async def new_generation(self) -> tuple[str, DocumentProjection]:
        existing = await self._client.indices.get(index=f"{self._alias}-v*", allow_no_indices=True)
        number = max((int(name.rsplit("-v", 1)[1]) for name in existing), default=0) + 1
        generation = f"{self._alias}-v{number}"
        await self._client.indices.create(index=generation, body=self._mapping)
        index = VersionedIndex(self._client, generation, self._mapping)
        return generation, DocumentProjection(index, self._stream_type, self._document)

    async def activate(self, generation: str) -> str | None:
        current = list(await self._client.indices.get_alias(name=self._alias))
        actions = [{"remove": {"index": index, "alias": self._alias}} for index in current]
        await self._client.indices.update_aliases(
            body={"actions": [*actions, {"add": {"index": generation, "alias": self._alias}}]}
        )
        return current[0] if current else None

    async def retire(self, generation: str) -> None:
        await self._client.indices.delete(index=generation)


def document_projector_app(
    name: str,
    settings: SearchProjectorSettings,
    alias: str,
    mapping: dict[str, Any],
    stream_type: str,
    document: Callable[[Document | None, Envelope, DomainEvent], Document | None],
) -> Litestar:
    @asynccontextmanager
    async def open_read_model() -> AsyncIterator[DocumentReadModel]:
        client = open_client(settings.opensearch_url)
        try:
            read_model = DocumentReadModel(client, settings.index_prefix + alias, mapping, stream_type, document)
            await read_model.index.ensure()
            yield read_model
        finally:
            await client.close()

    return projector_app(name, settings, open_read_model)
