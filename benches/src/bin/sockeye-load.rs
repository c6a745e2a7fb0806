//! `sockeye-load`: a WebSocket load generator for any server (sockeye or a peer).
//!
//! By default it speaks the protocol itself with pre-masked frames (masking costs it nothing per
//! message) on a tokio current_thread runtime: the cheapest load there is, so one pinned core
//! drives more than one server core absorbs. `echo --engine uring` drives the same load through
//! sockeye's io_uring runtime in the client role instead (outbound connections, a fresh masking
//! key per frame, the codec decoding the echoes): a real client, which costs more per message on
//! large and pipelined loads (BENCHMARKS.md). Every echoed byte is compared with what was sent.
//!
//! ```text
//! sockeye-load echo      --url ws://127.0.0.1:9001 -c 64 -k 16 -s 16 -d 10
//! sockeye-load broadcast --url ws://127.0.0.1:9001 -c 1000 -s 64 -d 10
//! sockeye-load conns     --url ws://127.0.0.1:9001 -c 10000 --server-pid PID
//! sockeye-load churn     --url ws://127.0.0.1:9001 -c 16 -d 10
//! ```
//!
//! Prints a human-readable line and a JSON line; with `--server-pid` also the server's CPU time
//! per message (from `/proc/PID/stat`) and RSS.

// One unsafe call (getrusage/setrlimit) for the generator's own CPU time and descriptor limit.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

#[derive(Parser)]
#[command(about = "WebSocket load generator (echo, broadcast, idle connections)")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(clap::Args, Clone)]
struct Common {
    /// Server URL (ws://HOST:PORT/PATH, loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// Payload size in bytes.
    #[arg(short = 's', long, default_value_t = 16)]
    size: usize,
    /// Seconds to measure (after the warm-up).
    #[arg(short = 'd', long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of warm-up, not measured.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send text frames (default binary).
    #[arg(long)]
    text: bool,
    /// PID of the server, to report its CPU time per message and its RSS.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A label for the JSON line.
    #[arg(long, default_value = "")]
    label: String,
    /// Offer permessage-deflate (echo --engine uring, conns) and send JSON-like payloads that
    /// compress about as real traffic does.
    #[arg(long, value_enum, default_value = "off")]
    compression: Deflate,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Deflate {
    Off,
    Takeover,
    NoTakeover,
}

impl Deflate {
    fn config(self) -> Option<sockeye_codec::deflate::DeflateConfig> {
        self.mode().deflate_config()
    }

