//! Interop with Node's `ws` (from npm, installed by `.ci/run` with `npm ci` in
//! `tests/interop-node/`): its client against our server, our client against its server, with
//! and without permessage-deflate.
//!
//! Skipped with a message when Node or `ws` is missing, unless `SOCKEYE_REQUIRE_INTEROP=1`
//! (set by `.ci/run`), which makes a missing peer a failure.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command};

mod common;

use sockeye_codec::DataKind;
use sockeye_server::client::{self, DialOptions, Message};
use sockeye_server::{Compression, Config, Echo, Server};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/interop-node")
}

/// Whether `node` and the `ws` package are there; without them the test is skipped (with a
/// message), or fails under `SOCKEYE_REQUIRE_INTEROP`.
fn have_ws() -> bool {
    let found = dir().join("node_modules/ws/package.json").exists()
        && Command::new("node")
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

/// Node `ws` against our server: with compression off (ws offers nothing) and on (ws offers
/// its default, our server accepts in either mode).
#[test]
fn node_ws_client() {
    if !have_ws() {
        return;
    }
    for (mode, offer) in [
        (Compression::Disabled, "off"),
        (Compression::ContextTakeover, "on"),
        (Compression::NoContextTakeover, "on"),
        // ws offers deflate, the server does not do it: both go on without.
        (Compression::Disabled, "declined"),
    ] {
        let config = Config::new("127.0.0.1:0".parse().unwrap())
            .workers(2)
            .subprotocol("chat")
            .compression(mode);
        let server = Server::start(config, |_| Echo).unwrap();
        let stdout = common::stdout_of(
            Command::new("node")
                .arg(dir().join("client.mjs"))
                .arg(format!("ws://{}/", server.local_addr()))
                .arg(offer),
            &format!("{mode:?}/{offer}: the node client"),
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
        server.shutdown();
        server.join().unwrap();
    }
}

/// Starts `server.mjs` with compression `mode`; the process serves until its stdin closes.
fn node_server(mode: &str) -> (Child, String) {
    common::peer_server(Command::new("node").arg(dir().join("server.mjs")).arg(mode))
}

/// Our client against Node `ws`' echo server, in each of its compression modes, with and
/// without offering compression ourselves.
#[test]
fn node_ws_server() {
    if !have_ws() {
        return;
    }
    let text = "{\"id\": 1, \"name\": \"sockeye\", \"note\": \"κόσμε 𝄞\"} ".repeat(30);
    let big = "lorem ipsum dolor sit amet ".repeat(40_000);
    for server_mode in ["off", "takeover", "no-takeover"] {
        let (mut child, url) = node_server(server_mode);
        for ours in [
            Compression::Disabled,
            Compression::ContextTakeover,
            Compression::NoContextTakeover,
        ] {
            let what = format!("server {server_mode}, client {ours:?}");
            let options = DialOptions::new()
                .read_limit(Some(8 << 20))
                .compression(ours);
            let mut conn = client::dial(&url, &options).unwrap_or_else(|e| panic!("{what}: {e}"));
            let ext = conn
                .response_headers()
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|(_, v)| v.clone());
            let agreed = server_mode != "off" && ours != Compression::Disabled;
            assert_eq!(ext.is_some(), agreed, "{what}: {ext:?}");
            if agreed && (server_mode == "no-takeover" || ours == Compression::NoContextTakeover) {
                let ext = ext.unwrap();
                assert!(ext.contains("no_context_takeover"), "{what}: {ext}");
            }

            conn.write_text("hello κόσμε 𝄞").unwrap();
            assert_eq!(conn.read().unwrap(), Message::Text("hello κόσμε 𝄞".into()));
            for i in 0..20 {
                let msg = format!("{text}{i}");
                conn.write_text(&msg).unwrap();
                assert_eq!(conn.read().unwrap(), Message::Text(msg), "{what}");
            }
            let blob: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
            conn.write_binary(&blob).unwrap();
            assert!(conn.read().unwrap().into_bytes() == blob, "{what}");
            conn.write_text(&big).unwrap();
            assert_eq!(conn.read().unwrap(), Message::Text(big.clone()), "{what}");
            // Fragmented text, split inside multi-byte characters (compressed as written
            // when compression was agreed).
            let frag = "fragmented κόσμε 𝄞 ".repeat(500);
            let mut w = conn.next_writer_with(DataKind::Text, 333).unwrap();
            w.write_all(frag.as_bytes()).unwrap();
            w.finish().unwrap();
            assert_eq!(conn.read().unwrap(), Message::Text(frag), "{what}");
            let mut w = conn.next_writer_with(DataKind::Binary, 1000).unwrap();
            w.write_all(&blob[..70_000]).unwrap();
            w.finish().unwrap();
            assert!(
                conn.read().unwrap().into_bytes() == blob[..70_000],
                "{what}"
            );
            common::ping_then_close(&mut conn);
        }
        drop(child.stdin.take());
        assert!(child.wait().unwrap().success());
    }
}
