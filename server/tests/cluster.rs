//! A cluster of real parts: a `nats-server` (Debian's, installed by `.ci/run`) and three
//! `sockeye serve --mode broadcast --cluster` processes on loopback. Subscribers on all three
//! nodes, publishers on two: every subscriber gets every message of its room exactly once, in
//! per-publisher order, and nothing of other rooms. Then NATS is killed mid-run: local delivery
//! goes on; NATS restarts and cross-node delivery resumes without restarting any node.
//!
//! Skipped with a message when `nats-server` is missing, unless `SOCKEYE_REQUIRE_INTEROP=1`.

#![cfg(feature = "cluster")]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockeye_server::client::{self, Conn, DialOptions, Message};

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `nats-server` on `port`, killed when dropped.
struct Nats(Child);

impl Nats {
    fn start(port: u16) -> Nats {
        let child = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server");
        wait_for_port(port, "nats-server");
        Nats(child)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `sockeye serve` node, killed when dropped; its log is kept for failure messages.
struct Node {
    child: Child,
    addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Node {
    fn start(nats_port: u16) -> Node {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sockeye"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--mode",
                "broadcast",
                "--workers",
                "2",
            ])
            .args(["--stats-interval", "0", "--cluster"])
            .arg(format!("nats://127.0.0.1:{nats_port}"))
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let plain = strip_ansi(&line);
                if let Some(at) = plain.find("url=ws://") {
                    let addr = plain[at + 9..].split_whitespace().next().unwrap_or("");
                    let _ = tx.send(addr.to_owned());
                }
                sink.lock().unwrap().push_str(&(plain + "\n"));
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the node logs its address")
            .parse()
            .unwrap();
        Node { child, addr, log }
    }

    fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    fn sample(&self, series: &str) -> u64 {
        let text = self.metrics();
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    fn dial(&self, room: &str) -> Conn {
        let mut c = client::dial(&format!("ws://{}{room}", self.addr), &DialOptions::new())
            .unwrap_or_else(|e| panic!("dial {room}: {e}"));
        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)));
        c
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A read that ended at its deadline (the connection stays usable).
fn timed_out(e: &client::Error) -> bool {
    matches!(e, client::Error::Timeout("read deadline"))
}

fn text(c: &mut Conn) -> String {
    match c.read() {
        Ok(Message::Text(t)) => t,
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// Waits (bounded) until every node reports `sockeye_cluster_connected 1`.
fn all_connected(nodes: &[Node], within: Duration) {
    let deadline = Instant::now() + within;
    for n in nodes {
        while n.sample("sockeye_cluster_connected") != 1 {
            let log = n.log.lock().unwrap().clone();
            assert!(
                Instant::now() < deadline,
                "node {} not connected:\n{log}",
                n.addr
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits (bounded) until an in-process server reports `sockeye_cluster_connected 1`.
fn joined(server: &sockeye_server::Server) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.metrics().contains("sockeye_cluster_connected 1\n") {
        assert!(Instant::now() < deadline, "not connected");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Reads until every publisher in `publishers` has delivered `0..n` and its end marker, in
/// order, exactly once; nothing from elsewhere. Then nothing more arrives for a while.
fn expect_all(c: &mut Conn, who: &str, publishers: &[&str], n: usize) {
    let mut next = vec![0usize; publishers.len()];
    let mut ended = 0;
    while ended < publishers.len() {
        let t = text(c);
        let (p, i) = t.rsplit_once(' ').unwrap();
        let k = publishers
            .iter()
            .position(|x| *x == p)
            .unwrap_or_else(|| panic!("{who} got {t:?}, not from its room"));
        if i == "end" {
            assert_eq!(next[k], n, "{who}: {p} ended after {} of {n}", next[k]);
            ended += 1;
        } else {
            assert_eq!(
                i.parse::<usize>().unwrap(),
                next[k],
                "{who}: {p} out of order"
            );
            next[k] += 1;
        }
    }
    c.set_read_deadline(Some(Instant::now() + Duration::from_millis(300)));
    match c.read() {
        Err(e) if timed_out(&e) => {}
        other => panic!("{who}: a message after the ends (a duplicate?): {other:?}"),
    }
    c.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)));
}

/// Whether `nats-server` is installed; without it the tests are skipped (with a message), or
/// fail under `SOCKEYE_REQUIRE_INTEROP`.
fn have_nats() -> bool {
    let found = Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("SOCKEYE_REQUIRE_INTEROP").is_none(),
            "nats-server is required (apt-get install nats-server)"
        );
        eprintln!("skipped: apt-get install nats-server to run this test");
    }
    found
}

#[test]
fn three_nodes_through_nats_with_a_nats_restart() {
    if !have_nats() {
        return;
    }
    let nats_port = free_port();
    let mut nats = Some(Nats::start(nats_port));
    let mut nodes: Vec<Node> = (0..3).map(|_| Node::start(nats_port)).collect();
    all_connected(&nodes, Duration::from_secs(10));

    // Room r1: three subscribers on each node, publishers on nodes 0 and 1. Room r2: one
    // subscriber on each node, a publisher on node 2.
    let mut r1: Vec<(String, Conn)> = Vec::new();
    let mut r2: Vec<(String, Conn)> = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        for j in 0..3 {
            r1.push((format!("r1 sub {j} on node {i}"), n.dial("/r1")));
        }
        r2.push((format!("r2 sub on node {i}"), n.dial("/r2")));
    }
    let p1 = nodes[0].dial("/r1");
    let p2 = nodes[1].dial("/r1");
    let p3 = nodes[2].dial("/r2");
    const N: usize = 200;
    for i in 0..N {
        p1.write_text(&format!("p1 {i}")).unwrap();
        p2.write_text(&format!("p2 {i}")).unwrap();
        p3.write_text(&format!("p3 {i}")).unwrap();
    }
    for (p, name) in [(&p1, "p1"), (&p2, "p2"), (&p3, "p3")] {
        p.write_text(&format!("{name} end")).unwrap();
    }
    for (who, c) in &mut r1 {
        expect_all(c, who, &["p1", "p2"], N);
    }
    for (who, c) in &mut r2 {
        expect_all(c, who, &["p3"], N);
    }
    let published: u64 = nodes
        .iter()
        .map(|n| n.sample("sockeye_cluster_published_total"))
        .sum();
    assert_eq!(
        published,
        3 * (N as u64 + 1),
        "each message published to NATS once"
    );

    // NATS dies. Local delivery on node 0 goes on; what node 0 could not send is counted.
    drop(nats.take());
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[0].sample("sockeye_cluster_connected") != 0 {
        assert!(
            Instant::now() < deadline,
            "node 0 did not notice NATS going away"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for i in 0..N {
        p1.write_text(&format!("local {i}")).unwrap();
    }
    for (who, c) in r1.iter_mut().filter(|(w, _)| w.ends_with("node 0")) {
        for i in 0..N {
            assert_eq!(
                text(c),
                format!("local {i}"),
                "{who}: local delivery while NATS is down"
            );
        }
    }
    // The bridge counts them on its own thread, after the local delivery: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes[0].sample("sockeye_cluster_dropped_total{reason=\"disconnected\"}") == 0 {
        assert!(
            Instant::now() < deadline,
            "messages for other nodes counted as dropped"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // NATS comes back on the same port: every node reconnects by itself.
    nats = Some(Nats::start(nats_port));
    all_connected(&nodes, Duration::from_secs(20));
    for n in &mut nodes {
        assert!(n.alive(), "no node restarted");
        assert!(n.sample("sockeye_cluster_connects_total") >= 2);
    }
    // Cross-node delivery resumes: node 1's publisher reaches node 0 and node 2 again. (Its
    // subscription may take a moment to be back on the server: probe until one arrives.)
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut k = 0;
    'probe: loop {
        p2.write_text(&format!("probe {k}")).unwrap();
        k += 1;
        let c = &mut r1[0].1; // node 0
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(200)));
        loop {
            match c.read() {
                Ok(Message::Text(t)) if t.starts_with("probe ") => break 'probe,
                Ok(_) => {} // "local" messages left from the outage
                Err(e) if timed_out(&e) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "cross-node delivery did not resume"
        );
    }
    // Now everyone gets everything again, in order.
    for i in 0..N {
        p1.write_text(&format!("after {i}")).unwrap();
        p2.write_text(&format!("again {i}")).unwrap();
    }
    p1.write_text("after end").unwrap();
    p2.write_text("again end").unwrap();
    for (who, c) in &mut r1 {
        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)));
        // Skip what the outage left behind (local messages, probes), then check the rest.
        let mut next = [0usize; 2];
        let mut ended = 0;
        while ended < 2 {
            let t = text(c);
            let (p, i) = t.rsplit_once(' ').unwrap();
            let Some(k) = ["after", "again"].iter().position(|x| *x == p) else {
                assert!(p == "local" || p == "probe", "{who}: {t:?}");
                continue;
            };
            if i == "end" {
                assert_eq!(next[k], N, "{who}: {p}");
                ended += 1;
            } else {
                assert_eq!(
                    i.parse::<usize>().unwrap(),
                    next[k],
                    "{who}: {p} out of order"
                );
                next[k] += 1;
            }
        }
    }

