//! Plain HTTP on the WebSocket port: pages, `/metrics` (checked against the traffic that made
//! it, and parsed by the Prometheus project's own Python parser when installed), `/healthz`
//! before and during shutdown.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sockeye_server::client::{self, DialOptions, Message};
use sockeye_server::{Broadcast, CloseCode, Config, Echo, Server, SlowPolicy};

fn config() -> Config {
    Config::new("127.0.0.1:0".parse().unwrap()).workers(2)
}

/// Sends `request` on a fresh connection; the whole response (the server closes after it).
fn http(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

/// An upgrade request to `addr` for WebSocket version `version`.
fn upgrade_request(addr: SocketAddr, version: u8) -> String {
    format!(
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: {version}\r\n\r\n"
    )
}

fn get(addr: SocketAddr, path: &str) -> String {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n"),
    )
}

/// The value of the sample `series` (name and labels, as written) in a scrape.
fn sample(scrape: &str, series: &str) -> u64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {series} in\n{scrape}"))
        .parse()
        .unwrap()
}

/// Waits (bounded) until `f` holds for a fresh scrape.
fn eventually(server: &Server, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = server.metrics();
        if f(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what}:\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn pages_are_served_and_everything_else_is_still_426() {
    let config = config().page("/", "text/html; charset=utf-8", "<p>hi</p>");
    let server = Server::start(config, |_| Echo).unwrap();
    let addr = server.local_addr();
    let resp = get(addr, "/");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"));
    assert!(resp.contains("\r\nContent-Length: 9\r\n"));
    assert!(resp.contains("\r\nConnection: close\r\n"));
    assert!(resp.ends_with("\r\n\r\n<p>hi</p>"), "{resp}");
    assert!(get(addr, "/?from=somewhere").ends_with("<p>hi</p>"));
    let head = http(addr, &format!("HEAD / HTTP/1.1\r\nHost: {addr}\r\n\r\n"));
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 9\r\n"));
    assert!(head.ends_with("\r\n\r\n"), "HEAD has no body: {head}");
    // Other paths, and other methods, are what they were.
    assert!(get(addr, "/other").starts_with("HTTP/1.1 426 "));
    let post = http(
        addr,
        &format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"),
    );
    assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
    // An upgrade on the page's path is an upgrade.
    let mut ws = client::dial(&format!("ws://{addr}/"), &DialOptions::new()).unwrap();
    ws.write_text("still a websocket").unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::Text("still a websocket".into())
    );
    ws.close(CloseCode::NORMAL, "").unwrap();
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn metrics_count_what_happened() {
    let server = Server::start(config().allow_origin("ok.example"), |_| Echo).unwrap();
    let addr = server.local_addr();
    let url = format!("ws://{addr}/");
    let mut open: Vec<_> = (0..3)
        .map(|_| client::dial(&url, &DialOptions::new()).unwrap())
        .collect();
    for (i, ws) in open.iter_mut().enumerate() {
        for j in 0..=i {
            ws.write_text(&format!("message {j}")).unwrap();
            assert!(matches!(ws.read().unwrap(), Message::Text(_)));
        }
    }
    // 1 + 2 + 3 messages each way; one connection closes normally, one with an application
    // code and a reason.
    open.remove(0).close(CloseCode::NORMAL, "bye").unwrap();
    open.remove(0).close(CloseCode(4321), "app").unwrap();
    // Refusals: a foreign origin (403), a plain GET of an unknown path (426), a bad version.
    let foreign = DialOptions::new().origin("http://evil.example");
    assert!(client::dial(&url, &foreign).is_err());
    assert!(get(addr, "/nothing-here").starts_with("HTTP/1.1 426 "));
    let bad_version = http(addr, &upgrade_request(addr, 8));
    assert!(bad_version.starts_with("HTTP/1.1 426 "));

    let text = eventually(&server, "two closes counted", |t| {
        t.contains("sockeye_connections 1\n")
            && t.contains("sockeye_close_frames_received_total{code=\"4xxx\"} 1\n")
    });
    assert_eq!(sample(&text, "sockeye_workers"), 2);
    assert_eq!(sample(&text, "sockeye_up"), 1);
    assert_eq!(sample(&text, "sockeye_handshakes_accepted_total"), 3);
    let refused = |r: &str| {
        sample(
            &text,
            &format!("sockeye_handshakes_refused_total{{reason=\"{r}\"}}"),
        )
    };
    assert_eq!(refused("origin"), 1);
    assert_eq!(refused("not_upgrade"), 2);
    assert_eq!(refused("bad_request"), 0);
    assert_eq!(sample(&text, "sockeye_messages_received_total"), 6);
    // Echoes and the two close replies.
    assert_eq!(sample(&text, "sockeye_messages_sent_total"), 6);
    let closes = |dir: &str, code: &str| {
        sample(
            &text,
            &format!("sockeye_close_frames_{dir}_total{{code=\"{code}\"}}"),
        )
    };
    assert_eq!(closes("received", "1000"), 1);
    assert_eq!(closes("sent", "1000"), 1);
    assert_eq!(closes("sent", "4xxx"), 1);
    // At least the handshakes and the masked frames (6 bytes of header each).
    let received = sample(&text, "sockeye_received_bytes_total");
    assert!(received > 3 * 150 + 6 * 16, "{received}");
    assert!(sample(&text, "sockeye_sent_bytes_total") > 3 * 129);
    assert_eq!(sample(&text, "sockeye_read_buffer_bytes"), 0);
    assert_eq!(sample(&text, "sockeye_receive_ring_bytes"), 2 * 128 * 65536);

    // The scrape over HTTP is the same text, with the Prometheus content type.
    let resp = get(addr, "/metrics");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    let body = resp.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(sample(body, "sockeye_handshakes_accepted_total"), 3);
    assert_eq!(sample(&server.metrics(), "sockeye_http_requests_total"), 1);
    check_with_prometheus_parser(body);

    // A message held half-received shows in the read-buffer gauge, and leaves it when done.
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(upgrade_request(addr, 13).as_bytes()).unwrap();
    let len = 300_000usize;
    let mut frame = vec![0x82, 0xff];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[0; 4]);
    s.write_all(&frame).unwrap();
    s.write_all(&vec![9u8; len / 2]).unwrap();
    eventually(&server, "half a message held", |t| {
        sample(t, "sockeye_read_buffer_bytes") >= (len / 2) as u64
    });
    s.write_all(&vec![9u8; len - len / 2]).unwrap();
    eventually(&server, "the buffer given back", |t| {
        sample(t, "sockeye_read_buffer_bytes") == 0
            && sample(t, "sockeye_messages_received_total") == 7
    });
    drop(open);
    server.shutdown();
    server.join().unwrap();
}

