//! Interop with Python `websockets` (installed by `.ci/run`): its clients against
//! `sockeye_tokio::accept` (plain and with every compression offer it makes), our `connect`
//! against its server. The scripts are the server crate's (`server/tests/interop/`). Skipped
//! with a message when Python or `websockets` is missing, unless `SOCKEYE_REQUIRE_INTEROP=1`.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::{CloseCode, Compression, Config, DialOptions, Message};
use tokio::process::Command;

mod common;
use tokio::time::timeout;

const LIMIT: Duration = Duration::from_secs(60);

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../server/tests/interop")
        .join(name)
}

fn have_websockets() -> bool {
    let found = std::process::Command::new("python3")
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

async fn run(cmd: &mut Command) -> String {
    let out = timeout(LIMIT, cmd.output()).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn python_websockets_clients_against_accept() {
    if !have_websockets() {
        return;
    }
    let (task, url) = common::echo_server(Config::new().protocol("chat")).await;
    let stdout = run(Command::new("python3")
        .arg(script("python_client.py"))
        .arg(&url))
    .await;
    assert!(stdout.contains("close 1000: ok"), "{stdout}");
    assert!(stdout.contains("subprotocol negotiated: chat"), "{stdout}");
    task.abort();
    for (mode, arg) in [
        (Compression::ContextTakeover, "takeover"),
        (Compression::NoContextTakeover, "no-takeover"),
    ] {
        let (task, url) = common::echo_server(Config::new().compression(mode)).await;
        let stdout = run(Command::new("python3")
            .arg(script("python_deflate_client.py"))
            .arg(&url)
            .arg(arg))
        .await;
        assert_eq!(stdout.matches(": ok").count(), 12, "{arg}: {stdout}");
        task.abort();
    }
}

#[tokio::test]
async fn connect_against_python_websockets_server() {
    if !have_websockets() {
        return;
    }
    let (mut child, url) =
        common::peer_server(Command::new("python3").arg(script("python_server.py"))).await;
    for ours in [Compression::Disabled, Compression::ContextTakeover] {
        // The server insists on its subprotocol.
        let options = DialOptions::new()
            .protocol("chat")
            .read_limit(Some(8 << 20))
            .compression(ours);
        let mut ws = timeout(LIMIT, sockeye_tokio::connect(&url, &options))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ws.protocol(), Some("chat"));
        assert_eq!(ws.compressed(), ours != Compression::Disabled);
        for msg in [
            Message::Text("hello κόσμε 𝄞".into()),
            Message::Binary(vec![7; 1 << 20]),
        ] {
            ws.send(msg.clone()).await.unwrap();
            let got = timeout(LIMIT, ws.next()).await.unwrap().unwrap().unwrap();
            assert!(got == msg, "{ours:?}: a message came back different");
        }
        timeout(LIMIT, ws.close(CloseCode::NORMAL, "bye"))
            .await
            .unwrap()
            .unwrap();
        assert!(ws.ended().unwrap().clean);
    }
    drop(child.stdin.take());
    let _ = timeout(LIMIT, child.wait()).await;
}
