"""A Python `websockets` (asyncio) echo server, a peer for scripts/bench-deflate.sh.

Usage: python3 peer_python_echo.py PORT deflate|off
Listens on 127.0.0.1:PORT until killed; echoes every message. With `deflate`, websockets'
default permessage-deflate (context takeover, its own window and memory settings) is on.
"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def main(port, compression):
    async with serve(echo, "127.0.0.1", port, compression=compression, max_size=None):
        await asyncio.get_running_loop().create_future()


port = int(sys.argv[1])
asyncio.run(main(port, "deflate" if sys.argv[2] == "deflate" else None))