/// Parses a scrape with `prometheus_client.parser` (the Prometheus project's Python client),
/// when installed; required under `SOCKEYE_REQUIRE_INTEROP`.
fn check_with_prometheus_parser(text: &str) {
    let script = "import sys\nfrom prometheus_client.parser import text_string_to_metric_families as p\n\
                  fams = list(p(sys.stdin.read()))\n\
                  print(len(fams), sum(len(f.samples) for f in fams))";
    let child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_INTEROP").is_none(),
            "python3 missing"
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_INTEROP").is_none(),
            "python3 -m pip install prometheus-client"
        );
        eprintln!("skipped the parser check: python3 -m pip install prometheus-client");
        return;
    }
    assert!(
        out.status.success(),
        "the parser refused the scrape: {stderr}\n{text}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let families: usize = stdout.split_whitespace().next().unwrap().parse().unwrap();
    assert_eq!(families, text.matches("# TYPE ").count(), "{stdout}");
}

#[test]
fn backpressure_and_slow_subscribers_are_counted() {
    let config = config()
        .max_backpressure(64 << 10)
        .slow_policy(SlowPolicy::Close);
    let server = Server::start(config, |_| Broadcast).unwrap();
    let addr = server.local_addr();
    let url = format!("ws://{addr}/");
    // A subscriber that never reads; a publisher that reads its own copies.
    let slow = client::dial(&url, &DialOptions::new()).unwrap();
    let mut publisher = client::dial(&url, &DialOptions::new()).unwrap();
    let payload = vec![7u8; 60 << 10];
    for _ in 0..200 {
        publisher.write_binary(&payload).unwrap();
        let _ = publisher.read().unwrap();
        if server
            .metrics()
            .contains("sockeye_slow_subscribers_closed_total 1\n")
        {
            break;
        }
    }
    let text = eventually(&server, "the slow subscriber closed", |t| {
        t.contains("sockeye_slow_subscribers_closed_total 1\n")
            && t.contains("sockeye_close_frames_sent_total{code=\"1008\"} 1\n")
    });
    assert!(sample(&text, "sockeye_messages_sent_total") >= 2);
    drop(slow);
    server.shutdown();
    server.join().unwrap();

    // A peer that does not read its echoes pauses reading: one backpressure event at least.
    let server = Server::start(config_echo_small(), |_| Echo).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(upgrade_request(server.local_addr(), 13).as_bytes())
        .unwrap();
    s.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut frame = vec![0x82, 0xfe, 0xff, 0xff, 0, 0, 0, 0];
    frame.extend(std::iter::repeat_n(7u8, 65535));
    let mut sent = 0usize;
    while s.write_all(&frame).is_ok() && sent < 256 << 20 {
        sent += frame.len();
    }
    eventually(&server, "a backpressure event", |t| {
        sample(t, "sockeye_backpressure_events_total") >= 1
    });
    server.shutdown();
    server.join().unwrap();
}

