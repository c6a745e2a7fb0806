"""Interop: Python `websockets` (an independent client) against a sockeye server.

Usage: python3 python_client.py ws://127.0.0.1:PORT/
Prints one line per check; exits non-zero on the first failure.
"""
import sys

from websockets.sync.client import connect
from websockets.exceptions import ConnectionClosedOK

url = sys.argv[1]

# websockets offers permessage-deflate by default; the server declines and both go on without.
with connect(url, max_size=None) as ws:
    assert ws.response.status_code == 101
    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    ws.send("hello κόσμε 𝄞")
    assert ws.recv() == "hello κόσμε 𝄞", "text echo"
    blob = bytes(range(256)) * 4096  # 1 MiB
    ws.send(blob)
    assert ws.recv() == blob, "binary echo"
    ws.send(["frag", "mented ", "κόσμε"])  # a fragmented text message
    assert ws.recv() == "fragmented κόσμε", "fragmented echo"
    pong = ws.ping(b"py")
    assert pong.wait(5), "pong"
    ws.close(code=1000, reason="bye")
    assert ws.close_code == 1000, ws.close_code
    print("python websockets: text, 1 MiB binary, fragmented, ping, close 1000: ok")

with connect(url, subprotocols=["v1.sockeye", "chat"]) as ws:
    assert ws.subprotocol == "chat", ws.subprotocol
    print("python websockets: subprotocol negotiated:", ws.subprotocol)
