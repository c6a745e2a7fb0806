//! Interop with Node's `ws` (installed by `.ci/run` with `npm ci` in `tests/interop-node/`):
//! its client against `sockeye_tokio::accept`, our `connect` against its server, with and
//! without permessage-deflate. Skipped with a message when Node or `ws` is missing, unless
//! `SOCKEYE_REQUIRE_INTEROP=1` (set by `.ci/run`).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::{CloseCode, Compression, Config, DialOptions, Message};
use tokio::process::Command;

mod common;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(30);

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop-node")
}

fn have_ws() -> bool {
    let found = dir().join("node_modules/ws/package.json").exists()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_INTEROP").is_none(),
            "node and ws are required: (cd tests/interop-node && npm ci)"
        );
        eprintln!("skipped: run `npm ci` in tests/interop-node to run this test");
    }
    found
}

#[tokio::test]
async fn node_ws_client_against_accept() {
    if !have_ws() {
        return;
    }
    for (mode, offer) in [
        (Compression::Disabled, "off"),
        (Compression::ContextTakeover, "on"),
        (Compression::NoContextTakeover, "on"),
    ] {
        let config = Config::new().protocol("chat").compression(mode);
        let (server, url) = common::echo_server(config).await;
        let out = timeout(
            LIMIT,
            Command::new("node")
                .arg(dir().join("client.mjs"))
                .arg(&url)
                .arg(offer)
                .output(),
        )
        .await
        .unwrap()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{mode:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("close 1000: ok"), "{stdout}");
        assert!(stdout.contains("subprotocol negotiated: chat"), "{stdout}");
        if offer == "on" {
            let want = match mode {
                Compression::NoContextTakeover => "server_no_context_takeover",
                _ => "negotiated permessage-deflate",
            };
            assert!(stdout.contains(want), "{mode:?}: {stdout}");
        }
        server.abort();
    }
}

#[tokio::test]
async fn connect_against_node_ws_server() {
    if !have_ws() {
        return;
    }
    let big = "lorem ipsum dolor sit amet ".repeat(40_000);
    for server_mode in ["off", "takeover", "no-takeover"] {
        let (mut child, url) = common::peer_server(
            Command::new("node")
                .arg(dir().join("server.mjs"))
                .arg(server_mode),
        )
        .await;
        for ours in [
            Compression::Disabled,
            Compression::ContextTakeover,
            Compression::NoContextTakeover,
        ] {
            let what = format!("server {server_mode}, client {ours:?}");
            let options = DialOptions::new()
                .read_limit(Some(8 << 20))
                .compression(ours);
            let mut ws = timeout(LIMIT, sockeye_tokio::connect(&url, &options))
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(
                ws.compressed(),
                server_mode != "off" && ours != Compression::Disabled,
                "{what}"
            );
            for msg in [
                Message::Text("hello κόσμε 𝄞".into()),
                Message::Binary((0..=255u8).collect()),
                Message::Text(big.clone()),
            ] {
                ws.send(msg.clone()).await.unwrap();
                let got = timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
                assert!(got == msg, "{what}: a message came back different");
            }
            ws.ping(b"are you there").await.unwrap();
            timeout(LIMIT, ws.close(CloseCode::NORMAL, "bye"))
                .await
                .unwrap()
                .unwrap();
            let ended = ws.ended().unwrap();
            assert_eq!(
                (ended.code, ended.clean),
                (Some(CloseCode::NORMAL), true),
                "{what}"
            );
        }
        drop(child.stdin.take());
        let _ = timeout(LIMIT, child.wait()).await;
    }
}
