//! Helpers shared by the tests that drive other programs (peers, the browser).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Runs `cmd` to completion and returns its standard output; fails the test, with both
/// outputs and `what`, if it does not exit successfully.
#[allow(dead_code)] // not every test file that includes this module runs another program
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// Starts a peer server that prints its port on its first line and serves until its stdin
/// closes; the process and its `ws://` URL.
#[allow(dead_code)] // not every test file that includes this module starts a server
pub fn peer_server(cmd: &mut Command) -> (Child, String) {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut port = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut port)
        .unwrap();
    assert!(!port.trim().is_empty(), "{cmd:?} printed no port");
    (child, format!("ws://127.0.0.1:{}/", port.trim()))
}

/// Pings from another thread while this one reads (a message written after the ping must
/// come back after the pong was seen), then closes normally.
#[allow(dead_code)] // not every test file that includes this module has a client
pub fn ping_then_close(conn: &mut sockeye_server::client::Conn) {
    use sockeye_server::client::Message;
    let writer = conn.writer().clone();
    let pinger = std::thread::spawn(move || {
        let rtt = writer.ping(std::time::Duration::from_secs(5));
        writer.write_text("after ping").unwrap();
        rtt
    });
    assert_eq!(conn.read().unwrap(), Message::Text("after ping".into()));
    pinger.join().unwrap().unwrap();
    conn.close(sockeye_server::CloseCode::NORMAL, "bye")
        .unwrap();
}

/// Plays a server's part of the opening handshake by hand on an accepted socket: reads the
/// request head and answers 101 with its accept key; nothing else, so a test can then read
/// or not read whatever the client sends.
#[allow(dead_code)] // not every test file that includes this module plays a server
pub fn answer_upgrade(s: &mut std::net::TcpStream) {
    use std::io::{Read, Write};
    let mut request = Vec::new();
    let mut b = [0u8];
    while !request.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        request.push(b[0]);
    }
    let request = String::from_utf8(request).unwrap();
    let key = request
        .lines()
        .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
        .expect("a Sec-WebSocket-Key");
    let accept = sockeye_codec::handshake::accept_key(key.trim().as_bytes());
    write!(
        s,
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        std::str::from_utf8(&accept).unwrap()
    )
    .unwrap();
}
