// End-to-end test of `sockeye serve`'s demo page in headless Chromium (Debian's own build,
// driven by playwright-core; no browser download).
//
//   SOCKEYE_BIN=target/debug/sockeye node tests/browser/demo.test.mjs
//
// Starts the server on a free loopback port, opens the page twice, and checks the chat room
// (both pages get every message, each sender's in order), the echo console (non-ASCII text,
// 1 MiB of text, 1 MiB of binary, compared byte for byte), and that stopping the server shows
// close code 1001 on the page. Screenshots go to $SCREENSHOT_DIR (default target/browser).
// Every wait is bounded; the whole run is bounded by DEADLINE_MS.

import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const DEADLINE_MS = 90_000;
const WAIT_MS = 20_000;
const BIN = process.env.SOCKEYE_BIN || "target/debug/sockeye";
const SHOTS = process.env.SCREENSHOT_DIR || "target/browser";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const t0 = Date.now();
const step = (what) => console.log(`browser test: ${((Date.now() - t0) / 1000).toFixed(1)} s ${what}`);

const deadline = setTimeout(() => {
  console.error("browser test: over its time limit");
  process.exit(1);
}, DEADLINE_MS);

/// Starts `sockeye serve` on port 0 and resolves with its address, read from its log.
function startServer(extra = []) {
  const child = spawn(BIN, ["serve", "--bind", "127.0.0.1:0", "--workers", "2", ...extra], {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, RUST_LOG: "info", NO_COLOR: "1" },
  });
  let log = "";
  const addr = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start:\n" + log)), WAIT_MS);
    child.stderr.on("data", (d) => {
      log += d.toString();
      // tracing's plain format: url=ws://127.0.0.1:PORT (ANSI codes stripped first)
      const m = log.replace(/\x1b\[[0-9;]*m/g, "").match(/url=ws:\/\/(127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`server exited with ${code}:\n${log}`)));
  });
  const exited = new Promise((resolve) => child.on("exit", (code, signal) => resolve({ code, signal })));
  return { child, addr, exited, log: () => log };
}