fn config_echo_small() -> Config {
    config().max_backpressure(64 << 10)
}

#[test]
fn healthz_is_200_then_503_while_shutting_down() {
    let config =
        config()
            .close_timeout(Duration::from_secs(3))
            .page("/", "text/html", "<p>demo</p>");
    let server = Server::start(config, |_| Echo).unwrap();
    let addr = server.local_addr();
    let ok = get(addr, "/healthz");
    assert!(
        ok.starts_with("HTTP/1.1 200 OK\r\n") && ok.ends_with("\r\n\r\nok\n"),
        "{ok}"
    );
    assert!(get(addr, "/").ends_with("<p>demo</p>"));
    // A peer that never answers the close keeps the server draining until the close timeout.
    let mut stubborn = TcpStream::connect(addr).unwrap();
    stubborn
        .write_all(upgrade_request(addr, 13).as_bytes())
        .unwrap();
    let mut buf = [0u8; 129];
    stubborn
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = stubborn.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 101 "));
    let started = Instant::now();
    server.shutdown();
    // Meanwhile: health checks and pages fail, upgrades are refused with 503, on every worker.
    for _ in 0..4 {
        let resp = get(addr, "/healthz");
        assert!(resp.starts_with("HTTP/1.1 503 "), "{resp}");
        assert!(resp.ends_with("shutting down\n"));
        let page = get(addr, "/");
        assert!(page.starts_with("HTTP/1.1 503 "), "{page}");
        let err = client::dial(&format!("ws://{addr}/"), &DialOptions::new()).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "answered while draining"
    );
    let text = server.metrics();
    assert!(text.contains("sockeye_up 0\n"));
    assert!(text.contains("sockeye_handshakes_refused_total{reason=\"shutting_down\"} 4\n"));
    server.join().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "drained until the close timeout"
    );
    assert!(TcpStream::connect(addr).is_err(), "no longer accepting");
}

