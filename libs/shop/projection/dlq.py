"""Dead letters (DESIGN §5.8): list them, re-drive them, drop them. `just dlq --help`.

A poison event goes to `dlq.<projector>` and parks its aggregate: that aggregate's later events
follow it into the DLQ. Re-driving happens in the projector that dead-lettered them (its ops
endpoint `POST /dlq/redrive`): it applies each chosen aggregate's letters again, in order, through
the live projection, unparks the aggregates whose letters all applied and deletes those letters.
Dropping deletes letters for good; their aggregate stays parked."""

import argparse
import asyncio
import contextlib
import sys

import httpx
import msgspec
from litestar import MediaType, Response, post
from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from shop import messaging
from shop.contracts.events import envelope_decoder
from shop.messaging import API_TIMEOUT, DLQ_STREAM
from shop.read_models import ops_headers, ops_nats_url, ops_secret, ops_urls


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    seq: int  # in the DLQ stream
    projector: str
    stream_seq: int  # of the event in EVENTS
    error: str
    data: bytes

    @property
    def aggregate(self) -> str | None:
        try:
            return envelope_decoder.decode(self.data).stream_id
        except msgspec.MsgspecError:
            return None

    @property
    def event(self) -> str:
        try:
            e = envelope_decoder.decode(self.data)
        except msgspec.MsgspecError:
            return "(undecodable)"
        return f"{e.type} {e.stream_type}/{e.stream_id} v{e.version}"


LETTERS_PER_REQUEST = 1000


async def dead_letters(nc: NATS, projector: str | None = None) -> list[DeadLetter]:
    """Every dead letter (of `projector`), in order: read with batched direct gets (ADR-31), a request per
    LETTERS_PER_REQUEST letters; one per letter while the DLQ stream does not allow direct gets."""
    subject = f"dlq.{projector}" if projector else "dlq.>"
    try:
        return await _letters_in_batches(nc, subject)  # (nats-py has no batched direct get)
    except NoRespondersError:  # a DLQ made before it allowed them, until the command-service mends it
        return await _letters_one_by_one(nc.jetstream(), subject)


async def _letters_in_batches(nc: NATS, subject: str) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    while batch := await _batch(nc, subject, found[-1].seq + 1 if found else 1):
        found += batch
    return found


async def _batch(nc: NATS, subject: str, seq: int) -> list[DeadLetter]:
    """Up to LETTERS_PER_REQUEST letters from DLQ sequence `seq` on, in one direct get."""
    inbox, letters = nc.new_inbox(), []
    sub = await nc.subscribe(inbox)
    try:
        body = msgspec.json.encode({"seq": seq, "batch": LETTERS_PER_REQUEST, "next_by_subj": subject})
        await nc.publish(f"$JS.API.DIRECT.GET.{DLQ_STREAM}", body, reply=inbox)
        while True:
            msg = await sub.next_msg(timeout=API_TIMEOUT)
            headers = msg.headers or {}
            match headers.get("Status"):
                case None:
                    letters.append(_letter(int(headers["Nats-Sequence"]), headers["Nats-Subject"], headers, msg.data))
                case "204" | "404":  # the end of the batch; nothing (more) there
                    return letters
                case "503":
                    raise NoRespondersError
                case status:
                    raise RuntimeError(f"DLQ direct get refused: {status} {headers.get('Description', '')}")
    finally:
        await sub.unsubscribe()


