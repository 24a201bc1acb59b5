"""Faults for tests: cut a store off the network. Real servers, real connections."""

import asyncio
import threading

from tests.conftest import free_port


class Proxy:
    """A TCP proxy on loopback, in a thread of its own (so that blocking test code does not stall it):
    `cut()` resets every connection and refuses new ones, as a store that went away; `restore()` lets
    them through again on the same port."""

    def __init__(self, target_port: int) -> None:
        self.port, self._target = free_port(), target_port
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.Transport] = set()
        threading.Thread(target=self._loop.run_forever, daemon=True, name=f"proxy-{target_port}").start()
        self.restore()

    def url(self, scheme: str, path: str = "") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def restore(self) -> None:
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(5)

    def cut(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cut(), self._loop).result(5)

    def close(self) -> None:
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._pipe, "127.0.0.1", self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            transport.abort()
        self._transports.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._target)
        except OSError:
            writer.transport.abort()
            return
        pair = {writer.transport, upstream_writer.transport}
        self._transports |= pair

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))
        self._transports -= pair