#[test]
fn upgrades_past_max_connections_get_503_and_are_counted() {
    let server = Server::start(config().workers(1).max_connections(2), |_| Echo).unwrap();
    let addr = server.local_addr();
    let url = format!("ws://{addr}/");
    let mut a = client::dial(&url, &DialOptions::new()).unwrap();
    let b = client::dial(&url, &DialOptions::new()).unwrap();
    eventually(&server, "two open", |t| {
        sample(t, "sockeye_connections") == 2
    });
    for _ in 0..3 {
        let err = client::dial(&url, &DialOptions::new()).unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
    }
    // Plain HTTP is still answered at the limit.
    assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    // The two open ones are untouched, and a closed one makes room for a new one.
    a.write_text("still here").unwrap();
    assert_eq!(a.read().unwrap(), Message::Text("still here".into()));
    drop(b);
    eventually(&server, "one open", |t| {
        sample(t, "sockeye_connections") == 1
    });
    let mut c = client::dial(&url, &DialOptions::new()).unwrap();
    c.write_text("room again").unwrap();
    assert_eq!(c.read().unwrap(), Message::Text("room again".into()));
    let text = server.metrics();
    assert_eq!(
        sample(
            &text,
            "sockeye_handshakes_refused_total{reason=\"connection_limit\"}"
        ),
        3
    );
    assert_eq!(
        sample(
            &text,
            "sockeye_handshakes_refused_total{reason=\"shutting_down\"}"
        ),
        0
    );
    server.shutdown();
    server.join().unwrap();
}

#[test]
fn metrics_have_the_process_families_and_the_build() {
    let server = Server::start(config(), |_| Echo).unwrap();
    let addr = server.local_addr();
    let resp = get(addr, "/metrics");
    let text = resp.split_once("\r\n\r\n").unwrap().1;
    check_with_prometheus_parser(text);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .parse()
            .unwrap()
    };
    // A running server with its receive rings holds more than a megabyte.
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(value("process_cpu_seconds_total") >= 0.0);
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 86_400.0,
        "{started} vs {now}"
    );
    let build = format!(
        "sockeye_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    );
    assert!(text.contains(&build), "{text}");

    // metrics_path(false): the port keeps /healthz and the handle renders the metrics.
    let elsewhere = Server::start(config().metrics_path(false), |_| Echo).unwrap();
    let addr = elsewhere.local_addr();
    assert!(get(addr, "/metrics").starts_with("HTTP/1.1 426 "));
    assert!(get(addr, "/healthz").starts_with("HTTP/1.1 200 OK\r\n"));
    let handle = elsewhere.metrics_handle();
    assert!(handle.accepting());
    assert!(handle.render().contains("\nsockeye_connections 0\n"));
    let answer = |req: &[u8]| String::from_utf8(handle.respond(req)).unwrap();
    let scrape = answer(b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(scrape.starts_with("HTTP/1.1 200 OK\r\n"), "{scrape}");
    assert!(scrape.contains("\nsockeye_connections 0\n"));
    assert!(answer(b"GET /healthz HTTP/1.1\r\n\r\n").ends_with("\r\n\r\nok\n"));
    assert!(answer(b"GET /other HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
    assert!(answer(b"POST /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400 "));
    assert!(answer(b"GET /metr").starts_with("HTTP/1.1 400 "));
    for s in [server, elsewhere] {
        s.shutdown();
        s.join().unwrap();
    }
    assert!(
        !handle.accepting(),
        "the handle outlives the server and says it stopped"
    );
}

#[test]
fn metrics_and_healthz_can_be_turned_off() {
    let server = Server::start(config().metrics(false), |_| Echo).unwrap();
    let addr = server.local_addr();
    assert!(get(addr, "/metrics").starts_with("HTTP/1.1 426 "));
    assert!(get(addr, "/healthz").starts_with("HTTP/1.1 426 "));
    server.shutdown();
    server.join().unwrap();
}