    fn mode(self) -> sockeye_server::Compression {
        match self {
            Deflate::Off => sockeye_server::Compression::Disabled,
            Deflate::Takeover => sockeye_server::Compression::ContextTakeover,
            Deflate::NoTakeover => sockeye_server::Compression::NoContextTakeover,
        }
    }
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum Engine {
    /// Pre-masked frames on a tokio current_thread runtime.
    Tokio,
    /// sockeye's io_uring runtime with outbound (client-role) connections.
    Uring,
}

#[derive(Subcommand)]
enum Mode {
    /// C connections, each with K messages in flight, echoed back and verified.
    Echo {
        #[command(flatten)]
        common: Common,
        /// Messages in flight per connection.
        #[arg(short = 'k', long, default_value_t = 1)]
        in_flight: usize,
        /// Expect the bytes back exactly as sent (a raw TCP echo: the floor measurement; uses
        /// the tokio engine).
        #[arg(long)]
        verbatim: bool,
        /// What drives the connections.
        #[arg(long, value_enum, default_value = "tokio")]
        engine: Engine,
    },
    /// C subscribers and one publisher; deliveries counted and checked for order.
    Broadcast {
        #[command(flatten)]
        common: Common,
        /// Messages the publisher sends before waiting for every subscriber to catch up.
        #[arg(long, default_value_t = 16)]
        window: usize,
        /// Publish unmasked frames and expect them back as sent: for a raw TCP fan-out (the
        /// broadcast floor, `peer-server --impl raw-fanout`), which forwards bytes verbatim.
        #[arg(long)]
        verbatim: bool,
        /// Where the subscribers connect (repeatable, used in turn; default: --url, where the
        /// publisher connects). With the nodes of a cluster here, every delivery crosses nodes.
        #[arg(long = "subscriber-url", value_name = "URL")]
        subscriber_urls: Vec<String>,
    },
    /// C tasks that each connect, upgrade, echo one message and close, again and again.
    Churn {
        #[command(flatten)]
        common: Common,
    },
    /// C idle connections held open, then one echo round trip on each.
    Conns {
        #[command(flatten)]
        common: Common,
        /// Seconds to hold the connections before measuring memory.
        #[arg(long, default_value_t = 2.0)]
        hold: f64,
        /// With --compression: compressed messages of --size bytes each connection sends (and
        /// reads back) before the hold, so the server holds compression state.
        #[arg(long, default_value_t = 0)]
        messages: usize,
    },
}

fn main() {
    raise_fd_limit();
    let cli = Cli::parse();
    if let Mode::Echo {
        common,
        in_flight,
        verbatim: false,
        engine: Engine::Uring,
    } = &cli.mode
    {
        uring_echo(common.clone(), *in_flight);
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        match cli.mode {
            Mode::Echo {
                common,
                in_flight,
                verbatim,
                ..
            } => echo(common, in_flight, verbatim).await,
            Mode::Churn { common } => churn(common).await,
            Mode::Broadcast {
                common,
                window,
                verbatim,
                subscriber_urls,
            } => broadcast(common, window, verbatim, subscriber_urls).await,
            Mode::Conns {
                common,
                hold,
                messages,
            } => conns(common, hold, messages).await,
        }
    });
}

fn target(url: &str) -> (SocketAddr, String) {
    let rest = url.strip_prefix("ws://").expect("a ws:// URL");
    let (hostport, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let addr: SocketAddr = hostport.parse().expect("HOST:PORT with an IP address");
    assert!(addr.ip().is_loopback(), "load only loopback addresses");
    (addr, path)
}

/// Connects from source address 127.0.0.`n` (to spread more than 64k connections' ports) and
/// completes the upgrade. Returns the stream and any bytes read past the response.
async fn open(addr: SocketAddr, path: &str, source: u8) -> std::io::Result<TcpStream> {
    open_with(addr, path, source, "").await.map(|(s, _)| s)
}

/// [`open`] with extra request header lines (each ending in CRLF); returns the response too.
async fn open_with(
    addr: SocketAddr,
    path: &str,
    source: u8,
    extra: &str,
) -> std::io::Result<(TcpStream, String)> {
    let sock = TcpSocket::new_v4()?;
    if addr.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) && source > 1 {
        sock.bind(SocketAddr::from(([127, 0, 0, source], 0)))?;
    }
    let mut s = sock.connect(addr).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !resp.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await? == 0 || resp.len() > 4096 {
            return Err(std::io::Error::other("no upgrade response"));
        }
        resp.push(byte[0]);
    }
    let resp = String::from_utf8_lossy(&resp).into_owned();
    if !resp.starts_with("HTTP/1.1 101") {
        return Err(std::io::Error::other(resp));
    }
    Ok((s, resp))
}

/// One masked client frame with a fixed key, and the unmasked frame the server sends back.
fn frames(text: bool, payload: &[u8]) -> (Vec<u8>, Vec<u8>) {
    use sockeye_codec::{OpCode, encode_frame};
    let op = if text { OpCode::Text } else { OpCode::Binary };
    let mut masked = vec![0u8; payload.len() + 14];
    let n = encode_frame(
        &mut masked,
        op,
        true,
        Some([0x11, 0x22, 0x33, 0x44]),
        payload,
    )
    .unwrap();
    masked.truncate(n);
    let mut plain = vec![0u8; payload.len() + 14];
    let n = encode_frame(&mut plain, op, true, None, payload).unwrap();
    plain.truncate(n);
    (masked, plain)
}

fn payload(size: usize, seed: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + ((i + seed) % 26) as u8).collect()
}

/// A JSON-like payload of `size` bytes (ASCII): repeated keys, varying numbers, so it
/// compresses about as market data or chat events do (3-5x), unlike [`payload`]'s pattern.
fn json_payload(size: usize, seed: usize) -> Vec<u8> {
    let mut x = (seed as u32).wrapping_mul(2_654_435_761) | 1;
    let mut s = String::with_capacity(size + 64);
    s.push_str("{\"type\":\"update\",\"items\":[");
    while s.len() < size {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        s.push_str(&format!(
            "{{\"id\":{},\"price\":{}.{:02},\"qty\":{}}},",
            x % 100_000,
            x % 1000,
            x % 100,
            x % 50
        ));
    }
    let mut v = s.into_bytes();
    v.truncate(size);
    v
}

