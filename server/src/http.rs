//! Plain HTTP on the WebSocket port: configured pages, `/metrics` and `/healthz`. Each answer
//! is one complete response with `Connection: close`; anything else that is not an upgrade
//! keeps getting 426 Upgrade Required.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed};

use crate::config::Config;
use crate::hub::{CLOSE_SLOTS, Hub, Refusal, WorkerStats, close_slot_label};

/// The Prometheus text exposition format, version 0.0.4.
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The response to a complete plain request at the start of `buf`, if one of the routes
/// serves it (`GET` or `HEAD`; the query string is ignored).
pub(crate) fn respond(config: &Config, hub: &Hub, buf: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let Ok(httparse::Status::Complete(_)) = req.parse(buf) else {
        return None;
    };
    let head = match req.method? {
        "GET" => false,
        "HEAD" => true,
        _ => return None,
    };
    let path = req.path?.split(['?', '#']).next().unwrap_or_default();
    let (status, content_type, body) = match metrics_route(config, hub, path, config.metrics_path) {
        Some(route) => route,
        None => {
            let page = config.pages.iter().find(|p| p.path == path)?;
            match hub.shutdown.load(Acquire) {
                // Like /healthz: a draining server sends browsers elsewhere.
                true => (503, TEXT, "shutting down\n".into()),
                false => (200, page.content_type.as_str(), page.body.clone()),
            }
        }
    };
    Some(response(status, content_type, &body, head))
}

const TEXT: &str = "text/plain; charset=utf-8";

/// `/metrics` (when `with_metrics`) and `/healthz`, if metrics are on and `path` is one.
fn metrics_route(
    config: &Config,
    hub: &Hub,
    path: &str,
    with_metrics: bool,
) -> Option<(u16, &'static str, bytes::Bytes)> {
    match path {
        "/metrics" if config.metrics && with_metrics => Some((
            200,
            PROMETHEUS,
            render_metrics(config, hub).into_bytes().into(),
        )),
        "/healthz" if config.metrics => Some(match hub.shutdown.load(Acquire) {
            false => (200, TEXT, "ok\n".into()),
            true => (503, TEXT, "shutting down\n".into()),
        }),
        _ => None,
    }
}

/// A complete response; `head` leaves the body out (the length stays that of the body).
fn response(status: u16, content_type: &str, body: &[u8], head: bool) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        out.extend_from_slice(body);
    }
    out
}

/// What `/metrics` and `/healthz` answer, from any thread and for as long as it is kept (a
/// [`Server::metrics_handle`](crate::Server::metrics_handle)): for serving them on another
/// listener.
#[derive(Clone)]
pub struct Metrics {
    pub(crate) config: Arc<Config>,
    pub(crate) hub: Arc<Hub>,
}

impl Metrics {
    /// Every worker's counters, summed, and the `process_*` families, in the Prometheus text
    /// format: what `GET /metrics` answers.
    pub fn render(&self) -> String {
        render_metrics(&self.config, &self.hub)
    }

    /// Whether the server accepts connections (`/healthz`'s 200); false once it shuts down.
    pub fn accepting(&self) -> bool {
        !self.hub.shutdown.load(Acquire)
    }

    /// The whole HTTP response to the request head in `request`, as the WebSocket port would
    /// answer it: `GET`/`HEAD /metrics` and `/healthz`; 404 for other paths, 400 for anything
    /// that is not a complete `GET` or `HEAD` request. For a listener of the application's
    /// own (`sockeye serve --metrics-bind`).
    pub fn respond(&self, request: &[u8]) -> Vec<u8> {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = matches!(req.parse(request), Ok(httparse::Status::Complete(_)));
        let head = match req.method {
            Some("GET") if parsed => false,
            Some("HEAD") if parsed => true,
            _ => {
                return response(400, TEXT, b"only GET /metrics and GET /healthz\n", false);
            }
        };
        let path = req.path.unwrap_or_default();
        let path = path.split(['?', '#']).next().unwrap_or_default();
        match metrics_route(&self.config, &self.hub, path, true) {
            Some((status, content_type, body)) => response(status, content_type, &body, head),
            None => response(404, TEXT, b"not found\n", head),
        }
    }
}

