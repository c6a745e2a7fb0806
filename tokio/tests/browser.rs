//! sockeye-tokio behind axum in headless Chromium: the page's script (served by the same app)
//! sends non-ASCII text, 1 MiB of text and 1 MiB of binary to `/echo`, compares what comes
//! back byte for byte, checks that permessage-deflate was agreed, and closes with 4000 and a
//! reason, which the server must see (`tests/browser/tokio.test.mjs` drives Chromium).
//!
//! Skipped with a message when Node, `playwright-core` (`npm ci` in `tests/browser/`) or
//! Chromium are missing, unless `SOCKEYE_REQUIRE_BROWSER=1` (set by `.ci/run`).

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::response::{Html, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::axum::WebSocketUpgrade;
use sockeye_tokio::{CloseCode, Compression, Config, Ended};
use tokio::sync::mpsc;

const PAGE: &str = r#"<!doctype html><meta charset="utf-8"><title>sockeye-tokio</title>
<script>
(async () => {
  const ws = new WebSocket(`ws://${location.host}/echo`);
  ws.binaryType = "arraybuffer";
  const next = () => new Promise((ok, fail) => {
    ws.onmessage = (e) => ok(e.data);
    ws.onclose = (e) => fail(new Error(`closed ${e.code}`));
  });
  await new Promise((ok) => (ws.onopen = ok));
  const checks = [];
  const text = "hello κόσμε 𝄞";
  ws.send(text);
  if ((await next()) !== text) throw new Error("text differs");
  checks.push("text");
  const big = "sockeye ".repeat(131072);
  ws.send(big);
  if ((await next()) !== big) throw new Error("1 MiB text differs");
  checks.push("1 MiB text");
  const bin = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 255);
  ws.send(bin);
  const back = new Uint8Array(await next());
  if (back.length !== bin.length || back.some((b, i) => b !== bin[i])) throw new Error("1 MiB binary differs");
  checks.push("1 MiB binary");
  if (!ws.extensions.includes("permessage-deflate")) throw new Error(`extensions: ${ws.extensions}`);
  checks.push(ws.extensions);
  const closed = new Promise((ok) => (ws.onclose = (e) => ok(e)));
  ws.close(4000, "page done");
  const e = await closed;
  if (e.code !== 4000 || !e.wasClean) throw new Error(`close ${e.code} clean=${e.wasClean}`);
  checks.push("close 4000");
  window.result = "ok: " + checks.join(", ");
})().catch((e) => (window.result = "failed: " + e.message));
</script>"#;

#[tokio::test]
async fn the_stream_behind_axum_in_headless_chromium() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing: Vec<&str> = [
        (!dir.join("node_modules/playwright-core").exists())
            .then_some("playwright-core (npm ci in tests/browser)"),
        (!PathBuf::from(&chromium).exists()).then_some("chromium (apt-get install chromium)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_BROWSER").is_none(),
            "missing for the browser test: {missing:?}"
        );
        eprintln!("skipped: missing {missing:?}");
        return;
    }
    let (ended_tx, mut ended_rx) = mpsc::unbounded_channel::<Ended>();
    let echo = move |upgrade: WebSocketUpgrade| {
        let ended_tx = ended_tx.clone();
        async move {
            let config = Config::new().compression(Compression::ContextTakeover);
            let response: Response = upgrade.config(config).on_upgrade(move |mut ws| async move {
                while let Some(Ok(msg)) = ws.next().await {
                    if ws.send(msg).await.is_err() {
                        break;
                    }
                }
                if let Some(e) = ws.ended() {
                    let _ = ended_tx.send(e.clone());
                }
            });
            response
        }
    };
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/echo", get(echo));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(dir.join("tokio.test.mjs"))
            .arg(format!("http://{addr}/"))
            .env("CHROMIUM", &chromium)
            .output(),
    )
    .await
    .expect("the browser test took over 90 s")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("tokio browser test: ok"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ended = tokio::time::timeout(Duration::from_secs(10), ended_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ended.code, Some(CloseCode(4000)));
    assert_eq!(ended.reason, "page done");
}