/// CPU seconds (user + system) of a process, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / hz)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer for getrusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointers to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Shared counters of one run (single-threaded runtime: plain cells).
#[derive(Default)]
struct Counters {
    measuring: Cell<bool>,
    messages: Cell<u64>,
    bytes: Cell<u64>,
    errors: Cell<u64>,
}

/// Waits out the warm-up, counts for the measured duration, then waits for the tasks to end.
/// Returns elapsed seconds, the server's CPU seconds (with `--server-pid`) and our own.
async fn measure(
    c: &Common,
    counters: &Counters,
    tasks: Vec<tokio::task::JoinHandle<()>>,
) -> (f64, Option<f64>, f64) {
    tokio::time::sleep(Duration::from_secs_f64(c.warmup)).await;
    counters.measuring.set(true);
    let w = Window::open(c.server_pid);
    tokio::time::sleep(Duration::from_secs_f64(c.duration)).await;
    counters.measuring.set(false);
    let window = w.close(c.server_pid);
    for t in tasks {
        let _ = t.await;
    }
    window
}

struct Window {
    started: Instant,
    server_cpu: Option<f64>,
    own_cpu: f64,
}

impl Window {
    fn open(pid: Option<u32>) -> Window {
        Window {
            started: Instant::now(),
            server_cpu: pid.and_then(cpu_seconds),
            own_cpu: own_cpu_seconds(),
        }
    }

    /// Elapsed seconds, server CPU seconds, own CPU seconds.
    fn close(&self, pid: Option<u32>) -> (f64, Option<f64>, f64) {
        let secs = self.started.elapsed().as_secs_f64();
        let server = match (pid.and_then(cpu_seconds), self.server_cpu) {
            (Some(b), Some(a)) => Some(b - a),
            _ => None,
        };
        (secs, server, own_cpu_seconds() - self.own_cpu)
    }
}

