"""A small TCP forwarder for the two-node test, run in the root network namespace: the namespaced "hosts" reach
PostgreSQL and Redis (listening on 127.0.0.1 here only) through it, as real nodes reach RDS and ElastiCache.

    python -m tests.fleet.forwarder LISTEN_HOST LISTEN_PORT=TARGET_HOST:TARGET_PORT [...]

Prints ``FORWARDING`` once every listener is bound; runs until killed.
"""
from __future__ import annotations

import asyncio
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def handler(target_host: str, target_port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(target_host, target_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return handle


async def main(listen_host: str, routes: list[str]) -> None:
    servers = []
    for route in routes:
        port, target = route.split("=", 1)
        host, target_port = target.rsplit(":", 1)
        servers.append(await asyncio.start_server(handler(host, int(target_port)), listen_host, int(port)))
    print("FORWARDING", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
