"""Live-log readers for a benchmark: `python -m benchmarks.log_readers PORT COUNT READY OUT`.

Holds COUNT `GET /log` Server-Sent Events streams open on the receiver at 127.0.0.1:PORT (its token
from `IMAGEDOCK_API_TOKEN`), reading and discarding what comes; a stream the receiver ends or
refuses is opened again a second later. Writes READY once all COUNT are open, and on SIGTERM
writes OUT: JSON with the bytes read and the streams ended and refused. Plain sockets, so the
readers cost far less CPU than the server that writes to them.
"""

import asyncio
import json
import os
import signal
import sys
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Tally:
    opened: int = 0
    ended: int = 0  # streams the receiver closed (a reader that fell behind is dropped)
    refused: int = 0  # answers other than 200
    bytes: int = 0


async def hold(port: int, request: bytes, tally: Tally, first: asyncio.Event) -> None:
    while True:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            tally.refused += 1
            await asyncio.sleep(1)
            continue
        writer.write(request)
        status = await reader.readline()
        if b" 200 " not in status:
            tally.refused += 1
            writer.close()
            await asyncio.sleep(1)
            continue
        tally.opened += 1
        first.set()
        while chunk := await reader.read(65536):
            tally.bytes += len(chunk)
        tally.ended += 1
        writer.close()
        await asyncio.sleep(1)


async def main(port: int, count: int, ready: Path, out: Path) -> None:
    token = os.environ["IMAGEDOCK_API_TOKEN"]
    request = (
        f"GET /log HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    tally = Tally()
    firsts = [asyncio.Event() for _ in range(count)]
    readers = [asyncio.create_task(hold(port, request, tally, first)) for first in firsts]
    await asyncio.gather(*(first.wait() for first in firsts))
    ready.write_text(str(count))  # noqa: ASYNC240 - one small file, once
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    for task in readers:
        task.cancel()
    out.write_text(json.dumps(asdict(tally)))  # noqa: ASYNC240 - one small file, at the end


if __name__ == "__main__":
    port, count, ready, out = sys.argv[1:5]
    asyncio.run(main(int(port), int(count), Path(ready), Path(out)))
