"""Interop: a Python `websockets` echo server (an independent server) for sockeye's client.

Usage: python3 python_server.py
Prints the port it listens on (127.0.0.1) and serves until stdin closes. Echoes every message;
"close-4001" makes it close with 4001 and a reason; the "chat" subprotocol is supported.
"""
import sys
import threading

from websockets.sync.server import serve


def handler(ws):
    for msg in ws:
        if msg == "close-4001":
            ws.close(code=4001, reason="asked to close")
            return
        ws.send(msg)


with serve(handler, "127.0.0.1", 0, subprotocols=["chat"], max_size=None) as server:
    print(server.socket.getsockname()[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()
