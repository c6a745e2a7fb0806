//! `client-bench`: echo round trips per second driven by one WebSocket client implementation,
//! against whatever server runs at `--url`, with the client's own CPU time per round trip.
//!
//! ```text
//! client-bench --impl sockeye-uring     -c 64 -s 16 -d 5   # sockeye's io_uring runtime, client role
//! client-bench --impl tokio-tungstenite -c 64 -s 16 -d 5   # tokio current_thread, one task each
//! client-bench --impl sockeye-blocking  -c 4  -s 16 -d 5   # sockeye::client::dial, a thread each
//! client-bench --impl tungstenite       -c 4  -s 16 -d 5   # tungstenite's blocking client
//! ```
//!
//! Each connection keeps one message in flight and checks every echoed byte. Pin the process
//! (taskset) to compare implementations on one core; `scripts/bench-clients.sh` does that.

// One unsafe call (getrusage) for the client's own CPU time.
#![allow(unsafe_code)]

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};

#[derive(Clone, Copy, ValueEnum, PartialEq)]
enum Impl {
    /// sockeye-server's io_uring event loop with outbound connections (one worker).
    SockeyeUring,
    /// tokio-tungstenite on a current_thread runtime.
    TokioTungstenite,
    /// sockeye-server's blocking client, one thread per connection.
    SockeyeBlocking,
    /// tungstenite's blocking client, one thread per connection.
    Tungstenite,
}

#[derive(Parser)]
#[command(about = "Echo round trips/s of one WebSocket client implementation")]
struct Cli {
    #[arg(long = "impl", value_enum)]
    imp: Impl,
    /// Server URL (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:9001/")]
    url: String,
    /// Connections.
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// Payload bytes.
    #[arg(short = 's', long, default_value_t = 16)]
    size: usize,
    /// Seconds measured after the warm-up.
    #[arg(short = 'd', long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
}

/// Counters every driver updates; the main thread reads them around the measured window.
#[derive(Default)]
struct Shared {
    round_trips: AtomicU64,
    errors: AtomicU64,
    stop: AtomicBool,
}

fn payload(size: usize, seed: usize) -> Vec<u8> {
    (0..size).map(|i| (i * 7 + seed * 13) as u8).collect()
}

fn main() {
    let cli = Cli::parse();
    let shared = Arc::new(Shared::default());
    let driver = {
        let shared = shared.clone();
        let (url, c, size) = (cli.url.clone(), cli.connections, cli.size);
        let imp = cli.imp;
        std::thread::spawn(move || match imp {
            Impl::SockeyeUring => uring(&url, c, size, &shared),
            Impl::TokioTungstenite => tokio_tungstenite_client(&url, c, size, &shared),
            Impl::SockeyeBlocking => {
                threads(c, &shared, |i, sh| sockeye_blocking(&url, size, i, sh))
            }
            Impl::Tungstenite => {
                threads(c, &shared, |i, sh| tungstenite_blocking(&url, size, i, sh))
            }
        })
    };
    std::thread::sleep(Duration::from_secs_f64(cli.warmup));
    let (n0, cpu0, t0) = (
        shared.round_trips.load(Relaxed),
        own_cpu_seconds(),
        Instant::now(),
    );
    std::thread::sleep(Duration::from_secs_f64(cli.duration));
    let (n1, cpu1, secs) = (
        shared.round_trips.load(Relaxed),
        own_cpu_seconds(),
        t0.elapsed().as_secs_f64(),
    );
    shared.stop.store(true, Relaxed);
    let _ = driver.join();
    let n = n1 - n0;
    let rate = n as f64 / secs;
    let cpu_ns = (cpu1 - cpu0) * 1e9 / n.max(1) as f64;
    let name = cli.imp.to_possible_value().unwrap().get_name().to_owned();
    let errors = shared.errors.load(Relaxed);
    println!(
        "{name}: {:.0} round trips/s, client CPU {:.0} ns per round trip ({:.2} cores), {errors} errors",
        rate,
        cpu_ns,
        (cpu1 - cpu0) / secs
    );
    println!(
        "{{\"impl\":\"{name}\",\"connections\":{},\"size\":{},\"round_trips_per_s\":{rate:.1},\"client_cpu_ns_per_rt\":{cpu_ns:.1},\"client_cores\":{:.3},\"errors\":{errors}}}",
        cli.connections,
        cli.size,
        (cpu1 - cpu0) / secs
    );
    if errors > 0 || n == 0 {
        std::process::exit(1);
    }
}

fn threads(c: usize, shared: &Arc<Shared>, f: impl Fn(usize, &Shared) + Send + Sync + Copy) {
    std::thread::scope(|s| {
        for i in 0..c {
            s.spawn(move || f(i, shared));
        }
    });
}

