//! `sockeye`: the command-line server.
//!
//! ```text
//! sockeye serve [--bind 127.0.0.1:9001] [--mode echo|broadcast] [--workers N] [--engine auto|uring|poll] ...
//! sockeye connect ws://127.0.0.1:9001/ [--binary] [--subprotocol P] [--header 'Name: value']
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use sockeye_server::{
    Broadcast, Compression, Config, Echo, Engine, Handler, Message, OwnedMessage, Server,
    SlowPolicy, WebSocket,
};

/// The demo page served on `GET /` (self-contained: no CDN, no build step).
const DEMO_PAGE: &str = include_str!("demo.html");

#[derive(Parser)]
#[command(
    name = "sockeye",
    version,
    about = "A fast, correct WebSocket server on io_uring"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// What the log shows: a level (error, warn, info, debug, trace) or tracing filter
    /// directives ("info,sockeye_server=debug"). Overrides the RUST_LOG environment variable,
    /// which is used when this is not given (default: info).
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log lines as text (coloured only on a terminal, and never with NO_COLOR set) or as JSON
    /// objects, one per line.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the WebSocket server.
    Serve(ServeArgs),
    /// Connect to a WebSocket server: stdin goes out as messages (a text message per line, or
    /// with --binary the bytes exactly as read, in messages of up to --chunk-size), received
    /// messages are printed (text as lines, binary as raw bytes). At the end of stdin the
    /// connection is closed normally (after --linger, or never with --no-close).
    ///
    /// Exit status: 0 when the connection ended with a normal close from either side (1000,
    /// 1001 going away, or a close frame without a code); 1 when it could not be made or ended
    /// otherwise (another close code, a protocol error, a reset, stdout closed); 2 for bad
    /// arguments.
    Connect(ConnectArgs),
}

#[derive(clap::Args)]
struct ConnectArgs {
    /// The server's URL (ws:// or http://).
    url: String,
    /// Send stdin as binary messages, byte for byte (no line splitting): each read of up to
    /// --chunk-size bytes goes out as one message.
    #[arg(long)]
    binary: bool,
    /// Largest binary message --binary sends (bytes; KiB/MiB suffixes allowed).
    #[arg(long, value_parser = parse_size, default_value = "64KiB")]
    chunk_size: u64,
    /// After the end of stdin, keep printing what arrives for this long before closing
    /// (e.g. 2s: `echo hi | sockeye connect --linger 2s ws://host/chat/room` shows the
    /// room's traffic).
    #[arg(long, value_parser = parse_duration, conflicts_with = "no_close")]
    linger: Option<Duration>,
    /// Do not close at the end of stdin: print what arrives until the server closes or the
    /// process is interrupted.
    #[arg(long)]
    no_close: bool,
    /// Send a ping this often (0: never) while connected.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    ping_interval: Duration,
    /// Offer this subprotocol (repeatable, in order of preference).
    #[arg(long = "subprotocol", value_name = "NAME")]
    subprotocol: Vec<String>,
    /// Add a request header, as `Name: value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "HEADER")]
    header: Vec<String>,
    /// Send this Origin header.
    #[arg(long)]
    origin: Option<String>,
    /// Time allowed to connect and to complete the handshake (each).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Largest message accepted (bytes; KiB/MiB suffixes allowed).
    #[arg(long, value_parser = parse_size, default_value = "16MiB")]
    max_message: u64,
    /// Offer permessage-deflate: off, takeover or no-takeover.
    #[arg(long, value_enum, default_value = "off")]
    compression: CompressionMode,
    /// Print the subprotocol and close details on stderr.
    #[arg(long, short = 'v')]
    verbose: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    /// Echo every message to its sender.
    Echo,
    /// Send every message to every connection.
    Broadcast,
}

