"""A bare Litestar endpoint for stage 4's ceiling: GET /bare/<query> answers the JSON bytes the
gateway gave for that query, from memory, served by uvicorn configured as the shop's processes are
(`shop.ops.serve`: one process, no access log). Started by `bench.queries` as its own process:
python -m bench.bare --port 8006 --bodies bodies.json"""

import argparse
import asyncio
import json

import uvicorn
from litestar import Litestar, MediaType, Response, get


def create_app(bodies: dict[str, bytes]) -> Litestar:
    @get("/bare/{name:str}", media_type=MediaType.JSON)
    async def bare(name: str) -> Response[bytes]:
        return Response(bodies[name], media_type=MediaType.JSON)

    return Litestar([bare])


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bodies", required=True, help="a JSON file: query name -> the reply body as text")
    args = parser.parse_args()
    with open(args.bodies) as file:
        bodies = {name: body.encode() for name, body in json.load(file).items()}
    config = uvicorn.Config(
        create_app(bodies), host="127.0.0.1", port=args.port, log_config=None, log_level="warning", access_log=False
    )
    asyncio.run(uvicorn.Server(config).serve())
