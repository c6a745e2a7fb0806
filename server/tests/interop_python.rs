//! Our server against an independent client: Python `websockets` (installed by `.ci/run`).
//!
//! Skipped with a message when Python or `websockets` is missing, unless
//! `SOCKEYE_REQUIRE_INTEROP=1` (set by `.ci/run`), which makes a missing client a failure.

use std::process::Command;

use sockeye_server::{Config, Echo, Server};

fn have_websockets() -> bool {
    Command::new("python3")
        .args(["-c", "import websockets.sync.client"])
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn python_websockets_client() {
    if !have_websockets() {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_INTEROP").is_none(),
            "python3 with `websockets` is required (pip install websockets)"
        );
        eprintln!("skipped: python3 -m pip install websockets to run this test");
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
    let out = Command::new("python3")
        .arg(script)
        .arg(format!("ws://{}/", server.local_addr()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("close 1000: ok"), "{stdout}");
    assert!(stdout.contains("subprotocol negotiated: chat"), "{stdout}");
    server.shutdown();
    server.join().unwrap();
}
