"""Commands and queries over NATS request/reply."""

from datetime import UTC, datetime, timedelta

import msgspec
from nats.aio.client import Client as NATS

from shop.contracts.commands import Actor, Command, CommandMeta, CommandRequest
from shop.contracts.queries import Query, QueryMeta, QueryRequest
from shop.contracts.replies import CommandResult, Reply
from shop.errors import OutcomeUnknown
from shop.messaging import request
from shop.signatures import signed

command_result_decoder = msgspec.json.Decoder(CommandResult)


class Bus:
    """Every request signed with the actor key: the services trust the caller it names only so."""

    def __init__(self, nc: NATS, actor_key: str, command_timeout: float, query_timeout: float) -> None:
        self._nc, self._key = nc, actor_key
        self._command_timeout, self._query_timeout = command_timeout, query_timeout

    async def command(
        self, command: Command, actor: Actor, correlation_id: str, idempotency_key: str | None
    ) -> CommandResult:
        """Sent with the deadline this gateway waits for; the command-service commits nothing after it."""
        deadline = datetime.now(UTC) + timedelta(seconds=self._command_timeout)
        meta = CommandMeta(
            actor=actor, correlation_id=correlation_id, idempotency_key=idempotency_key, deadline=deadline
        )
        payload = msgspec.json.encode(CommandRequest(meta=meta, command=command))
        headers = signed(self._key, command.subject, payload)
        reply = await request(self._nc, command.subject, payload, self._command_timeout, OutcomeUnknown, headers)
        return command_result_decoder.decode(reply.result)

    async def query(self, query: Query, actor: Actor | None, correlation_id: str, min_position: int) -> Reply:
        meta = QueryMeta(actor=actor, correlation_id=correlation_id, min_position=min_position)
        payload = msgspec.json.encode(QueryRequest(meta=meta, query=query))
        headers = signed(self._key, query.subject, payload)
        return await request(self._nc, query.subject, payload, self._query_timeout, headers=headers)