async function waitFor(page, fn, arg, what) {
  try {
    await page.waitForFunction(fn, arg, { timeout: WAIT_MS, polling: 20 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message}`);
  }
}

const server = startServer();
const addr = await server.addr;
const url = `http://${addr}/`;
step(`server at ${url}`);

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
let failed = false;
try {
  const errors = [];
  const open = async (name) => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 760 } });
    const page = await context.newPage();
    page.on("pageerror", (e) => errors.push(`${name}: ${e.message}`));
    page.on("console", (m) => m.type() === "error" && errors.push(`${name} console: ${m.text()}`));
    const resp = await page.goto(url);
    assert.equal(resp.status(), 200, "GET / answers the page");
    await page.fill("#chat-name", name);
    await waitFor(page, () => document.querySelector("#chat-state").dataset.state === "open" &&
      document.querySelector("#echo-state").dataset.state === "open", null, `${name}: both sockets open`);
    return page;
  };
  step("chromium started");
  const ana = await open("ana");
  const ben = await open("ben");

  step("two pages open");
  // Chat: both pages send through the form; both pages receive all six, each sender's in order.
  const say = async (page, text) => {
    await page.fill("#chat-input", text);
    await page.click("#chat-send");
  };
  for (let i = 1; i <= 3; i++) {
    await say(ana, `ana says ${i}`);
    await say(ben, `ben says ${i} — ünïcødé 🦀`);
  }
  for (const [name, page] of [["ana", ana], ["ben", ben]]) {
    await waitFor(page, () => window.sockeyeDemo.chat.length >= 6, null, `${name}: six chat messages`);
    const got = await page.evaluate(() => window.sockeyeDemo.chat);
    assert.equal(got.length, 6, `${name} got exactly six chat messages`);
    for (const from of ["ana", "ben"]) {
      const texts = got.filter((m) => m.from === from).map((m) => m.text);
      const want = [1, 2, 3].map((i) => (from === "ana" ? `ana says ${i}` : `ben says ${i} — ünïcødé 🦀`));
      assert.deepEqual(texts, want, `${name} got ${from}'s messages in order`);
    }
    const shown = await page.locator("#chat-log li:not(.sys)").count();
    assert.equal(shown, 6, `${name} shows six messages`);
  }

  step("chat checked");
  // Echo: non-ASCII text through the form.
  const echoed = (page) => page.evaluate(() => window.sockeyeDemo.echoes.length);
  const text = "héllo wörld — 你好, мир 🦀🚀 \u{10FFFF}";
  await ana.fill("#echo-input", text);
  await ana.click("#echo-send");
  await waitFor(ana, () => window.sockeyeDemo.echoes.length >= 1, null, "the text echo");
  let last = await ana.evaluate(() => window.sockeyeDemo.echoes.at(-1));
  assert.equal(last.text, text, "non-ASCII text comes back unchanged");
  assert.equal(last.same, true);

  // 1 MiB of text (one- to four-byte characters in a random order), from the page's button.
  const before = await echoed(ana);
  await ana.click("#echo-big-text");
  await waitFor(ana, (n) => window.sockeyeDemo.echoes.length > n, before, "the 1 MiB text echo");
  last = await ana.evaluate(() => {
    const e = window.sockeyeDemo.echoes.at(-1);
    return { same: e.same, bytes: e.text && new TextEncoder().encode(e.text).length };
  });
  assert.ok(last.bytes >= 1 << 20 && last.bytes < (1 << 20) + 4, `1 MiB text came back (${last.bytes} B)`);
  assert.equal(last.same, true, "1 MiB text: the same characters came back");
  step("1 MiB text compared");
  // 1 MiB of random binary, from the page's button.
  const before2 = await echoed(ana);
  await ana.click("#echo-big");
  await waitFor(ana, (n) => window.sockeyeDemo.echoes.length > n, before2, "the 1 MiB binary echo");
  last = await ana.evaluate(() => window.sockeyeDemo.echoes.at(-1));
  assert.equal(last.bytes, 1 << 20, "1 MiB binary: same length back");
  assert.equal(last.same, true, "1 MiB binary: same bytes back");
  const rtt = await ana.textContent("#echo-rtt");
  assert.match(rtt, /ms$/, "the page shows a round-trip time");

  step("echo checked");
  mkdirSync(SHOTS, { recursive: true });
  await ana.screenshot({ path: join(SHOTS, "demo.png"), fullPage: true });

  // Stopping the server closes every connection with 1001, and the page says so.
  step("screenshot saved");
  server.child.kill("SIGTERM");
  for (const [name, page] of [["ana", ana], ["ben", ben]]) {
    await waitFor(page, () => window.sockeyeDemo.closes.chat && window.sockeyeDemo.closes.echo,
      null, `${name}: both sockets closed`);
    const closes = await page.evaluate(() => window.sockeyeDemo.closes);
    assert.equal(closes.chat.code, 1001, `${name}: chat closed with 1001`);
    assert.equal(closes.echo.code, 1001, `${name}: echo closed with 1001`);
    assert.match(await page.textContent("#chat-close"), /1001 \(going away\)/);
    assert.match(await page.textContent("#chat-state"), /closed 1001/);
  }
  await ana.screenshot({ path: join(SHOTS, "demo-closed.png"), fullPage: true });
  step("close codes checked");
  const exit = await server.exited;
  assert.equal(exit.code, 0, "the server exits cleanly after SIGTERM");
  assert.deepEqual(errors, [], "no script errors on the pages");
  step(`ok (screenshots in ${SHOTS})`);
} catch (e) {
  failed = true;
  console.error(e);
  console.error("server log:\n" + server.log());
} finally {
  await browser.close();
  server.child.kill("SIGKILL");
  clearTimeout(deadline);
}
process.exit(failed ? 1 : 0);