async fn echo(c: Common, k: usize, verbatim: bool) {
    let (addr, path) = target(&c.url);
    let counters = Rc::new(Counters::default());
    let latencies = Rc::new(std::cell::RefCell::new(Vec::<u32>::new()));
    let deadline = Instant::now() + Duration::from_secs_f64(c.warmup + c.duration);
    let mut tasks = Vec::new();
    for i in 0..c.connections {
        let s = match open(addr, &path, 1 + (i / 20000) as u8).await {
            Ok(s) => s,
            Err(e) => panic!("connection {i}: {e}"),
        };
        let (masked, plain) = frames(c.text, &payload(c.size, i));
        let batch: Vec<u8> = masked.repeat(k);
        let expect: Vec<u8> = if verbatim {
            batch.clone()
        } else {
            plain.repeat(k)
        };
        let (counters, latencies) = (counters.clone(), latencies.clone());
        tasks.push(tokio::task::spawn_local(async move {
            let mut s = s;
            let mut got = vec![0u8; expect.len()];
            while Instant::now() < deadline {
                let t0 = Instant::now();
                if s.write_all(&batch).await.is_err() || s.read_exact(&mut got).await.is_err() {
                    counters.errors.set(counters.errors.get() + 1);
                    return;
                }
                if got != expect {
                    counters.errors.set(counters.errors.get() + 1);
                    return;
                }
                if counters.measuring.get() {
                    counters.messages.set(counters.messages.get() + k as u64);
                    counters
                        .bytes
                        .set(counters.bytes.get() + (k * c.size) as u64);
                    latencies
                        .borrow_mut()
                        .push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
        }));
    }
    let (secs, server_cpu, own_cpu) = measure(&c, &counters, tasks).await;
    let mut lat = latencies.borrow().clone();
    lat.sort_unstable();
    let msgs = counters.messages.get();
    report(
        &c,
        if verbatim { "echo-raw" } else { "echo" },
        &[("in_flight", k as f64)],
        msgs,
        counters.bytes.get(),
        counters.errors.get(),
        secs,
        server_cpu,
        own_cpu,
        Some(&lat),
    );
}

/// Counters shared between the io_uring worker and the measuring thread.
#[derive(Default)]
struct UringCounters {
    measuring: std::sync::atomic::AtomicBool,
    stop: std::sync::atomic::AtomicBool,
    messages: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
    errors: std::sync::atomic::AtomicU64,
    opened: std::sync::atomic::AtomicU64,
    latencies: std::sync::Mutex<Option<Vec<u32>>>,
}

/// Echo on the io_uring runtime: each connection sends K messages, waits for their K echoes
/// (each checked), and sends the next K; the latency is that of the whole batch.
struct UringEcho {
    k: usize,
    text: bool,
    payloads: Vec<Vec<u8>>,
    /// Per connection: echoes still expected, and when the batch left.
    batches: Vec<(usize, Instant)>,
    counters: std::sync::Arc<UringCounters>,
    latencies: Vec<u32>,
}

impl UringEcho {
    fn send_batch(&mut self, ws: &mut sockeye_server::WebSocket<'_>, i: usize) {
        for _ in 0..self.k {
            let p = &self.payloads[i];
            if self.text {
                let _ = ws.send_text(std::str::from_utf8(p).expect("ASCII payload"));
            } else {
                let _ = ws.send_binary(p);
            }
        }
        self.batches[i] = (self.k, Instant::now());
    }
}

impl sockeye_server::Handler for UringEcho {
    fn on_open(&mut self, ws: &mut sockeye_server::WebSocket<'_>) {
        use std::sync::atomic::Ordering::Relaxed;
        self.counters.opened.fetch_add(1, Relaxed);
        let i = ws.token().expect("outbound") as usize;
        self.send_batch(ws, i);
    }

    fn on_message(
        &mut self,
        ws: &mut sockeye_server::WebSocket<'_>,
        msg: sockeye_server::Message<'_>,
    ) {
        use std::sync::atomic::Ordering::Relaxed;
        let i = ws.token().expect("outbound") as usize;
        let c = &self.counters;
        if msg.as_bytes() != self.payloads[i]
            || matches!(msg, sockeye_server::Message::Text(_)) != self.text
        {
            c.errors.fetch_add(1, Relaxed);
        }
        let (left, started) = &mut self.batches[i];
        *left -= 1;
        if *left > 0 {
            return;
        }
        if c.measuring.load(Relaxed) {
            c.messages.fetch_add(self.k as u64, Relaxed);
            c.bytes
                .fetch_add((self.k * self.payloads[i].len()) as u64, Relaxed);
            self.latencies
                .push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
        }
        if c.stop.load(Relaxed) {
            let mut shared = c.latencies.lock().expect("not poisoned");
            shared
                .get_or_insert_with(Vec::new)
                .append(&mut self.latencies);
            return;
        }
        self.send_batch(ws, i);
    }

    fn on_connect_error(&mut self, token: u64, error: std::io::Error) {
        eprintln!("connection {token}: {error}");
        self.counters
            .errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn uring_echo(c: Common, k: usize) {
    use std::sync::atomic::Ordering::Relaxed;
    let (addr, path) = target(&c.url);
    let counters = std::sync::Arc::new(UringCounters::default());
    let payloads: Vec<Vec<u8>> = (0..c.connections)
        .map(|i| match c.compression {
            Deflate::Off => payload(c.size, i),
            _ => json_payload(c.size, i),
        })
        .collect();
    let config = sockeye_server::Config::new(addr)
        .listen(false)
        .compression(c.compression.mode())
        .workers(1)
        .max_backpressure(64 << 20)
        .max_message(u64::try_from(c.size).unwrap_or(u64::MAX).max(1 << 20));
    let (shared, text, n) = (counters.clone(), c.text, c.connections);
    let rt = sockeye_server::Server::start(config, move |_| UringEcho {
        k,
        text,
        payloads: payloads.clone(),
        batches: vec![(0, Instant::now()); n],
        counters: shared.clone(),
        latencies: Vec::new(),
    })
    .expect("io_uring runtime");
    let url = format!("ws://{addr}{path}");
    for i in 0..c.connections {
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i / 20000) as u8));
        let connect = sockeye_server::Connect::new(&url)
            .expect("url")
            .token(i as u64)
            .source(source);
        while rt.connect(connect.clone()).is_err() {
            std::thread::sleep(Duration::from_millis(1)); // the worker's mailbox is full
        }
    }
    let ready = Instant::now() + Duration::from_secs(30);
    while counters.opened.load(Relaxed) + counters.errors.load(Relaxed) < c.connections as u64 {
        assert!(
            Instant::now() < ready,
            "connections did not open within 30 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_secs_f64(c.warmup));
    counters.measuring.store(true, Relaxed);
    let w = Window::open(c.server_pid);
    std::thread::sleep(Duration::from_secs_f64(c.duration));
    counters.measuring.store(false, Relaxed);
    let (secs, server_cpu, own_cpu) = w.close(c.server_pid);
    counters.stop.store(true, Relaxed);
    std::thread::sleep(Duration::from_millis(200)); // batches in flight come back
    rt.shutdown();
    let _ = rt.join();
    let mut lat = counters
        .latencies
        .lock()
        .expect("not poisoned")
        .take()
        .unwrap_or_default();
    lat.sort_unstable();
    report(
        &c,
        "echo",
        &[("in_flight", k as f64)],
        counters.messages.load(Relaxed),
        counters.bytes.load(Relaxed),
        counters.errors.load(Relaxed),
        secs,
        server_cpu,
        own_cpu,
        Some(&lat),
    );
}

async fn broadcast(c: Common, window: usize, verbatim: bool, subscriber_urls: Vec<String>) {
    let (addr, path) = target(&c.url);
    let sub_targets: Vec<_> = match subscriber_urls.is_empty() {
        true => vec![(addr, path.clone())],
        false => subscriber_urls.iter().map(|u| target(u)).collect(),
    };
    // Publish-to-delivery latency: payloads carry the send time (after the sequence number);
    // every tenth subscriber records it.
    let t0 = Instant::now();
    let latencies = Rc::new(std::cell::RefCell::new(Vec::<u32>::new()));
    let counters = Rc::new(Counters::default());
    let progress = Rc::new(std::cell::RefCell::new(vec![0u64; c.connections]));
    let out_of_order = Rc::new(Cell::new(0u64));
    let stop = Rc::new(Cell::new(false));
    let moved = Rc::new(tokio::sync::Notify::new());
    let mut subs = Vec::new();
    for i in 0..c.connections {
        let (sub_addr, sub_path) = &sub_targets[i % sub_targets.len()];
        let s = open(*sub_addr, sub_path, 1 + (i / 20000) as u8)
            .await
            .unwrap_or_else(|e| panic!("subscriber {i}: {e}"));
        let (counters, progress, ooo, stop) = (
            counters.clone(),
            progress.clone(),
            out_of_order.clone(),
            stop.clone(),
        );
        let lat = (i % 10 == 0).then(|| latencies.clone());
        let moved = moved.clone();
        let size = c.size;
        subs.push(tokio::task::spawn_local(async move {
            let (mut rd, _wr) = s.into_split();
            let mut buf = vec![0u8; 64 << 10];
            let (mut have, mut next_seq) = (0usize, 1u64);
            loop {
                // No timer per read (it cost the generator as much as a server's turn): the
                // task is aborted when the run ends.
                let n = match rd.read(&mut buf[have..]).await {
                    Ok(0) | Err(_) => {
                        if !stop.get() {
                            counters.errors.set(counters.errors.get() + 1);
                        }
                        return;
                    }
                    Ok(n) => n,
                };
                have += n;
                let mut at = 0;
                // Frames: 2-byte header (size < 126) or 4 bytes; payload starts with a u64 seq.
                loop {
                    if have - at < 2 {
                        break;
                    }
                    let len7 = usize::from(buf[at + 1] & 0x7f);
                    let (hlen, len) = if len7 == 126 {
                        if have - at < 4 {
                            break;
                        }
                        (
                            4,
                            usize::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])),
                        )
                    } else {
                        (2, len7)
                    };
                    if have - at < hlen + len {
                        break;
                    }
                    debug_assert_eq!(len, size);
                    let seq = u64::from_le_bytes(buf[at + hlen..at + hlen + 8].try_into().unwrap());
                    if seq != next_seq {
                        ooo.set(ooo.get() + 1);
                    }
                    next_seq = seq + 1;
                    progress.borrow_mut()[i] = seq;
                    if counters.measuring.get() {
                        counters.messages.set(counters.messages.get() + 1);
                        counters.bytes.set(counters.bytes.get() + len as u64);
                        if let Some(lat) = &lat {
                            let p = at + hlen + 8;
                            let sent = u64::from_le_bytes(buf[p..p + 8].try_into().unwrap());
                            let now = t0.elapsed().as_nanos() as u64;
                            lat.borrow_mut()
                                .push((now.saturating_sub(sent) / 1000) as u32);
                        }
                    }
                    at += hlen + len;
                }
                buf.copy_within(at..have, 0);
                have -= at;
                moved.notify_one();
            }
        }));
    }
    assert!(
        c.size >= 16 && c.size < 65536,
        "broadcast payloads are 16..65535 bytes (a sequence number and a time stamp lead)"
    );
    let publisher = open(addr, &path, 1).await.expect("publisher");
    let (mut pub_rd, mut publisher) = publisher.into_split();
    // The publisher is a subscriber too: drain what it gets back.
    let drain = tokio::task::spawn_local(async move {
        let mut sink = vec![0u8; 64 << 10];
        while matches!(pub_rd.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let deadline_total = Duration::from_secs_f64(c.warmup + c.duration);
    let start = Instant::now();
    let mut seq = 0u64;
    let mut w: Option<Window> = None;
    let mut last_progress = Instant::now();
    let mut batch = Vec::new();
    let mut stalled = false;
    while start.elapsed() < deadline_total {
        if w.is_none() && start.elapsed().as_secs_f64() >= c.warmup {
            counters.measuring.set(true);
            w = Some(Window::open(c.server_pid));
        }
        batch.clear();
        for _ in 0..window {
            seq += 1;
            let mut p = payload(c.size, 0);
            p[..8].copy_from_slice(&seq.to_le_bytes());
            p[8..16].copy_from_slice(&(t0.elapsed().as_nanos() as u64).to_le_bytes());
            let (masked, plain) = frames(c.text, &p);
            batch.extend_from_slice(if verbatim { &plain } else { &masked });
        }
        publisher.write_all(&batch).await.expect("publisher write");
        // Wait for every subscriber to have everything but the last window.
        let floor = seq.saturating_sub(window as u64);
        loop {
            let min = progress.borrow().iter().copied().min().unwrap_or(seq);
            if min >= floor {
                last_progress = Instant::now();
                break;
            }
            if last_progress.elapsed() > Duration::from_secs(5) {
                stalled = true;
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), moved.notified()).await;
        }
        if stalled {
            break;
        }
    }
    counters.measuring.set(false);
    let (secs, server_cpu, own_cpu) = w.map_or((0.0, None, 0.0), |w| w.close(c.server_pid));
    stop.set(true);
    for s in subs {
        s.abort();
        let _ = s.await;
    }
    drain.abort();
    let missing = if stalled { 1 } else { 0 };
    let deliveries = counters.messages.get();
    report(
        &c,
        if verbatim {
            "broadcast-raw"
        } else {
            "broadcast"
        },
        &[
            ("window", window as f64),
            ("out_of_order", out_of_order.get() as f64),
            ("stalled", missing as f64),
        ],
        deliveries,
        counters.bytes.get(),
        counters.errors.get(),
        secs,
        server_cpu,
        own_cpu,
        Some(&sorted(latencies.take())),
    );
}

async fn churn(c: Common) {
    let (addr, path) = target(&c.url);
    let counters = Rc::new(Counters::default());
    let deadline = Instant::now() + Duration::from_secs_f64(c.warmup + c.duration);
    let (masked, plain) = frames(c.text, &payload(c.size.max(1), 0));
    let close = frames_close();
    let mut tasks = Vec::new();
    for i in 0..c.connections {
        let (counters, path, masked, plain, close) = (
            counters.clone(),
            path.clone(),
            masked.clone(),
            plain.clone(),
            close.clone(),
        );
        tasks.push(tokio::task::spawn_local(async move {
            let source = 1 + (i % 200) as u8; // spread TIME_WAIT over source addresses
            while Instant::now() < deadline {
                let ok = async {
                    let mut s = open(addr, &path, source).await.ok()?;
                    s.write_all(&masked).await.ok()?;
                    let mut got = vec![0u8; plain.len()];
                    s.read_exact(&mut got).await.ok()?;
                    (got == plain).then_some(())?;
                    s.write_all(&close).await.ok()?;
                    let mut reply = [0u8; 4];
                    s.read_exact(&mut reply).await.ok()?;
                    (reply == [0x88, 0x02, 0x03, 0xe8]).then_some(())
                }
                .await;
                match ok {
                    Some(()) if counters.measuring.get() => {
                        counters.messages.set(counters.messages.get() + 1)
                    }
                    Some(()) => {}
                    None => counters.errors.set(counters.errors.get() + 1),
                }
            }
        }));
    }
    let (secs, server_cpu, own_cpu) = measure(&c, &counters, tasks).await;
    let n = counters.messages.get();
    report(
        &c,
        "churn",
        &[],
        n,
        0,
        counters.errors.get(),
        secs,
        server_cpu,
        own_cpu,
        None,
    );
}

/// A masked close frame with code 1000.
fn frames_close() -> Vec<u8> {
    use sockeye_codec::{Close, CloseCode, encode_close};
    let mut out = [0u8; 16];
    let close = Close {
        code: Some(CloseCode::NORMAL),
        reason: "",
    };
    let n = encode_close(&mut out, &close, Some([1, 2, 3, 4])).unwrap();
    out[..n].to_vec()
}

async fn conns(c: Common, hold: f64, messages: usize) {
    let (addr, path) = target(&c.url);
    let deflate = c.compression.config();
    let offer = deflate.map_or(String::new(), |d| {
        format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            sockeye_codec::deflate::client_offer(&d)
        )
    });
    let rss0 = c.server_pid.and_then(rss_bytes);
    let t0 = Instant::now();
    let mut streams = Vec::with_capacity(c.connections);
    let mut errors = 0u64;
    let mut compressed = 0u64;
    for i in 0..c.connections {
        // Spread source addresses: 20,000 connections per 127.0.0.x.
        match open_with(addr, &path, 1 + (i / 20000) as u8, &offer).await {
            Ok((mut s, resp)) => {
                if let Some(d) = deflate
                    && messages > 0
                {
                    match send_compressed(&mut s, &resp, &d, messages, c.size, i).await {
                        Ok(()) => compressed += messages as u64,
                        Err(e) => {
                            errors += 1;
                            if errors < 5 {
                                eprintln!("connection {i}: {e}");
                            }
                        }
                    }
                }
                streams.push(s)
            }
            Err(e) => {
                errors += 1;
                if errors < 5 {
                    eprintln!("connection {i}: {e}");
                }
            }
        }
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs_f64(hold)).await;
    let rss1 = c.server_pid.and_then(rss_bytes);
    // One echo round trip on every connection: all of them are alive. With compression the
    // message stays under the threshold, so the echo comes back plain.
    let size = if deflate.is_some() { 16 } else { c.size.max(1) };
    let (masked, plain) = frames(false, &payload(size, 0));
    let mut ok = 0u64;
    for s in &mut streams {
        let mut got = vec![0u8; plain.len()];
        if s.write_all(&masked).await.is_ok()
            && s.read_exact(&mut got).await.is_ok()
            && got == plain
        {
            ok += 1;
        } else {
            errors += 1;
        }
    }
    let per_conn = match (rss0, rss1) {
        (Some(a), Some(b)) if !streams.is_empty() => {
            Some((b as f64 - a as f64) / streams.len() as f64)
        }
        _ => None,
    };
    println!(
        "conns: {} open ({} echoed, {compressed} compressed messages before), connect rate {:.0}/s, server RSS {} -> {} ({}), errors {errors}",
        streams.len(),
        ok,
        streams.len() as f64 / connect_secs,
        rss0.map_or("?".into(), |v| format!("{:.1} MiB", v as f64 / 1048576.0)),
        rss1.map_or("?".into(), |v| format!("{:.1} MiB", v as f64 / 1048576.0)),
        per_conn.map_or("?".into(), |v| format!("{v:.0} B per connection")),
    );
    println!(
        "{{\"mode\":\"conns\",\"label\":\"{}\",\"connections\":{},\"echoed\":{ok},\"compressed\":{compressed},\"connect_per_s\":{:.0},\"rss_before\":{},\"rss_after\":{},\"rss_per_conn\":{},\"errors\":{errors}}}",
        c.label,
        streams.len(),
        streams.len() as f64 / connect_secs,
        rss0.unwrap_or(0),
        rss1.unwrap_or(0),
        per_conn.map_or(-1.0, |v| v),
    );
}

/// Sends `n` distinct compressed JSON messages of `size` bytes on a connection whose upgrade
/// response is `resp`, reading each echo (one frame) back.
async fn send_compressed(
    s: &mut TcpStream,
    resp: &str,
    config: &sockeye_codec::deflate::DeflateConfig,
    n: usize,
    size: usize,
    conn: usize,
) -> std::io::Result<()> {
    use sockeye_codec::deflate::{PerMessageDeflate, Pool, accept_response};
    use sockeye_codec::{Header, OpCode, Role};
    let values = resp.lines().filter_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("sec-websocket-extensions")
            .then_some(value.trim())
    });
    let agreed = accept_response(values, config)
        .map_err(std::io::Error::other)?
        .ok_or_else(|| std::io::Error::other("the server declined permessage-deflate"))?;
    let mut pmd = PerMessageDeflate::new(Role::Client, &agreed, config);
    let mut pool = Pool::new(1);
    let key = [0x11, 0x22, 0x33, 0x44];
    for m in 0..n {
        let mut wire = Vec::new();
        pmd.compress(&json_payload(size, conn * n + m), &mut wire, &mut pool);
        let header = Header {
            rsv1: true,
            mask: Some(key),
            ..Header::new(OpCode::Text, wire.len() as u64)
        };
        let mut frame = vec![0u8; 14];
        let h = header.encode(&mut frame).map_err(std::io::Error::other)?;
        frame.truncate(h);
        let at = frame.len();
        frame.extend_from_slice(&wire);
        sockeye_codec::apply_mask(&mut frame[at..], key, 0);
        s.write_all(&frame).await?;
        // The echo: one frame, compressed or not; only its length matters here.
        let mut head = vec![0u8; 2];
        s.read_exact(&mut head).await?;
        let len = loop {
            match Header::parse(&head).map_err(std::io::Error::other)? {
                sockeye_codec::Status::Complete((h, _)) => break h.payload_len as usize,
                sockeye_codec::Status::Partial { needed } => {
                    let at = head.len();
                    head.resize(at + needed, 0);
                    s.read_exact(&mut head[at..]).await?;
                }
            }
        };
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await?;
    }
    Ok(())
}

