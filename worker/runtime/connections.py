"""redis-py's connections, with each command's write bounded without losing a cancellation.

With a socket timeout set, redis-py writes each command under `asyncio.wait_for`, which on
Python 3.11 returns instead of raising when a cancellation lands in the instant the write
completes (3.12 rewrote it). The task then runs on as if never cancelled: a stopping worker went
on landing, or never left its loop. Here the same bound is kept by `asyncio.timeout`, which
hands a cancellation on.
"""

import asyncio
from typing import Any

from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.exceptions import TimeoutError as RedisTimeoutError


class BoundedWrite(AbstractConnection):
    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        timeout = self.socket_timeout
        self.socket_timeout = None  # redis-py then writes with no wait_for of its own
        try:
            async with asyncio.timeout(timeout or None):  # 0, as None, is no bound
                await super().send_packed_command(command, check_health)
        except TimeoutError:
            await self.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        finally:
            self.socket_timeout = timeout


class TCPConnection(BoundedWrite, Connection):
    pass


class TLSConnection(BoundedWrite, SSLConnection):
    pass


class UnixConnection(BoundedWrite, UnixDomainSocketConnection):
    pass


# The class redis-py picks for a URL's scheme, and its counterpart here.
BOUNDED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: TCPConnection,
    SSLConnection: TLSConnection,
    UnixDomainSocketConnection: UnixConnection,
}
