//! The `sockeye` binary: serves, and on SIGTERM closes connections with 1001 and exits 0.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

#[test]
fn serve_then_sigterm_closes_with_1001_and_exits_0() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["serve", "--port", &port.to_string(), "--workers", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = upgraded(port);
    signal(&child, "-TERM");
    let mut head = [0u8; 4];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x88, "a close frame");
    assert_eq!(u16::from_be_bytes([head[2], head[3]]), 1001);
    // Answer the close, as a client does; the server then exits.
    s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9]).unwrap();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    assert!(log.contains("shutting down"), "{log}");
}

fn run_connect(args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The child may exit without reading its input (a refused connection): ignore EPIPE.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

#[test]
fn connect_prints_echoes_and_exits_with_the_close() {
    let config = sockeye_server::Config::new("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .subprotocol("chat");
    let server = sockeye_server::Server::start(config, |_| sockeye_server::Echo).unwrap();
    let url = format!("ws://{}/", server.local_addr());

    let out = run_connect(&[&url], "hi\nκόσμε 𝄞\r\n\n".as_bytes());
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "hi\nκόσμε 𝄞\n\n");

    let out = run_connect(&["-v", "--subprotocol", "chat", &url], b"x\n");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("subprotocol: chat"), "{stderr}");
    assert!(
        stderr.contains("closed with 1000 (normal closure)"),
        "{stderr}"
    );

    // --binary is byte-exact: newlines, CRs and every other byte come back as sent, in
    // messages of at most --chunk-size.
    let mut noise = Vec::with_capacity(20_000);
    let mut x = 0x9e37_79b9_u32;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    noise.extend_from_slice(b"\r\n\n\x00\xff");
    let out = run_connect(&["--binary", "--chunk-size", "4KiB", &url], &noise);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stdout.len(), noise.len());
    assert!(out.stdout == noise, "the bytes came back changed");
    let out = run_connect(&["--binary", "--chunk-size", "0", &url], b"x");
    assert_eq!(out.status.code(), Some(2));

    // A header that breaks the request is refused before anything is sent.
    let out = run_connect(&["-H", "X-Bad: a\rb", &url], b"");
    assert_eq!(out.status.code(), Some(1));
    server.shutdown();
    server.join().unwrap();

    // Nothing listening any more: a clear error and status 1.
    let out = run_connect(&[&url], b"hi\n");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("refused"), "{stderr}");
}

#[test]
fn connect_lingers_or_stays_to_print_a_rooms_traffic() {
    let config = sockeye_server::Config::new("127.0.0.1:0".parse().unwrap()).workers(1);
    let server = sockeye_server::Server::start(config, |_| sockeye_server::Broadcast).unwrap();
    let url = format!("ws://{}/chat/room", server.local_addr());
    // Someone else in the room speaks once `sockeye connect` is in it too.
    let speak = || {
        let mut other =
            sockeye_server::client::dial(&url, &sockeye_server::client::DialOptions::new())
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.metrics().contains("\nsockeye_connections 2\n") {
            assert!(Instant::now() < deadline, "sockeye connect did not join");
            std::thread::sleep(Duration::from_millis(10));
        }
        other.write_text("from the room").unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let _ = other.close(sockeye_server::CloseCode::NORMAL, "");
    };
    let out = std::thread::scope(|s| {
        s.spawn(speak);
        run_connect(&["--linger", "3s", &url], b"hi\n")
    });
    assert!(out.status.success(), "{out:?}");
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("hi\n"), "{printed}");
    assert!(printed.contains("from the room\n"), "{printed}");

    // --no-close: the end of stdin does not end the connection; the server's close does.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["connect", "--no-close", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    speak();
    assert!(child.try_wait().unwrap().is_none(), "still connected");
    server.shutdown();
    server.join().unwrap();
    let out = child.wait_with_output().unwrap();
    // The server's shutdown close (1001, going away) is a normal end: status 0.
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "from the room\n");
}