    // Any NATS publisher can speak into a room: a plain payload on the room's subject reaches
    // its members on every node as text (it is UTF-8); a subject no room name escapes to is
    // refused and counted.
    let mut raw = TcpStream::connect(("127.0.0.1", nats_port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(
        b"CONNECT {\"verbose\":false}\r\nPUB sockeye.room.a_2f 3\r\nbad\r\n\
          PUB sockeye.room._2Fr2 15\r\nfrom a service!\r\nPING\r\n",
    )
    .unwrap();
    let mut reply = String::new();
    let mut byte = [0u8];
    while !reply.contains("PONG") {
        raw.read_exact(&mut byte).unwrap();
        reply.push(char::from(byte[0]));
    }
    for (who, c) in &mut r2 {
        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(10)));
        assert_eq!(text(c), "from a service!", "{who}");
    }
    let invalid: u64 = nodes
        .iter()
        .map(|n| n.sample("sockeye_cluster_dropped_total{reason=\"invalid\"}"))
        .sum();
    assert_eq!(invalid, 3, "the bad subject refused by every node");
    drop(nats);
}

/// NATS down when the node starts: it serves its local rooms, says it is not clustered, and
/// joins the cluster by itself once NATS is up.
#[test]
fn a_node_starts_without_nats_and_joins_when_it_comes_up() {
    if !have_nats() {
        return;
    }
    let nats_port = free_port();
    let node = Node::start(nats_port);
    let a = node.dial("/room");
    let mut b = node.dial("/room");
    a.write_text("local only").unwrap();
    assert_eq!(text(&mut b), "local only");
    assert_eq!(node.sample("sockeye_cluster_connected"), 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !node
        .log
        .lock()
        .unwrap()
        .contains("serving local rooms only")
    {
        assert!(
            Instant::now() < deadline,
            "no log line saying it is not clustered"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _nats = Nats::start(nats_port);
    let other = Node::start(nats_port);
    all_connected(&[node, other], Duration::from_secs(20));
}

/// A NATS server that stops reading (SIGSTOP) must not slow local delivery: the bridge's
/// queue fills and further cross-node messages are dropped and counted.
#[test]
fn a_stalled_nats_never_blocks_local_delivery() {
    use sockeye_server::{Broadcast, ClusterConfig, Config, Server};
    if !have_nats() {
        return;
    }
    let nats_port = free_port();
    let nats = Nats::start(nats_port);
    let cluster = ClusterConfig::new(format!("nats://127.0.0.1:{nats_port}")).queue_capacity(16);
    let config = Config::new("127.0.0.1:0".parse().unwrap())
        .workers(1)
        .max_backpressure(64 << 20)
        .cluster(cluster);
    let server = Server::start(config, |_| Broadcast).unwrap();
    joined(&server);
    let pid = nats.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let url = format!("ws://{}/slow", server.local_addr());
    let mut c = client::dial(&url, &DialOptions::new()).unwrap();
    c.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)));
    let payload = vec![7u8; 60 << 10];
    let started = Instant::now();
    for i in 0..1000u32 {
        let mut m = payload.clone();
        m[..4].copy_from_slice(&i.to_be_bytes());
        c.write_binary(&m).unwrap();
        let got = c.read().unwrap().into_bytes();
        assert_eq!(got[..4], i.to_be_bytes(), "local delivery, in order");
    }
    let took = started.elapsed();
    let text = server.metrics();
    let dropped: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("sockeye_cluster_dropped_total{reason=\"queue_full\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert!(dropped > 0, "the stalled link's queue overflowed:\n{text}");
    assert!(
        took < Duration::from_secs(20),
        "1000 local round trips took {took:?}"
    );
    drop(c);
    server.shutdown();
    server.join().unwrap();
    drop(nats);
}

/// `Poster::publish` from any thread reaches the room on every node, even one with no member
/// in the publishing process.
#[test]
fn other_threads_publish_across_the_cluster() {
    use sockeye_server::{Broadcast, ClusterConfig, Config, PreparedMessage, Server};
    if !have_nats() {
        return;
    }
    let nats_port = free_port();
    let _nats = Nats::start(nats_port);
    let start = || {
        let cluster = ClusterConfig::new(format!("nats://127.0.0.1:{nats_port}"));
        let config = Config::new("127.0.0.1:0".parse().unwrap())
            .workers(2)
            .cluster(cluster);
        Server::start(config, |_| Broadcast).unwrap()
    };
    let (a, b) = (start(), start());
    joined(&a);
    joined(&b);
    let url = format!("ws://{}/news", b.local_addr());
    let mut member = client::dial(&url, &DialOptions::new()).unwrap();
    member.set_read_deadline(Some(Instant::now() + Duration::from_secs(10)));
    let poster = a.poster();
    let from_thread = std::thread::spawn(move || {
        poster.publish("/news", &PreparedMessage::text("from node a's thread"))
    });
    assert!(!from_thread.join().unwrap(), "no member of /news on node a");
    assert_eq!(text(&mut member), "from node a's thread");
    drop(member);
    for s in [a, b] {
        s.shutdown();
        s.join().unwrap();
    }
}