/// `v`, sorted (for percentiles).
fn sorted(mut v: Vec<u32>) -> Vec<u32> {
    v.sort_unstable();
    v
}

#[allow(clippy::too_many_arguments)]
fn report(
    c: &Common,
    mode: &str,
    extra: &[(&str, f64)],
    msgs: u64,
    bytes: u64,
    errors: u64,
    secs: f64,
    server_cpu: Option<f64>,
    own_cpu: f64,
    lat: Option<&[u32]>,
) {
    let rate = msgs as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    let ns = |cpu: f64| {
        if msgs > 0 {
            cpu * 1e9 / msgs as f64
        } else {
            0.0
        }
    };
    let (p50, p99, p999) = lat.map_or((0, 0, 0), |l| {
        (
            percentile(l, 0.5),
            percentile(l, 0.99),
            percentile(l, 0.999),
        )
    });
    println!(
        "{mode}: {} conns, {} B: {:.0} msg/s, {:.1} MB/s, latency p50 {p50} us p99 {p99} us p999 {p999} us, errors {errors}, server cpu {} per msg, load cpu {:.0} ns per msg ({:.0}% of a core)",
        c.connections,
        c.size,
        rate,
        mbps,
        server_cpu.map_or("?".to_string(), |s| format!(
            "{:.0} ns ({:.0}% of a core)",
            ns(s),
            s / secs * 100.0
        )),
        ns(own_cpu),
        own_cpu / secs * 100.0,
    );
    let extra: String = extra.iter().map(|(k, v)| format!(",\"{k}\":{v}")).collect();
    println!(
        "{{\"mode\":\"{mode}\",\"label\":\"{}\",\"connections\":{},\"size\":{},\"msgs_per_s\":{rate:.0},\"mb_per_s\":{mbps:.1},\"p50_us\":{p50},\"p99_us\":{p99},\"p999_us\":{p999},\"errors\":{errors},\"server_cpu_ns_per_msg\":{},\"server_cpu_share\":{},\"load_cpu_ns_per_msg\":{:.0},\"load_cpu_share\":{:.3}{extra}}}",
        c.label,
        c.connections,
        c.size,
        server_cpu.map_or(-1.0, ns),
        server_cpu.map_or(-1.0, |s| s / secs),
        ns(own_cpu),
        own_cpu / secs,
    );
}