#[test]
fn connect_pings_at_the_interval_asked_for() {
    // A hand-written server that upgrades and then records the frames it gets.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["connect", "--no-close", "--ping-interval", "200ms", &url])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (mut s, _) = listener.accept().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    common::answer_upgrade(&mut s);
    // Three masked pings (opcode 9, "sockeye") within a second and a half.
    let start = Instant::now();
    for _ in 0..3 {
        let mut head = [0u8; 6];
        s.read_exact(&mut head).unwrap();
        assert_eq!(head[0], 0x89, "a ping");
        assert_eq!(head[1], 0x80 | 7, "masked, 7 bytes");
        let mut payload = [0u8; 7];
        s.read_exact(&mut payload).unwrap();
        for (i, byte) in payload.iter_mut().enumerate() {
            *byte ^= head[2 + i % 4];
        }
        assert_eq!(&payload, b"sockeye");
    }
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_millis(1500), "{took:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Starts `sockeye serve` with `args` on a free port; the process and its port.
fn serve(args: &[&str]) -> (std::process::Child, u16) {
    spawn_serve(args, Stdio::null())
}

/// As `serve`, with stderr piped (read it with `wait_with_output`) and the log settings of
/// the environment (`RUST_LOG`, `NO_COLOR`) removed.
fn serve_logged(args: &[&str]) -> (std::process::Child, u16) {
    spawn_serve(args, Stdio::piped())
}

fn spawn_serve(args: &[&str], stderr: Stdio) -> (std::process::Child, u16) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["serve", "--port", &port.to_string(), "--workers", "1"])
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, port)
}

fn get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn serve_has_the_demo_page_and_metrics_unless_told_not_to() {
    let (mut on, port) = serve(&[]);
    let page = get(port, "/");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html; charset=utf-8\r\n"));
    assert!(page.contains("<title>sockeye demo</title>"));
    assert!(get(port, "/metrics").contains("\nsockeye_connections 0\n"));
    assert!(get(port, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    on.kill().unwrap();
    on.wait().unwrap();

    let (mut off, port) = serve(&["--no-demo", "--no-metrics"]);
    for path in ["/", "/metrics", "/healthz"] {
        let resp = get(port, path);
        assert!(resp.starts_with("HTTP/1.1 426 "), "{path}: {resp}");
    }
    off.kill().unwrap();
    off.wait().unwrap();
}

/// An upgraded connection to `port` (the 101 read); it never answers a close.
fn upgraded(port: u16) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut resp = Vec::new();
    let mut b = [0u8];
    while !resp.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).unwrap();
        resp.push(b[0]);
    }
    assert!(resp.starts_with(b"HTTP/1.1 101 "));
    s
}

fn signal(child: &std::process::Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn shutdown_waits_the_close_timeout_and_a_second_signal_exits_at_once() {
    // A client that never answers the close holds a shutdown for --close-timeout.
    let (mut child, port) = serve(&["--close-timeout", "1s"]);
    let _silent = upgraded(port);
    let start = Instant::now();
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(900), "exited after {took:?}");
    assert!(took < Duration::from_secs(4), "exited after {took:?}");

    // With a long close timeout, the second SIGINT ends the wait at once.
    let (mut child, port) = serve(&["--close-timeout", "60s"]);
    let _silent = upgraded(port);
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "still draining");
    let start = Instant::now();
    signal(&child, "-INT");
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(130), "{exit:?}");
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn logs_have_no_colour_off_a_terminal_and_take_a_format_and_a_level() {
    let run = |args: &[&str]| -> String {
        let (child, port) = serve_logged(args);
        let _ = get(port, "/healthz");
        signal(&child, "-TERM");
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stderr).unwrap()
    };
    let text = run(&[]);
    assert!(text.contains("sockeye serving"), "{text}");
    assert!(
        !text.contains('\x1b'),
        "colour codes in a piped log: {text:?}"
    );

    let json = run(&["--log-format", "json"]);
    let lines: Vec<&str> = json.lines().collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"message\":\"sockeye serving\"")),
        "{json}"
    );

    let quiet = run(&["--log-level", "warn"]);
    assert!(!quiet.contains("sockeye serving"), "{quiet}");

    let out = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["serve", "--port", "0", "--log-level", "info,[="])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--log-level"));
}