#[derive(Clone, Copy, ValueEnum)]
enum Slow {
    /// Close slow subscribers with 1008.
    Close,
    /// Drop messages for slow subscribers.
    Drop,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on: IP:PORT, HOST:PORT (a name, resolved once at start, IPv4 first) or
    /// :PORT (the default host, 127.0.0.1, with that port).
    #[arg(long, value_parser = parse_bind, default_value = "127.0.0.1:9001")]
    bind: SocketAddr,
    /// Port on the default host (overrides the port of --bind).
    #[arg(long)]
    port: Option<u16>,
    /// Share the port with listeners already on it instead of refusing to start ("address in
    /// use"). For a restart that never leaves the port without a listener: start the new
    /// server with --reuse-port, then send the old one SIGTERM (while it drains, the requests
    /// the kernel still hands it get 503; once it exits, the new one takes them all).
    #[arg(long)]
    reuse_port: bool,
    /// Serve /metrics (and /healthz) on this address of their own (IP:PORT, HOST:PORT or
    /// :PORT) instead of the WebSocket port, which keeps answering /healthz.
    #[arg(long, value_parser = parse_bind, value_name = "ADDR", conflicts_with = "no_metrics")]
    metrics_bind: Option<SocketAddr>,
    /// Most WebSocket connections open at once (default: no limit but the descriptor limit);
    /// past it, upgrades get 503 (counted in /metrics as connection_limit).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Worker threads, each with its own event loop (default: one per core; at least 1).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// I/O engine: uring (io_uring), poll (readiness polling, epoll), or auto: io_uring when
    /// the kernel allows it and poll otherwise (said once in the log). SOCKEYE_ENGINE=uring|poll
    /// overrides auto.
    // Parsed by `Engine`'s `FromStr`, the same names as the variable.
    #[arg(long, default_value = "auto")]
    engine: Engine,
    /// What the server does with messages: echo them, or broadcast them to the room named by
    /// the URL path (`ws://host/chat/lobby` and `ws://host/chat/dev` are separate rooms).
    #[arg(long, value_enum, default_value = "echo")]
    mode: Mode,
    /// Largest message accepted (bytes; KiB/MiB suffixes allowed); larger ones close with 1009.
    #[arg(long, value_parser = parse_size, default_value = "16MiB")]
    max_message: u64,
    /// Allow cross-origin requests from origins matching this host glob (repeatable).
    #[arg(long = "allow-origin", value_name = "PATTERN")]
    allow_origin: Vec<String>,
    /// Accept every origin (development only).
    #[arg(long)]
    insecure_skip_origin_check: bool,
    /// Supported subprotocol, in order of preference (repeatable).
    #[arg(long = "subprotocol", value_name = "NAME")]
    subprotocol: Vec<String>,
    /// Time allowed for the upgrade request (e.g. 10s, 500ms).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    handshake_timeout: Duration,
    /// Silence before a ping; as long again without a pong closes with 1001 (0: no keepalive).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    idle_timeout: Duration,
    /// Bytes queued for sending per connection before backpressure applies.
    #[arg(long, value_parser = parse_size, default_value = "1MiB")]
    max_backpressure: u64,
    /// Hard bound on bytes queued per connection (default: 4 × --max-backpressure); a send
    /// past it is handled by --slow-policy (close with 1008, or drop the message).
    #[arg(long, value_parser = parse_size)]
    max_send_queue: Option<u64>,
    /// What broadcast does with subscribers over the backpressure bound.
    #[arg(long, value_enum, default_value = "close")]
    slow_policy: Slow,
    /// How long a close waits for the peer's close frame before the socket is closed; also how
    /// long a shutdown (SIGINT/SIGTERM) waits for connections to close. A second signal exits
    /// at once.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    close_timeout: Duration,
    /// Interval of the one-line summary in the log (0 turns it off).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    stats_interval: Duration,
    /// permessage-deflate: off, takeover (context takeover where the client allows it) or
    /// no-takeover (each message compressed on its own).
    #[arg(long, value_enum, default_value = "off")]
    compression: CompressionMode,
    /// Messages shorter than this go out uncompressed (default 128 B with takeover, 512 B
    /// without; KiB suffixes allowed).
    #[arg(long, value_parser = parse_size)]
    compression_threshold: Option<u64>,
    /// Do not serve the demo page (`GET /` then answers 426, and `/chat/...` and `/echo`
    /// follow --mode like every other path).
    #[arg(long)]
    no_demo: bool,
    /// Most broadcast rooms at once (a connection that would open one more closes with 1013).
    #[arg(long, default_value_t = 10_000)]
    max_rooms: usize,
    /// Longest room name (the URL path), in bytes; longer ones close with 1008.
    #[arg(long, value_parser = parse_size, default_value = "256")]
    max_room_name: u64,
    /// Join a cluster through this NATS server (`nats://[user:pass@]host:port`; repeatable for
    /// several seeds): room messages reach the rooms' members on every node.
    #[arg(long = "cluster", value_name = "URL")]
    cluster: Vec<String>,
    /// NATS credentials file (`.creds`) for --cluster.
    #[arg(long, value_name = "FILE")]
    cluster_credentials: Option<std::path::PathBuf>,
    /// NATS subject prefix of the rooms (every node of a cluster must use the same).
    #[arg(long, default_value = "sockeye.room")]
    cluster_prefix: String,
    /// Do not answer `GET /metrics` (Prometheus) and `GET /healthz`.
    #[arg(long)]
    no_metrics: bool,
}

