"""Interop: Python `websockets` with permessage-deflate against a sockeye server with compression.

Usage: python3 python_deflate_client.py ws://127.0.0.1:PORT/ takeover|no-takeover
Prints one line per offer tried; exits non-zero on the first failure.
"""
import sys

from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.sync.client import connect

url, mode = sys.argv[1], sys.argv[2]

TEXT = '{"id": 12345, "name": "sockeye", "tags": ["fast", "correct"], "note": "κόσμε 𝄞"} ' * 20
BIG = "lorem ipsum dolor sit amet, consectetur adipiscing elit " * 40000  # 2.2 MB, compressible
BLOB = bytes((i * 7) % 251 for i in range(200_000))


def exercise(ws, label):
    ext = ws.response.headers.get("Sec-WebSocket-Extensions")
    assert ext and ext.startswith("permessage-deflate"), f"{label}: not negotiated: {ext!r}"
    if mode == "no-takeover":
        assert "server_no_context_takeover" in ext, ext
        assert "client_no_context_takeover" in ext, ext
    for i in range(30):  # takeover: later messages refer back to earlier ones
        msg = TEXT + str(i)
        ws.send(msg)
        assert ws.recv() == msg, f"{label}: text {i}"
    ws.send(BLOB)
    assert ws.recv() == BLOB, f"{label}: binary"
    ws.send(BIG)
    assert ws.recv() == BIG, f"{label}: 2 MB text"
    ws.send(["frag", "mented ", "κόσμε " * 300])  # one compressed message in three frames
    assert ws.recv() == "fragmented " + "κόσμε " * 300, f"{label}: fragmented"
    for small in ["", "x", "tiny message"]:
        ws.send(small)
        assert ws.recv() == small, f"{label}: small {small!r}"
    ws.close(code=1000)
    print(f"{label}: {ext}: ok")


with connect(url, max_size=None) as ws:
    exercise(ws, "default offer")

for server_bits in (9, 11, 15):
    for client_bits in (9, 12, 15):
        factory = ClientPerMessageDeflateFactory(
            server_max_window_bits=server_bits, client_max_window_bits=client_bits
        )
        with connect(url, extensions=[factory], compression=None, max_size=None) as ws:
            ext = ws.response.headers["Sec-WebSocket-Extensions"]
            assert f"server_max_window_bits={server_bits}" in ext, ext
            exercise(ws, f"windows {server_bits}/{client_bits}")

factory = ClientPerMessageDeflateFactory(
    server_no_context_takeover=True, client_no_context_takeover=True
)
with connect(url, extensions=[factory], compression=None, max_size=None) as ws:
    exercise(ws, "no context takeover asked by the client")

with connect(url, compression=None, max_size=None) as ws:
    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    ws.send(TEXT)
    assert ws.recv() == TEXT
    print("no offer: uncompressed: ok")