#[test]
fn serve_checks_its_values_at_start() {
    for (args, says) in [
        (&["--workers", "0"][..], "0 is not in 1.."),
        (&["--max-message", "0"][..], "max message 0"),
        (&["--max-rooms", "0"][..], "max rooms 0"),
        (&["--subprotocol", "a,b"][..], "is not an HTTP token"),
        (
            &["--allow-origin", "https://example.com/"][..],
            "can never match",
        ),
        (&["--bind", "127.0.0.1"][..], "has no port"),
        (&["--bind", ":70000"][..], "is not a port number"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sockeye"))
            .args(["serve", "--port", "0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // --bind takes :PORT (the default host) and names as well as IP:PORT.
    for form in [":{port}", "localhost:{port}"] {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let bind = form.replace("{port}", &port.to_string());
        let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
            .args(["serve", "--workers", "1", "--bind", &bind])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "{bind}: the server did not start"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "{bind}: the server exited"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            get(port, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"),
            "{bind}"
        );
        child.kill().unwrap();
        child.wait().unwrap();
    }
}

#[test]
fn serve_refuses_a_port_already_served_unless_reuse_port() {
    let (mut first, port) = serve(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["serve", "--port", &port.to_string(), "--workers", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("address in use"), "{stderr}");
    assert!(stderr.contains("--reuse-port"), "{stderr}");
    // With --reuse-port the second joins and serves once the first is gone.
    let mut second = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args([
            "serve",
            "--port",
            &port.to_string(),
            "--workers",
            "1",
            "--reuse-port",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The second listens once it logs that it is serving.
    let mut log = std::io::BufReader::new(second.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("sockeye serving") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut log, &mut line).unwrap();
        assert!(n > 0, "the second server exited before serving");
    }
    // Both answer while both run; the first, sent SIGTERM as in a restart, exits (it holds no
    // connections), and the second answers every request after it.
    for _ in 0..20 {
        assert!(get(port, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    }
    signal(&first, "-TERM");
    assert!(first.wait().unwrap().success());
    for _ in 0..20 {
        assert!(get(port, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    }
    assert!(
        second.try_wait().unwrap().is_none(),
        "the second server still runs"
    );
    second.kill().unwrap();
    second.wait().unwrap();
}

#[test]
fn serve_puts_metrics_on_their_own_address_with_metrics_bind() {
    let metrics_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (mut child, port) = serve(&["--metrics-bind", &format!(":{metrics_port}")]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", metrics_port)).is_err() {
        assert!(Instant::now() < deadline, "no metrics listener");
        std::thread::sleep(Duration::from_millis(20));
    }
    let scrape = get(metrics_port, "/metrics");
    assert!(scrape.starts_with("HTTP/1.1 200 OK\r\n"), "{scrape}");
    assert!(scrape.contains("\nsockeye_connections 0\n"), "{scrape}");
    assert!(
        scrape.contains("\nprocess_resident_memory_bytes "),
        "{scrape}"
    );
    assert!(get(metrics_port, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    assert!(get(metrics_port, "/other").starts_with("HTTP/1.1 404 "));
    // The WebSocket port no longer answers /metrics but still /healthz.
    assert!(get(port, "/metrics").starts_with("HTTP/1.1 426 "));
    assert!(get(port, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    child.kill().unwrap();
    child.wait().unwrap();

    // A taken metrics address fails the start.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_sockeye"))
        .args(["serve", "--port", "0", "--metrics-bind", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot listen for metrics"));
}

#[test]
fn serve_refuses_bad_cluster_settings_at_start() {
    for (args, says) in [
        (&["--cluster", "not a url"][..], "cluster URL"),
        (
            &[
                "--cluster",
                "nats://127.0.0.1:1",
                "--cluster-prefix",
                "rooms.>",
            ][..],
            "cluster subject prefix",
        ),
        (
            &[
                "--cluster",
                "nats://127.0.0.1:1",
                "--cluster-credentials",
                "/nonexistent.creds",
            ][..],
            "cluster credentials",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_sockeye"))
            .args(["serve", "--port", "0"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}