/// What `sockeye serve` runs. Paths follow `--mode` (in broadcast mode each path is a room),
/// except that with the demo page on, `/chat/...` are rooms and `/echo` echoes in either mode:
/// the two panels of the page.
struct Serve {
    broadcast: bool,
    demo: bool,
}

impl Serve {
    fn broadcasts(&self, path: &str) -> bool {
        let path = path.split('?').next().unwrap_or_default();
        if self.demo && (path == "/chat" || path.starts_with("/chat/")) {
            return true;
        }
        if self.demo && path == "/echo" {
            return false;
        }
        self.broadcast
    }
}

impl Handler for Serve {
    fn on_open(&mut self, ws: &mut WebSocket<'_>) {
        if self.broadcasts(ws.request_path().unwrap_or("/")) {
            Broadcast.on_open(ws);
        }
    }

    fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
        match ws.subscribed() {
            true => Broadcast.on_message(ws, msg),
            false => Echo.on_message(ws, msg),
        }
    }

    fn on_message_owned(&mut self, ws: &mut WebSocket<'_>, msg: OwnedMessage) {
        match ws.subscribed() {
            true => Broadcast.on_message_owned(ws, msg),
            false => Echo.on_message_owned(ws, msg),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionMode {
    /// No compression.
    Off,
    /// Context takeover both ways where the peer allows it.
    Takeover,
    /// Every message compressed on its own.
    NoTakeover,
}

impl From<CompressionMode> for Compression {
    fn from(m: CompressionMode) -> Self {
        match m {
            CompressionMode::Off => Compression::Disabled,
            CompressionMode::Takeover => Compression::ContextTakeover,
            CompressionMode::NoTakeover => Compression::NoContextTakeover,
        }
    }
}

/// Parses `10s`, `500ms`, `2m` or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (try 10s or 500ms)"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// `--metrics-bind`: answers `GET /metrics` and `GET /healthz` on its own listener
/// ([`sockeye_server::Metrics::respond`]), one request per connection, one connection at a time
/// (a scrape is small and rare), each bounded to 8 KiB of request and 5 s of reading and
/// writing.
fn serve_metrics(listener: &std::net::TcpListener, metrics: &sockeye_server::Metrics) {
    use std::io::{Read, Write};
    for stream in listener.incoming() {
        let Ok(mut s) = stream else { continue };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
        let mut request = Vec::with_capacity(512);
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        let _ = s.write_all(&metrics.respond(&request));
    }
}

/// `connect --binary`: stdin exactly as read, each read of up to `chunk` bytes one binary
/// message; an error only when the connection refused a write.
fn send_bytes(
    mut input: impl std::io::Read,
    chunk: usize,
    writer: &sockeye_server::client::Writer,
) -> Result<(), sockeye_server::client::Error> {
    let mut buf = vec![0u8; chunk.min(1 << 20)];
    loop {
        match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => writer.write_binary(&buf[..n])?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("sockeye: reading stdin: {e}");
                return Ok(());
            }
        }
    }
}

/// `connect` in text mode: a text message per line (without its `\n` or `\r\n`); lines
/// that are not UTF-8 are skipped with a warning.
fn send_lines(
    input: impl std::io::BufRead,
    writer: &sockeye_server::client::Writer,
) -> Result<(), sockeye_server::client::Error> {
    for line in input.split(b'\n') {
        let Ok(mut line) = line else { break };
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        match String::from_utf8(line) {
            Ok(text) => writer.write_text(&text)?,
            Err(_) => eprintln!("sockeye: skipped a line that is not UTF-8 (use --binary)"),
        }
    }
    Ok(())
}

/// `--bind`: `IP:PORT`, `HOST:PORT` (resolved now: its first IPv4 address, else its first) or
/// `:PORT` on the default host.
fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let s = s.trim();
    if let Some(port) = s.strip_prefix(':') {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("{port:?} is not a port number (0-65535)"))?;
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if !s.contains(':') {
        return Err(format!(
            "{s:?} has no port: use HOST:PORT, IP:PORT or :PORT"
        ));
    }
    let addrs: Vec<SocketAddr> = s
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {s:?}: {e}"))?
        .collect();
    // IPv4 first, so `localhost:PORT` is 127.0.0.1 whatever order the resolver gives.
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| format!("{s:?} resolves to no address"))
}