fn sockeye_blocking(url: &str, size: usize, i: usize, sh: &Shared) {
    use sockeye_server::client::{self, DialOptions};
    let mut conn = client::dial(url, &DialOptions::new()).expect("dial");
    let msg = payload(size, i);
    let mut back = Vec::with_capacity(size);
    while !sh.stop.load(Relaxed) {
        conn.write_binary(&msg).expect("write");
        back.clear();
        conn.read_into(&mut back).expect("read");
        if back != msg {
            sh.errors.fetch_add(1, Relaxed);
        }
        sh.round_trips.fetch_add(1, Relaxed);
    }
    let _ = conn.close(sockeye_server::CloseCode::NORMAL, "");
}

fn tungstenite_blocking(url: &str, size: usize, i: usize, sh: &Shared) {
    use tungstenite::Message;
    let uri: tungstenite::http::Uri = url.parse().expect("url");
    let addr = format!(
        "{}:{}",
        uri.host().expect("host"),
        uri.port_u16().unwrap_or(80)
    );
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut ws, _) = tungstenite::client(url, stream).expect("handshake");
    let msg = payload(size, i);
    while !sh.stop.load(Relaxed) {
        ws.send(Message::binary(msg.clone())).expect("write");
        match ws.read().expect("read") {
            Message::Binary(b) if b[..] == msg[..] => {}
            _ => {
                sh.errors.fetch_add(1, Relaxed);
            }
        }
        sh.round_trips.fetch_add(1, Relaxed);
    }
    let _ = ws.close(None);
    let _ = ws.flush();
}

fn tokio_tungstenite_client(url: &str, c: usize, size: usize, shared: &Arc<Shared>) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..c {
            let stream = tokio::net::TcpStream::connect(addr_of(url))
                .await
                .expect("connect");
            stream.set_nodelay(true).expect("nodelay");
            let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
                .await
                .expect("handshake");
            let shared = shared.clone();
            tasks.push(tokio::spawn(async move {
                let msg = payload(size, i);
                while !shared.stop.load(Relaxed) {
                    ws.send(Message::binary(msg.clone())).await.expect("write");
                    match ws.next().await {
                        Some(Ok(Message::Binary(b))) if b[..] == msg[..] => {}
                        _ => {
                            shared.errors.fetch_add(1, Relaxed);
                        }
                    }
                    shared.round_trips.fetch_add(1, Relaxed);
                }
                let _ = ws.close(None).await;
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

fn addr_of(url: &str) -> String {
    let uri: tungstenite::http::Uri = url.parse().expect("url");
    format!(
        "{}:{}",
        uri.host().expect("host"),
        uri.port_u16().unwrap_or(80)
    )
}

/// The io_uring runtime in the client role: one worker, `c` outbound connections, each
/// sending the next message when the echo of the last arrives.
fn uring(url: &str, c: usize, size: usize, shared: &Arc<Shared>) {
    use sockeye_server::{Config, Connect, Handler, Message, Server, WebSocket};

    struct Driver {
        shared: Arc<Shared>,
        messages: Vec<Vec<u8>>,
    }

    impl Handler for Driver {
        fn on_open(&mut self, ws: &mut WebSocket<'_>) {
            let i = ws.token().expect("outbound") as usize;
            let _ = ws.send_binary(&self.messages[i]);
        }

        fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
            let i = ws.token().expect("outbound") as usize;
            if msg.as_bytes() != self.messages[i] {
                self.shared.errors.fetch_add(1, Relaxed);
            }
            self.shared.round_trips.fetch_add(1, Relaxed);
            if !self.shared.stop.load(Relaxed) {
                let _ = ws.send_binary(&self.messages[i]);
            }
        }

        fn on_connect_error(&mut self, token: u64, error: std::io::Error) {
            eprintln!("connection {token}: {error}");
            self.shared.errors.fetch_add(1, Relaxed);
        }
    }

    let config = Config::new("127.0.0.1:0".parse().expect("addr"))
        .listen(false)
        .workers(1);
    let messages: Vec<Vec<u8>> = (0..c).map(|i| payload(size, i)).collect();
    let driver_shared = shared.clone();
    let rt = Server::start(config, move |_| Driver {
        shared: driver_shared.clone(),
        messages: messages.clone(),
    })
    .expect("io_uring runtime");
    for i in 0..c {
        let connect = Connect::new(url).expect("url").token(i as u64);
        rt.connect(connect).expect("connect");
    }
    while !shared.stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
    rt.shutdown();
    let _ = rt.join();
}

fn own_cpu_seconds() -> f64 {
    // SAFETY: rusage is plain integers, for which all-zero bytes are a valid value.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a valid out-pointer for getrusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}
