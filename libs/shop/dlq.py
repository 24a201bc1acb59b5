"""Dead letters (DESIGN §5.8): list them, re-drive them, drop them. `just dlq --help`.

A re-driven event is published to EVENTS again (new message id) and so reaches every projector;
those that applied it already skip it by its version, the one that dead-lettered it applies it now."""

import argparse
import asyncio
import os
import sys

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shop import messaging
from shop.contracts.events import envelope_decoder
from shop.messaging import DLQ_STREAM


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    seq: int  # in the DLQ stream
    projector: str
    stream_seq: int  # of the event in EVENTS
    error: str
    data: bytes

    @property
    def event(self) -> str:
        try:
            e = envelope_decoder.decode(self.data)
        except msgspec.MsgspecError:
            return "(undecodable)"
        return f"{e.type} {e.stream_type}/{e.stream_id} v{e.version}"


async def dead_letters(js: JetStreamContext, projector: str | None = None) -> list[DeadLetter]:
    subject, seq, found = f"dlq.{projector}" if projector else "dlq.>", 1, []
    while True:
        try:
            msg = await js.get_msg(DLQ_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        headers = msg.headers or {}
        found.append(
            DeadLetter(
                seq=msg.seq,
                projector=msg.subject.removeprefix("dlq."),
                stream_seq=int(headers.get("Shop-Stream-Seq", 0)),
                error=headers.get("Shop-Error", ""),
                data=msg.data or b"",
            )
        )
        seq = msg.seq + 1


async def redrive(js: JetStreamContext, letter: DeadLetter) -> int:
    """Publish the event to EVENTS again and remove the dead letter; returns the new stream position."""
    envelope = envelope_decoder.decode(letter.data)  # an undecodable one cannot be re-driven, only dropped
    ack = await js.publish(
        envelope.subject, letter.data, headers={"Nats-Msg-Id": f"redrive:{letter.projector}:{letter.seq}"}
    )
    await js.delete_msg(DLQ_STREAM, letter.seq)
    return ack.seq


async def run(args: argparse.Namespace) -> int:
    nc = await messaging.connect(args.nats_url, "dlq-cli", deadline=10)
    try:
        js = nc.jetstream()
        letters = await dead_letters(js, args.projector)
        if args.seq:
            letters = [d for d in letters if d.seq in set(args.seq)]
        if args.action == "list":
            for d in letters:
                print(f"{d.seq:>8}  {d.projector:<12} event #{d.stream_seq:<8} {d.event}\n          {d.error}")
            print(f"{len(letters)} dead letter(s)")
        elif args.action == "redrive":
            failed = 0
            for n, d in enumerate(letters, 1):
                try:
                    print(f"[{n}/{len(letters)}] {d.seq} {d.event} -> EVENTS #{await redrive(js, d)}")
                except msgspec.MsgspecError:
                    failed += 1
                    print(f"[{n}/{len(letters)}] {d.seq} is undecodable: drop it with `dlq drop --seq {d.seq}`")
            return 1 if failed else 0
        elif args.action == "drop":
            if not args.seq:
                print("drop needs --seq: which dead letters to discard", file=sys.stderr)
                return 2
            for d in letters:
                await js.delete_msg(DLQ_STREAM, d.seq)
                print(f"dropped {d.seq} {d.event}")
        return 0
    finally:
        await nc.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="just dlq", description=__doc__)
    parser.add_argument("action", choices=["list", "redrive", "drop"])
    parser.add_argument("--projector", help="only this projector's dead letters (order-list, analytics, catalog)")
    parser.add_argument("--seq", type=int, nargs="+", help="only these dead letters (their DLQ sequence)")
    parser.add_argument("--nats-url", default=os.environ.get("NATS_URL", "nats://127.0.0.1:4222"))
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