/// Parses `65536`, `64KiB`, `16MiB`, `1GiB` (also KB/MB/GB as the binary units).
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("not a size: {s:?} (try 16MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = match &cli.log_level {
        Some(directives) => match EnvFilter::try_new(directives) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("sockeye: --log-level {directives:?}: {e}");
                return ExitCode::from(2);
            }
        },
        // The NATS client logs every reconnect attempt at info; the cluster bridge says what
        // matters (not clustered, lost, back) itself.
        None => EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn")),
    };
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => log.with_ansi(colour).init(),
        LogFormat::Json => log.json().init(),
    }
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Connect(args) => connect(args),
    }
}

fn connect(args: ConnectArgs) -> ExitCode {
    use sockeye_server::client::{self, DialOptions, Message};
    use std::io::Write;

    if args.chunk_size == 0 || args.chunk_size > args.max_message {
        eprintln!(
            "sockeye: --chunk-size must be between 1 byte and --max-message ({} bytes)",
            args.max_message
        );
        return ExitCode::from(2);
    }
    let mut options = DialOptions::new()
        .connect_timeout(args.timeout)
        .handshake_timeout(args.timeout)
        .read_limit(Some(args.max_message))
        .compression(args.compression.into());
    for p in &args.subprotocol {
        options = options.protocol(p);
    }
    for h in &args.header {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("sockeye: --header {h:?}: expected `Name: value`");
            return ExitCode::from(2);
        };
        options = options.header(name.trim(), value.trim());
    }
    if let Some(o) = &args.origin {
        options = options.origin(o);
    }
    let mut conn = match client::dial(&args.url, &options) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockeye: {}: {e}", args.url);
            return ExitCode::FAILURE;
        }
    };
    if args.verbose {
        let extensions = conn
            .response_headers()
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("sec-websocket-extensions"))
            .map_or("none", |(_, v)| v.as_str());
        eprintln!(
            "sockeye: connected to {} (subprotocol: {}, extensions: {extensions})",
            conn.peer_addr(),
            conn.subprotocol().unwrap_or("none")
        );
    }
    let writer = conn.writer().clone();
    if !args.ping_interval.is_zero() {
        let (pinger, every) = (writer.clone(), args.ping_interval);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(every);
                if pinger.send_ping(b"sockeye").is_err() {
                    return; // closed: the reading side reports how
                }
            }
        });
    }
    let (binary, chunk) = (
        args.binary,
        usize::try_from(args.chunk_size).unwrap_or(usize::MAX),
    );
    let (linger, no_close) = (args.linger, args.no_close);
    std::thread::spawn(move || {
        let stdin = std::io::stdin().lock();
        let sent = if binary {
            send_bytes(stdin, chunk, &writer)
        } else {
            send_lines(stdin, &writer)
        };
        if sent.is_err() || no_close {
            return; // the reading side reports how the connection ended, or waits for it
        }
        if let Some(d) = linger {
            std::thread::sleep(d);
        }
        // End of input: close normally; the main thread prints what arrives until the close.
        let _ = writer.close(sockeye_server::CloseCode::NORMAL, "");
    });
    let mut stdout = std::io::stdout().lock();
    let end = loop {
        let printed = match conn.read() {
            Ok(Message::Text(t)) => writeln!(stdout, "{t}"),
            Ok(Message::Binary(b)) => stdout.write_all(&b),
            Err(e) => break e,
        };
        if printed.and_then(|()| stdout.flush()).is_err() {
            conn.close_now();
            return ExitCode::FAILURE; // stdout is gone (a closed pipe)
        }
    };
    drop(stdout);
    if end.is_normal_close() {
        if args.verbose {
            eprintln!("sockeye: {end}");
        }
        ExitCode::SUCCESS
    } else {
        eprintln!("sockeye: {end}");
        ExitCode::FAILURE
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let mut bind = args.bind;
    if let Some(port) = args.port {
        bind.set_port(port);
    }
    let mut config = Config::new(bind)
        .max_message(args.max_message)
        .insecure_skip_origin_check(args.insecure_skip_origin_check)
        .handshake_timeout(args.handshake_timeout)
        .close_timeout(args.close_timeout)
        .idle_timeout(args.idle_timeout)
        .max_backpressure(usize::try_from(args.max_backpressure).unwrap_or(usize::MAX))
        .slow_policy(match args.slow_policy {
            Slow::Close => SlowPolicy::Close,
            Slow::Drop => SlowPolicy::Drop,
        })
        .compression(args.compression.into())
        .metrics(!args.no_metrics)
        .reuse_port(args.reuse_port)
        .max_rooms(args.max_rooms)
        .max_room_name(usize::try_from(args.max_room_name).unwrap_or(usize::MAX));
    if let Some(bound) = args.max_send_queue {
        config = config.max_send_queue(usize::try_from(bound).unwrap_or(usize::MAX));
    }
    if !args.no_demo {
        config = config.page("/", "text/html; charset=utf-8", DEMO_PAGE);
    }
    #[cfg(feature = "cluster")]
    if let Some((first, rest)) = args.cluster.split_first() {
        let mut cluster =
            sockeye_server::ClusterConfig::new(first).subject_prefix(&args.cluster_prefix);
        for url in rest {
            cluster = cluster.url(url);
        }
        if let Some(path) = &args.cluster_credentials {
            cluster = cluster.credentials_file(path);
        }
        config = config.cluster(cluster);
    }
    #[cfg(not(feature = "cluster"))]
    if !args.cluster.is_empty() {
        eprintln!("sockeye: --cluster needs a build with the `cluster` feature");
        return ExitCode::from(2);
    }
    if let Some(t) = args.compression_threshold {
        config = config.compression_threshold(usize::try_from(t).unwrap_or(usize::MAX));
    }
    if let Some(n) = args.max_connections {
        config = config.max_connections(n);
    }
    if let Some(n) = args.workers {
        config = config.workers(usize::from(n));
    }
    config = config.engine(args.engine);
    for o in args.allow_origin {
        config = config.allow_origin(o);
    }
    for p in args.subprotocol {
        config = config.subprotocol(p);
    }
    // Block SIGINT/SIGTERM before any worker starts, so only the signal thread sees them.
    let mut signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sockeye: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Bound before the workers start, so a taken address fails the start.
    let metrics_listener = match args.metrics_bind {
        Some(addr) => match std::net::TcpListener::bind(addr) {
            Ok(l) => {
                config = config.metrics_path(false);
                Some(l)
            }
            Err(e) => {
                eprintln!("sockeye: cannot listen for metrics on {addr}: {e}");
                return ExitCode::FAILURE;
            }
        },
        None => None,
    };
    let (broadcast, demo) = (matches!(args.mode, Mode::Broadcast), !args.no_demo);
    let started = Server::start(config, move |_| Serve { broadcast, demo });
    let server = match started {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sockeye: cannot start the server on {bind}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(listener) = metrics_listener {
        let metrics = server.metrics_handle();
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(url = %format!("http://{addr}/metrics"), "metrics");
        }
        let spawned = std::thread::Builder::new()
            .name("metrics".into())
            .spawn(move || serve_metrics(&listener, &metrics));
        if let Err(e) = spawned {
            eprintln!("sockeye: cannot start the metrics thread: {e}");
            server.shutdown();
            let _ = server.join();
            return ExitCode::FAILURE;
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(sig) = signals.next() {
            let _ = tx.send(sig);
        }
        // A second signal while draining: exit now, as a shell user pressing ^C twice means.
        if let Some(sig) = signals.next() {
            tracing::warn!(
                signal = sig,
                "second signal: exiting without waiting for connections"
            );
            std::process::exit(128 + sig);
        }
    });
    let mode = match args.mode {
        Mode::Echo => "echo",
        Mode::Broadcast => "broadcast",
    };
    tracing::info!(url = %format!("ws://{}", server.local_addr()), mode, "sockeye serving");
    if demo {
        tracing::info!(page = %format!("http://{}/", server.local_addr()), "demo page");
    }
    let interval = (!args.stats_interval.is_zero()).then_some(args.stats_interval);
    let mut last_in = 0u64;
    let mut last = std::time::Instant::now();
    loop {
        let wait = interval.unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(sig) => {
                tracing::info!(signal = sig, "shutting down: closing connections with 1001");
                break;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let sum = |f: fn(&sockeye_server::WorkerStats) -> u64| -> u64 {
                    server.stats().iter().map(f).sum()
                };
                use std::sync::atomic::Ordering::Relaxed;
                let conns = sum(|s| s.connections.load(Relaxed));
                let msgs = sum(|s| s.messages_in.load(Relaxed));
                let out = sum(|s| s.messages_out.load(Relaxed));
                let secs = last.elapsed().as_secs_f64();
                last = std::time::Instant::now();
                let rate = (msgs - last_in) as f64 / secs;
                last_in = msgs;
                tracing::info!(
                    connections = conns,
                    msgs_in_per_s = rate as u64,
                    msgs_in = msgs,
                    msgs_out = out,
                    "stats"
                );
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    server.shutdown();
    match server.join() {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sockeye: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1TiB").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
    }
}
