// Interop: Node's `ws` (an independent client) against a sockeye server.
//
//   node client.mjs ws://127.0.0.1:PORT/ [off|on|declined]
//
// `on` offers permessage-deflate (ws' own offer: context takeover, client_max_window_bits)
// and requires the server to accept it; `declined` offers it and requires the server to
// decline; `off` offers nothing. Prints one line per check and
// exits non-zero on the first failure; bounded by a deadline.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import WebSocket from "ws";

const [url, mode = "off"] = process.argv.slice(2);
const compress = mode !== "off";
const deadline = setTimeout(() => {
  console.error("node ws client: over its time limit");
  process.exit(1);
}, 30_000);

function connect(protocols) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, protocols, { perMessageDeflate: compress ? { threshold: 0 } : false, maxPayload: 64 << 20 });
    const inbox = [];
    const waiting = [];
    ws.on("message", (data, isBinary) => {
      const m = { data: Buffer.from(data), isBinary };
      const w = waiting.shift();
      if (w) w(m);
      else inbox.push(m);
    });
    ws.recv = () => new Promise((r) => (inbox.length ? r(inbox.shift()) : waiting.push(r)));
    ws.once("upgrade", (res) => (ws.upgradeHeaders = res.headers));
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
}

const ws = await connect();
const ext = ws.upgradeHeaders["sec-websocket-extensions"];
if (mode === "on") {
  assert.match(ext || "", /^permessage-deflate/, "the server accepted permessage-deflate");
  console.log(`node ws: negotiated ${ext}`);
} else {
  assert.equal(ext, undefined, "no extension agreed");
}

const text = "hello κόσμε 𝄞 — 你好 🦀";
ws.send(text);
let m = await ws.recv();
assert.equal(m.isBinary, false);
assert.equal(m.data.toString("utf8"), text, "text echo");

const blob = randomBytes(1 << 20);
ws.send(blob);
m = await ws.recv();
assert.equal(m.isBinary, true);
assert.ok(m.data.equals(blob), "1 MiB binary echo");

// Compressible text: 256 KiB of repeated JSON, which permessage-deflate shrinks a lot.
const json = JSON.stringify(Array.from({ length: 4000 }, (_, i) => ({ id: i, name: "sockeye", ok: true })));
ws.send(json);
m = await ws.recv();
assert.equal(m.data.toString("utf8"), json, "compressible text echo");

// A fragmented text message: three frames, the middle one splitting a character.
const whole = Buffer.from("frag·mented κόσμε 𝄞");
const cut = whole.indexOf(Buffer.from("𝄞")) + 2;
ws.send(whole.subarray(0, 5), { binary: false, fin: false });
ws.send(whole.subarray(5, cut), { fin: false });
ws.send(whole.subarray(cut), { fin: true });
m = await ws.recv();
assert.equal(m.isBinary, false);
assert.ok(m.data.equals(whole), "fragmented text echo");

// A fragmented binary message.
const parts = [randomBytes(1000), randomBytes(70000), randomBytes(3)];
parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }));
m = await ws.recv();
assert.ok(m.data.equals(Buffer.concat(parts)), "fragmented binary echo");

const pong = new Promise((r) => ws.once("pong", (d) => r(Buffer.from(d))));
ws.ping("node");
assert.equal((await pong).toString(), "node", "pong carries the ping's payload");

const closed = new Promise((r) => ws.once("close", (code, reason) => r({ code, reason: reason.toString() })));
ws.close(1000, "bye");
const c = await closed;
assert.equal(c.code, 1000, "close code echoed");
console.log(`node ws (compression ${mode}): text, 1 MiB binary, 256 KiB JSON, fragmented text and binary, ping, close 1000: ok`);

const sub = await connect(["v1.sockeye", "chat"]);
assert.equal(sub.protocol, "chat", "subprotocol chosen by the server");
sub.close(1000);
console.log(`node ws: subprotocol negotiated: ${sub.protocol}`);
clearTimeout(deadline);
