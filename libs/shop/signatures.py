"""The gateway signs every command and query it puts on the bus (HMAC-SHA256 over the subject and the
body, caller included, with ACTOR_KEY); the command- and query-service answer only what it signed.
So a bus credential alone (a projector's, a leaked one) cannot act as anyone: the caller is verified."""

import hashlib
import hmac

from nats.aio.msg import Msg

HEADER = "Shop-Signature"


def signature(key: str, subject: str, payload: bytes) -> str:
    return hmac.new(key.encode(), subject.encode() + b"\n" + payload, hashlib.sha256).hexdigest()


def signed(key: str, subject: str, payload: bytes) -> dict[str, str]:
    """The headers that carry the signature of a request."""
    return {HEADER: signature(key, subject, payload)}


def is_signed(key: str, msg: Msg) -> bool:
    given = (msg.headers or {}).get(HEADER, "")
    return hmac.compare_digest(given.encode(), signature(key, msg.subject, msg.data).encode())