async def _letters_one_by_one(js: JetStreamContext, subject: str) -> list[DeadLetter]:
    seq, found = 1, []
    while True:
        try:
            msg = await js.get_msg(DLQ_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append(_letter(msg.seq, msg.subject, msg.headers or {}, msg.data))
        seq = msg.seq + 1


def _letter(seq: int, subject: str, headers: dict[str, str], data: bytes | None) -> DeadLetter:
    return DeadLetter(
        seq=seq,
        projector=subject.removeprefix("dlq."),
        stream_seq=int(headers.get("Shop-Stream-Seq", 0)),
        error=headers.get("Shop-Error", ""),
        data=data or b"",
    )


class RedriveRequest(msgspec.Struct, frozen=True, kw_only=True):
    seqs: list[int] | None = None  # DLQ sequences: their aggregates' letters are re-driven; None: all


class RedriveResult(msgspec.Struct, frozen=True, kw_only=True):
    redriven: list[int]  # DLQ sequences applied (or found applied already) and deleted
    failed: dict[int, str]  # DLQ sequence -> why it was rejected again (it stays, its aggregate parked)


def redrive_handler(name: str, projectors: list, guards: list) -> list:
    """POST /dlq/redrive on a projector's ops port (`guards`: the ops token)."""

    @post("/dlq/redrive", media_type=MediaType.JSON, include_in_schema=False, status_code=200, guards=guards)
    async def redrive(data: RedriveRequest) -> Response[RedriveResult]:
        if not projectors:
            return Response(RedriveResult(redriven=[], failed={}), status_code=503)
        live = projectors[0]
        js = live.nc.jetstream()
        letters = [d for d in await dead_letters(live.nc, name) if live.owns(d.aggregate)]  # the others: their owners'
        if data.seqs is not None:
            chosen = [d for d in letters if d.seq in set(data.seqs)]
            aggregates = {d.aggregate for d in chosen} - {None}
            letters = [d for d in letters if d.aggregate in aggregates or d in chosen]
        rejected = await live.redrive([(d.stream_seq, d.data) for d in letters])
        redriven, failed = [], {}
        for letter in letters:
            if letter.stream_seq in rejected:
                failed[letter.seq] = rejected[letter.stream_seq]
            else:
                await js.delete_msg(DLQ_STREAM, letter.seq)
                redriven.append(letter.seq)
        return Response(RedriveResult(redriven=redriven, failed=failed))

    return [redrive]


async def run(args: argparse.Namespace) -> int:
    nc = await messaging.connect(args.nats_url, "ops", ops_secret("nats-ops"), deadline=10)
    try:
        js = nc.jetstream()
        letters = await dead_letters(nc, args.projector)
        if args.seq:
            letters = [d for d in letters if d.seq in set(args.seq)]
        if args.action == "list":
            for d in letters:
                print(f"{d.seq:>8}  {d.projector:<12} event #{d.stream_seq:<8} {d.event}\n          {d.error}")
            print(f"{len(letters)} dead letter(s)")
        elif args.action == "redrive":
            return await redrive(letters, args)
        elif args.action == "drop":
            if not args.seq:
                print("drop needs --seq: which dead letters to discard", file=sys.stderr)
                return 2
            for d in letters:
                await js.delete_msg(DLQ_STREAM, d.seq)
                print(f"dropped {d.seq} {d.event} (its aggregate stays parked)")
        return 0
    finally:
        await nc.close()


async def redrive(letters: list[DeadLetter], args: argparse.Namespace) -> int:
    """Ask each projector concerned to re-drive its letters (with their aggregates' other letters): every
    process of it that projects re-drives those of its partitions."""
    failed = 0
    for projector in sorted({d.projector for d in letters}):
        seqs = [d.seq for d in letters if d.projector == projector] if args.seq else None
        results = []
        async with httpx.AsyncClient(timeout=120, headers=ops_headers()) as http:
            for url in ops_urls(projector):
                with contextlib.suppress(httpx.TransportError):  # a process that is not running
                    answer = await http.post(f"{url}/dlq/redrive", json={"seqs": seqs})
                    if answer.status_code == 200:
                        results.append(msgspec.json.decode(answer.content, type=RedriveResult))
                    elif answer.status_code != 503:  # 503: it stands by
                        print(f"{projector} at {url} refused: {answer.status_code} {answer.text}", file=sys.stderr)
                        failed += 1
        if not results:
            print(f"{projector}: no process of it projects", file=sys.stderr)
            failed += 1
            continue
        redriven = sum(len(r.redriven) for r in results)
        rejected = {seq: why for r in results for seq, why in r.failed.items()}
        print(f"{projector}: {redriven} re-driven and removed, {len(rejected)} rejected again")
        for seq, why in rejected.items():
            print(f"  {seq}: {why}")
        failed += len(rejected)
    return 1 if failed else 0


def main() -> None:
    parser = argparse.ArgumentParser(prog="just dlq", description=__doc__)
    parser.add_argument("action", choices=["list", "redrive", "drop"])
    parser.add_argument("--projector", help="only this projector's dead letters (order-list, analytics, catalog)")
    parser.add_argument("--seq", type=int, nargs="+", help="only these dead letters (their DLQ sequence)")
    parser.add_argument("--nats-url", default=ops_nats_url(), help="default: NATS_URL, else the run folder's")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
