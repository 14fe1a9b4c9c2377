"""A TCP proxy between imagedock and a server, to cut the line or drop chosen exchanges."""

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

import httpx


class Proxy:
    """Forwards loopback TCP to `target`. `cut()` drops every connection and refuses new ones
    until `restore()`, on the same port; `refuse` drops a connection, unforwarded, when a
    request matches it; `lose_answers` forwards that many matching requests and drops the
    connection instead of passing the answer back."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.refuse: Callable[[bytes], bool] | None = None
        self.lose: Callable[[bytes], bool] | None = None
        self.lose_answers = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def open(self) -> bool:
        return self._server is not None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None

    async def restore(self) -> None:
        await self.start()

    async def close(self) -> None:
        if self._server is not None:
            await self.cut()  # which ends every connection's pumps
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=10)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            upstream_reader, upstream = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(upstream)
        doomed = asyncio.Event()  # the answer to what was just sent is to be lost

        def both_closed() -> None:
            writer.close()
            upstream.close()

        async def requests() -> None:
            with suppress(OSError):
                while data := await reader.read(65536):
                    if self.refuse is not None and self.refuse(data):
                        break
                    if self.lose is not None and self.lose_answers > 0 and self.lose(data):
                        self.lose_answers -= 1
                        doomed.set()
                    upstream.write(data)
                    await upstream.drain()
            both_closed()

        async def answers() -> None:
            with suppress(OSError):
                while data := await upstream_reader.read(65536):
                    if doomed.is_set():
                        break
                    writer.write(data)
                    await writer.drain()
            both_closed()

        try:
            await asyncio.gather(requests(), answers())
        finally:
            self._writers.discard(writer)
            self._writers.discard(upstream)
            self._tasks.discard(task)


@asynccontextmanager
async def proxy_to(target_port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@asynccontextmanager
async def healed(proxy: Proxy) -> AsyncIterator[None]:
    """Whatever happens in the block, the line is whole again after it."""
    try:
        yield
    finally:
        proxy.refuse = proxy.lose = None
        if not proxy.open:
            await proxy.restore()


def port_of(url: str) -> int:
    port = httpx.URL(url).port
    assert port is not None
    return port
