// sockeye-tokio in headless Chromium (Debian's build, driven by playwright-core): opens the
// page at the URL given, whose script talks to the page's own `/echo` WebSocket endpoint (a
// sockeye-tokio stream behind axum, compression on), and reports what it checked.
//
//   CHROMIUM=/usr/bin/chromium node tests/browser/tokio.test.mjs http://127.0.0.1:PORT/
//
// Every wait is bounded; the whole run is bounded by DEADLINE_MS.

import { chromium } from "playwright-core";

const DEADLINE_MS = 60_000;
const url = process.argv[2];
const deadline = setTimeout(() => {
  console.error("tokio browser test: over its time limit");
  process.exit(1);
}, DEADLINE_MS);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`page: ${m.text()}`));
  await page.goto(url);
  const result = await page.waitForFunction(() => window.result, null, { timeout: 30_000 });
  const value = await result.jsonValue();
  console.log(`tokio browser test: ${value}`);
  if (!String(value).startsWith("ok")) process.exitCode = 1;
} finally {
  await browser.close();
  clearTimeout(deadline);
}
