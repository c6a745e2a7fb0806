// Interop: Node's `ws` echo server, for sockeye's client.
//
//   node server.mjs [off|takeover|no-takeover]
//
// Listens on a free loopback port, prints it on the first line, echoes every message with its
// type (and answers pings, which ws does itself), and exits when stdin closes.
import { WebSocketServer } from "ws";

const mode = process.argv[2] || "off";
// (ws reads `serverNoContextTakeover: false` as "refuse offers that ask for it", so the
// takeover mode leaves both unset: the client decides.)
const perMessageDeflate = {
  off: false,
  takeover: { threshold: 0 },
  "no-takeover": { threshold: 0, serverNoContextTakeover: true, clientNoContextTakeover: true },
}[mode];
const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate, maxPayload: 64 << 20 });
wss.on("headers", (headers, req) => {
  // Lets the client check what was negotiated.
  headers.push(`X-Offered-Extensions: ${req.headers["sec-websocket-extensions"] || "none"}`);
});
wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on("listening", () => console.log(wss.address().port));
process.stdin.resume();
process.stdin.on("end", () => process.exit(0));