/// Every worker's counters, summed, in the Prometheus text format.
pub(crate) fn render_metrics(config: &Config, hub: &Hub) -> String {
    let stats = &hub.stats;
    let sum = |f: &dyn Fn(&WorkerStats) -> &std::sync::atomic::AtomicU64| -> u64 {
        stats
            .iter()
            .map(|s| f(s).load(Relaxed))
            .fold(0, u64::wrapping_add)
    };
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v)];
    family(
        "sockeye_workers",
        "gauge",
        "Worker threads, each with its own event loop.",
        &one(stats.len() as u64),
    );
    family(
        "sockeye_engine",
        "gauge",
        "The I/O engine the workers run on (label engine: uring or poll), always 1.",
        &[(format!("{{engine=\"{}\"}}", config.engine.name()), 1)],
    );
    family(
        "sockeye_connections",
        "gauge",
        "Open WebSocket connections.",
        &one(sum(&|s| &s.connections)),
    );
    family(
        "sockeye_up",
        "gauge",
        "1 while accepting connections, 0 once shutting down.",
        &one(u64::from(!hub.shutdown.load(Acquire))),
    );
    family(
        "sockeye_handshakes_accepted_total",
        "counter",
        "WebSocket upgrades accepted.",
        &one(sum(&|s| &s.accepted)),
    );
    let refused: Vec<_> = Refusal::ALL
        .iter()
        .enumerate()
        .map(|(i, r)| {
            (
                format!("{{reason=\"{}\"}}", r.label()),
                sum(&|s| &s.refused[i]),
            )
        })
        .collect();
    family(
        "sockeye_handshakes_refused_total",
        "counter",
        "WebSocket upgrades refused, by reason.",
        &refused,
    );
    family(
        "sockeye_http_requests_total",
        "counter",
        "Plain HTTP requests answered (pages, /metrics, /healthz).",
        &one(sum(&|s| &s.http_requests)),
    );
    family(
        "sockeye_messages_received_total",
        "counter",
        "WebSocket messages received.",
        &one(sum(&|s| &s.messages_in)),
    );
    family(
        "sockeye_messages_sent_total",
        "counter",
        "WebSocket messages and control frames queued for sending.",
        &one(sum(&|s| &s.messages_out)),
    );
    family(
        "sockeye_received_bytes_total",
        "counter",
        "Bytes received from sockets (frames and handshakes).",
        &one(sum(&|s| &s.bytes_in)),
    );
    family(
        "sockeye_sent_bytes_total",
        "counter",
        "Bytes written to sockets.",
        &one(sum(&|s| &s.bytes_out)),
    );
    let codes = |pick: fn(&WorkerStats) -> &[std::sync::atomic::AtomicU64; CLOSE_SLOTS]| {
        (0..CLOSE_SLOTS)
            .filter_map(|i| {
                let n = sum(&|s| &pick(s)[i]);
                (n > 0).then(|| (format!("{{code=\"{}\"}}", close_slot_label(i)), n))
            })
            .collect::<Vec<_>>()
    };
    family(
        "sockeye_close_frames_sent_total",
        "counter",
        "Close frames sent, by close code (3xxx and 4xxx: application codes; none: no code).",
        &codes(|s| &s.close_sent),
    );
    family(
        "sockeye_close_frames_received_total",
        "counter",
        "Close frames received, by close code (3xxx and 4xxx: application codes; none: no code).",
        &codes(|s| &s.close_received),
    );
    family(
        "sockeye_rooms",
        "gauge",
        "Broadcast rooms with at least one member.",
        &one(hub.rooms.count() as u64),
    );
    family(
        "sockeye_backpressure_events_total",
        "counter",
        "Times a connection's send queue went over its bound (reading pauses until it drains).",
        &one(sum(&|s| &s.backpressure)),
    );
    family(
        "sockeye_handler_panics_total",
        "counter",
        "Handler callbacks that panicked; each closed its connection with 1011.",
        &one(sum(&|s| &s.handler_panics)),
    );
    family(
        "sockeye_slow_subscribers_closed_total",
        "counter",
        "Broadcast subscribers closed with 1008 for being over the backpressure bound.",
        &one(sum(&|s| &s.slow_closed)),
    );
    family(
        "sockeye_broadcast_dropped_total",
        "counter",
        "Broadcast deliveries dropped: a worker's mailbox was full, or a slow subscriber skipped.",
        &[
            (
                "{reason=\"mailbox_full\"}".into(),
                sum(&|s| &s.dropped).wrapping_add(hub.external_dropped.load(Relaxed)),
            ),
            (
                "{reason=\"slow_subscriber\"}".into(),
                sum(&|s| &s.slow_skipped),
            ),
        ],
    );
    if let Some(c) = hub.forward.as_ref().map(|f| f.counters()) {
        family(
            "sockeye_cluster_connected",
            "gauge",
            "1 while connected to NATS (cross-node delivery on), else 0.",
            &one(u64::from(c.connected)),
        );
        family(
            "sockeye_cluster_connects_total",
            "counter",
            "Connections to NATS made (the first and every reconnect).",
            &one(c.connects),
        );
        family(
            "sockeye_cluster_published_total",
            "counter",
            "Room messages published to NATS for the other nodes.",
            &one(c.published),
        );
        family(
            "sockeye_cluster_received_total",
            "counter",
            "Room messages received from NATS.",
            &one(c.received),
        );
        family(
            "sockeye_cluster_dropped_total",
            "counter",
            "Room messages not sent to or taken from NATS, by reason.",
            &[
                (
                    "{reason=\"queue_full\"}".into(),
                    sum(&|s| &s.cluster_dropped).wrapping_add(c.queue_full_elsewhere),
                ),
                ("{reason=\"disconnected\"}".into(), c.dropped_disconnected),
                ("{reason=\"publish_error\"}".into(), c.dropped_publish_error),
                ("{reason=\"invalid\"}".into(), c.dropped_invalid),
            ],
        );
    }
    family(
        "sockeye_read_buffer_bytes",
        "gauge",
        "Heap bytes connections hold for reading: partial requests and frames, messages being assembled.",
        &one(sum(&|s| &s.read_buffer_bytes)),
    );
    family(
        "sockeye_receive_ring_bytes",
        "gauge",
        "Provided receive buffers, allocated once per worker and shared by its connections.",
        &one((config.recv_buffers as usize * config.recv_buffer_size * stats.len()) as u64),
    );
    family(
        "sockeye_build_info",
        "gauge",
        "The sockeye build serving (label version), always 1.",
        &[(format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION")), 1)],
    );
    process_metrics(&mut out);
    out
}

/// The standard `process_*` families (as the Prometheus client libraries write them), read
/// from `/proc/self`; a value that cannot be read is left out rather than guessed.
fn process_metrics(out: &mut String) {
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    let ticks = 100.0; // USER_HZ: /proc's clock ticks are 1/100 s on every Linux
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat") {
        // Fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
        // With the state as field 0: utime 11, stime 12, starttime 19.
        if let (Some(u), Some(s)) = (field(11), field(12)) {
            gauge(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (u + s) / ticks,
            );
        }
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot, field(19)) {
            gauge(
                "process_start_time_seconds",
                "gauge",
                "Start time of the process since unix epoch in seconds.",
                boot + start / ticks,
            );
        }
    }
    // Sizes from `status`, in kB there, so no page size is assumed.
    if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
        let kb = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        };
        if let Some(rss) = kb("VmRSS:") {
            gauge(
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size in bytes.",
                rss * 1024.0,
            );
        }
        if let Some(size) = kb("VmSize:") {
            gauge(
                "process_virtual_memory_bytes",
                "gauge",
                "Virtual memory size in bytes.",
                size * 1024.0,
            );
        }
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            fds.count() as f64,
        );
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
        let soft = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(max) = soft {
            gauge(
                "process_max_fds",
                "gauge",
                "Maximum number of open file descriptors.",
                max,
            );
        }
    }
}
