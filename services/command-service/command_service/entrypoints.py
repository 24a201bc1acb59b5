"""NATS entry point: `cmd.>` requests decoded, checked against their subject, handled, answered."""

import structlog
from nats.aio.msg import Msg

from command_service.handlers import CommandHandlers
from shop.contracts.commands import command_request_decoder
from shop.contracts.replies import result_reply
from shop.errors import ValidationFailed


def command_responder(handlers: CommandHandlers):
    async def answer(msg: Msg) -> bytes:
        request = command_request_decoder.decode(msg.data)
        if request.command.subject != msg.subject:
            raise ValidationFailed(f"{type(request.command).__name__} must be sent on {request.command.subject}")
        structlog.contextvars.bind_contextvars(correlation_id=request.meta.correlation_id)
        return result_reply(await handlers.handle(request))

    return answer
