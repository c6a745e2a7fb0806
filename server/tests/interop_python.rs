//! Our server against an independent client: Python `websockets` (installed by `.ci/run`).
//!
//! Skipped with a message when Python or `websockets` is missing, unless
//! `SOCKEYE_REQUIRE_INTEROP=1` (set by `.ci/run`), which makes a missing client a failure.

use std::io::Write;
use std::process::Command;

mod common;

use sockeye_codec::DataKind;
use sockeye_server::client::{self, DialOptions, Message};
use sockeye_server::{CloseCode, Compression, Config, DeflateConfig, Echo, Server};

/// Whether Python `websockets` is there; without it the test is skipped (with a message), or
/// fails under `SOCKEYE_REQUIRE_INTEROP`.
fn have_websockets() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_INTEROP").is_none(),
            "python3 with `websockets` is required (pip install websockets)"
        );
        eprintln!("skipped: python3 -m pip install websockets to run this test");
    }
    found
}

/// Starts `interop/python_server.py` (Python `websockets`' echo server); returns the process
/// (it serves until its stdin closes) and its URL.
fn python_server() -> (std::process::Child, String) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_server.py"
    );
    common::peer_server(Command::new("python3").arg(script))
}

#[test]
fn python_websockets_client() {
    if !have_websockets() {
        return;
    }
    let config = Config::new("127.0.0.1:0".parse().unwrap())
        .workers(2)
        .subprotocol("chat");
    let server = Server::start(config, |_| Echo).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_client.py"
    );
    let stdout = common::stdout_of(
        Command::new("python3")
            .arg(script)
            .arg(format!("ws://{}/", server.local_addr())),
        "the python client",
    );
    assert!(stdout.contains("close 1000: ok"), "{stdout}");
    assert!(stdout.contains("subprotocol negotiated: chat"), "{stdout}");
    server.shutdown();
    server.join().unwrap();
}

/// Our client against Python `websockets`' server.
#[test]
fn python_websockets_server() {
    if !have_websockets() {
        return;
    }
    let (mut child, url) = python_server();

    let options = DialOptions::new().protocol("chat").read_limit(None);
    let mut conn = client::dial(&url, &options).unwrap();
    assert_eq!(conn.subprotocol(), Some("chat"));
    conn.write_text("hello κόσμε 𝄞").unwrap();
    assert_eq!(conn.read().unwrap(), Message::Text("hello κόσμε 𝄞".into()));
    let blob: Vec<u8> = (0..(1 << 20)).map(|i: u32| (i * 7 % 251) as u8).collect();
    conn.write_binary(&blob).unwrap();
    assert!(conn.read().unwrap().into_bytes() == blob);
    // Fragmented text, split inside multi-byte characters.
    let text = "fragmented κόσμε 𝄞 ".repeat(500);
    let mut w = conn.next_writer_with(DataKind::Text, 333).unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
    assert_eq!(conn.read().unwrap(), Message::Text(text));
    common::ping_then_close(&mut conn);

    // websockets refuses a client without one of its subprotocols: a 400 whose body says why.
    match client::dial(&url, &DialOptions::new()) {
        Err(client::Error::Handshake {
            status: Some(400),
            body,
            ..
        }) => assert!(String::from_utf8_lossy(&body).contains("subprotocol")),
        other => panic!("expected a 400, got {other:?}"),
    }

    // The server closes with its own code and reason.
    let mut conn = client::dial(&url, &options).unwrap();
    conn.write_text("close-4001").unwrap();
    let e = conn.read().unwrap_err();
    assert_eq!(e.close_code(), Some(CloseCode(4001)), "{e}");
    assert!(e.to_string().contains("asked to close"), "{e}");

    drop(child.stdin.take().unwrap().write_all(b""));
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success());
}

/// Python `websockets` compresses by default: every offer it can make, against our server in
/// each compression mode.
#[test]
fn python_websockets_client_with_compression() {
    if !have_websockets() {
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/python_deflate_client.py"
    );
    for (mode, arg) in [
        (Compression::ContextTakeover, "takeover"),
        (Compression::NoContextTakeover, "no-takeover"),
    ] {
        let config = Config::new("127.0.0.1:0".parse().unwrap())
            .workers(2)
            .compression(mode);
        let server = Server::start(config, |_| Echo).unwrap();
        let stdout = common::stdout_of(
            Command::new("python3")
                .arg(script)
                .arg(format!("ws://{}/", server.local_addr()))
                .arg(arg),
            arg,
        );
        assert_eq!(stdout.matches(": ok").count(), 12, "{stdout}");
        server.shutdown();
        server.join().unwrap();
    }
}

/// Our client with compression against Python `websockets`' server (which compresses by
/// default), in every mode and with small windows.
#[test]
fn python_websockets_server_with_compression() {
    if !have_websockets() {
        return;
    }
    let (mut child, url) = python_server();
    let text = "{\"id\": 1, \"name\": \"sockeye\", \"note\": \"κόσμε 𝄞\"} ".repeat(30);
    let big = "lorem ipsum dolor sit amet ".repeat(80_000);
    let configs = [
        DeflateConfig::new(),
        DeflateConfig::new().no_context_takeover(),
        DeflateConfig::new()
            .max_window_bits(9)
            .peer_max_window_bits(9),
        DeflateConfig::new()
            .max_window_bits(12)
            .peer_max_window_bits(10),
        // Every message compressed, empty ones too.
        DeflateConfig::new().threshold(0),
    ];
    for config in configs {
        let options = DialOptions::new()
            .protocol("chat")
            .read_limit(Some(4 << 20))
            .deflate(Some(config));
        let mut conn = client::dial(&url, &options).unwrap();
        let ext = conn
            .response_headers()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        assert!(ext.starts_with("permessage-deflate"), "{config:?}: {ext:?}");
        for i in 0..20 {
            let msg = format!("{text}{i}");
            conn.write_text(&msg).unwrap();
            assert_eq!(conn.read().unwrap(), Message::Text(msg));
        }
        conn.write_text(&big).unwrap();
        assert_eq!(conn.read().unwrap(), Message::Text(big.clone()));
        // A streamed message is compressed as it is written, in fragments of ~1 KiB.
        let mut w = conn.next_writer_with(DataKind::Text, 1024).unwrap();
        for _ in 0..50 {
            w.write_all(text.as_bytes()).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(conn.read().unwrap(), Message::Text(text.repeat(50)));
        // Flushed, then finished with nothing more: the last fragment holds no new input.
        let mut w = conn.next_writer_with(DataKind::Text, 1024).unwrap();
        w.write_all(text.as_bytes()).unwrap();
        w.flush().unwrap();
        w.finish().unwrap();
        assert_eq!(conn.read().unwrap(), Message::Text(text.clone()));
        // Empty messages one after another (compressed under `threshold(0)`).
        for _ in 0..3 {
            conn.write_binary(b"").unwrap();
            assert_eq!(conn.read().unwrap(), Message::Binary(Vec::new()));
        }
        conn.write_text(&text).unwrap();
        assert_eq!(conn.read().unwrap(), Message::Text(text.clone()));
        conn.close(CloseCode::NORMAL, "bye").unwrap();
    }
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
}
