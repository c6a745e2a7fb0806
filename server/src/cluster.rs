//! Broadcast across servers through NATS (feature `cluster`).
//!
//! Each room maps to one NATS subject, `PREFIX.TOKEN`, where TOKEN is the room name escaped
//! into a single subject token (so no name can inject `.`, `*` or `>`). A node publishes each
//! local room message to NATS once, with its node id and the message type in headers, and
//! delivers what arrives from NATS to its local members through the same worker mailboxes as
//! cross-worker broadcast. The NATS client runs on a current-thread tokio runtime of its own
//! thread; the io_uring workers never wait for it: they hand messages over through a bounded
//! queue and count what does not fit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::config::ClusterConfig;
use crate::hub::{ClusterCounters, Forward, Hub};
use sockeye_codec::session::Prepared;

/// Header carrying the publishing node's id (a node skips its own messages).
const NODE_HEADER: &str = "Sockeye-Node";
/// Header carrying the message type: `text` or `binary`.
const TYPE_HEADER: &str = "Sockeye-Type";

/// A message on its way from a worker to NATS.
pub(crate) struct Outgoing {
    room: Arc<str>,
    text: bool,
    payload: Bytes,
}

/// The workers' side of the bridge, kept in the hub.
pub(crate) struct Link {
    tx: mpsc::Sender<Outgoing>,
    pub(crate) stats: ClusterStats,
    pub(crate) node_id: String,
}

/// Counters written by the bridge thread only (queue overflows are counted by the workers in
/// their own [`WorkerStats::cluster_dropped`](crate::WorkerStats::cluster_dropped)).
#[derive(Default)]
pub(crate) struct ClusterStats {
    pub(crate) connected: AtomicBool,
    pub(crate) connects: AtomicU64,
    pub(crate) published: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) dropped_disconnected: AtomicU64,
    pub(crate) dropped_publish_error: AtomicU64,
    pub(crate) dropped_invalid: AtomicU64,
    /// Queue overflows of messages published from outside the workers ([`crate::Poster`]).
    pub(crate) queue_full_elsewhere: AtomicU64,
}

impl Link {
    /// Hands a local room message (a whole server frame) to the bridge; never blocks. False
    /// when the queue is full (the message is dropped; the caller counts it).
    fn forward(&self, room: &Arc<str>, frame: &Prepared) -> bool {
        let out = Outgoing {
            room: room.clone(),
            text: frame.kind() == sockeye_codec::DataKind::Text,
            payload: frame.payload_bytes(),
        };
        self.tx.try_send(out).is_ok()
    }
}

impl Forward for Link {
    fn forward(&self, room: &Arc<str>, frame: &Prepared) -> bool {
        Link::forward(self, room, frame)
    }

    fn dropped_elsewhere(&self) {
        self.stats.queue_full_elsewhere.fetch_add(1, Relaxed);
    }

    fn counters(&self) -> ClusterCounters {
        let c = &self.stats;
        ClusterCounters {
            connected: c.connected.load(Relaxed),
            connects: c.connects.load(Relaxed),
            published: c.published.load(Relaxed),
            received: c.received.load(Relaxed),
            queue_full_elsewhere: c.queue_full_elsewhere.load(Relaxed),
            dropped_disconnected: c.dropped_disconnected.load(Relaxed),
            dropped_publish_error: c.dropped_publish_error.load(Relaxed),
            dropped_invalid: c.dropped_invalid.load(Relaxed),
        }
    }
}

/// The escaped single subject token for a room name: bytes outside `[A-Za-z0-9-]` become
/// `_XX` (hex), and the empty name is `_`.
pub(crate) fn token(room: &str) -> String {
    if room.is_empty() {
        return "_".into();
    }
    let mut out = String::with_capacity(room.len());
    for b in room.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// The room name a token stands for (`None` for a token [`token`] cannot produce).
pub(crate) fn room_of(token: &str) -> Option<String> {
    match token {
        "_" => return Some(String::new()),
        "" => return None, // not a token `token` writes (and not a valid subject token)
        _ => {}
    }
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'_' => {
                let hex = token.get(i + 1..i + 3)?;
                let b = u8::from_str_radix(hex, 16).ok()?;
                if hex.bytes().any(|c| c.is_ascii_lowercase())
                    || b.is_ascii_alphanumeric()
                    || b == b'-'
                {
                    return None; // not how `token` writes it: one room, one subject
                }
                out.push(b);
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b == b'-' => {
                out.push(b);
                i += 1;
            }
            _ => return None,
        }
    }
    String::from_utf8(out).ok()
}

/// Creates the bridge's queue; the hub keeps the [`Link`], [`start`] gets the receiver.
pub(crate) fn link(config: &ClusterConfig) -> (Link, mpsc::Receiver<Outgoing>) {
    let (tx, rx) = mpsc::channel(config.queue);
    let node_id = config.node_id.clone().unwrap_or_else(|| {
        let mut b = [0u8; 8];
        let _ = getrandom::fill(&mut b);
        b.iter().map(|x| format!("{x:02x}")).collect()
    });
    let link = Link {
        tx,
        stats: ClusterStats::default(),
        node_id,
    };
    (link, rx)
}

/// A running bridge: stop it with [`Bridge::stop`].
pub(crate) struct Bridge {
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Bridge {
    pub(crate) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

/// Starts the bridge thread. It connects in the background (retrying forever with backoff),
/// so a NATS server that is down does not stop the node from serving its local rooms.
pub(crate) fn start(
    config: &ClusterConfig,
    hub: Arc<Hub>,
    link: Arc<Link>,
    rx: mpsc::Receiver<Outgoing>,
) -> std::io::Result<Bridge> {
    let addrs = config
        .urls
        .iter()
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| std::io::Error::other(format!("cluster URL {u:?}: {e}")))
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    // Configuration mistakes fail the start, not a background thread later.
    let prefix_ok = config.prefix.split('.').all(|t| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'*' && b != b'>')
    });
    if !prefix_ok {
        return Err(std::io::Error::other(format!(
            "cluster subject prefix {:?}: dot-separated tokens without spaces, '*' or '>'",
            config.prefix
        )));
    }
    if let Some(path) = &config.credentials {
        std::fs::File::open(path).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cluster credentials {}: {e}", path.display()),
            )
        })?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let config = config.clone();
    let thread = std::thread::Builder::new()
        .name("sockeye-cluster".into())
        .spawn(move || runtime.block_on(run(config, addrs, hub, link, rx, stopped)))?;
    Ok(Bridge { stop, thread })
}

/// Reconnect delays: 100 ms doubling to 5 s, with up to 20% jitter.
fn backoff(attempt: usize) -> Duration {
    let base = 100u64.saturating_mul(1 << attempt.min(6)).min(5_000);
    let mut r = [0u8; 1];
    let _ = getrandom::fill(&mut r);
    Duration::from_millis(base + base * u64::from(r[0]) / 1280)
}

async fn run(
    config: ClusterConfig,
    addrs: Vec<async_nats::ServerAddr>,
    hub: Arc<Hub>,
    link: Arc<Link>,
    rx: mpsc::Receiver<Outgoing>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let events_link = link.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("sockeye {}", link.node_id))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .no_echo()
        .reconnect_delay_callback(backoff)
        .connection_timeout(Duration::from_secs(2))
        // Commands the client holds for its connection: with our own queue in front, a small
        // bound keeps a stalled link from holding much memory.
        .client_capacity(256)
        .event_callback(move |event| {
            let link = events_link.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        link.stats.connected.store(true, Relaxed);
                        link.stats.connects.fetch_add(1, Relaxed);
                        tracing::info!("cluster: connected to NATS; cross-node delivery on");
                    }
                    async_nats::Event::Disconnected => {
                        link.stats.connected.store(false, Relaxed);
                        tracing::warn!(
                            "cluster: lost NATS; local delivery goes on, cross-node messages \
                             are dropped until it is back"
                        );
                    }
                    other => tracing::debug!(event = %other, "cluster: NATS event"),
                }
            }
        });
    if let Some(path) = &config.credentials {
        options = match options.credentials_file(path).await {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e,
                    "cluster: cannot read the credentials file; not clustered");
                return drain(rx, stopped, &link).await;
            }
        };
    }
    let client = match options.connect(addrs).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot start the NATS client; not clustered");
            return drain(rx, stopped, &link).await;
        }
    };
    let subject = format!("{}.*", config.prefix);
    let subscriber = match client.subscribe(subject.clone()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, %subject, "cluster: cannot subscribe; not clustered");
            return drain(rx, stopped, &link).await;
        }
    };
    let watch_link = link.clone();
    let urls = config.urls.join(", ");
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let connected = watch_link.stats.connected.load(Relaxed);
        if !connected {
            tracing::warn!(%urls, "cluster: NATS not reachable; serving local rooms only, \
                                  retrying in the background");
        }
    });
    let publisher = tokio::spawn(publish_loop(
        client.clone(),
        rx,
        link.clone(),
        config.prefix.clone(),
    ));
    let receiver = tokio::spawn(receive_loop(
        subscriber,
        hub.clone(),
        link.clone(),
        config.prefix.clone(),
    ));
    let _ = stopped.await;
    publisher.abort();
    receiver.abort();
    let _ = tokio::time::timeout(Duration::from_secs(1), client.drain()).await;
}

/// Without a NATS client: take messages off the queue (so the workers never find it full for
/// that reason) and count them as dropped, until stopped.
async fn drain(
    mut rx: mpsc::Receiver<Outgoing>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    link: &Link,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            m = rx.recv() => match m {
                Some(_) => { link.stats.dropped_disconnected.fetch_add(1, Relaxed); }
                None => return,
            },
        }
    }
}

/// Local messages to NATS, in the order the workers queued them (per worker, which keeps
/// each publishing connection's order).
async fn publish_loop(
    client: async_nats::Client,
    mut rx: mpsc::Receiver<Outgoing>,
    link: Arc<Link>,
    prefix: String,
) {
    while let Some(out) = rx.recv().await {
        if client.connection_state() != async_nats::connection::State::Connected {
            link.stats.dropped_disconnected.fetch_add(1, Relaxed);
            continue;
        }
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(NODE_HEADER, link.node_id.as_str());
        headers.insert(TYPE_HEADER, if out.text { "text" } else { "binary" });
        let subject = format!("{prefix}.{}", token(&out.room));
        match client
            .publish_with_headers(subject, headers, out.payload)
            .await
        {
            Ok(()) => {
                link.stats.published.fetch_add(1, Relaxed);
            }
            Err(e) => {
                link.stats.dropped_publish_error.fetch_add(1, Relaxed);
                tracing::debug!(error = %e, "cluster: publish failed");
            }
        }
    }
}

/// Messages from other nodes (and from any other NATS publisher on a room subject) to the
/// local members of their room.
async fn receive_loop(
    mut subscriber: async_nats::Subscriber,
    hub: Arc<Hub>,
    link: Arc<Link>,
    prefix: String,
) {
    while let Some(msg) = subscriber.next().await {
        link.stats.received.fetch_add(1, Relaxed);
        let headers = msg.headers.as_ref();
        if headers
            .and_then(|h| h.get(NODE_HEADER))
            .is_some_and(|v| v.as_str() == link.node_id)
        {
            continue; // our own (no_echo should already keep it away)
        }
        let room = msg
            .subject
            .as_str()
            .strip_prefix(prefix.as_str())
            .and_then(|s| s.strip_prefix('.'))
            .and_then(room_of);
        let Some(room) = room else {
            link.stats.dropped_invalid.fetch_add(1, Relaxed);
            continue;
        };
        let kind = headers.and_then(|h| h.get(TYPE_HEADER)).map(|v| v.as_str());
        let text = match kind {
            Some("text") => true,
            Some("binary") => false,
            // A plain NATS publisher: text if it is UTF-8.
            None => std::str::from_utf8(&msg.payload).is_ok(),
            Some(_) => {
                link.stats.dropped_invalid.fetch_add(1, Relaxed);
                continue;
            }
        };
        let prepared = if text {
            match std::str::from_utf8(&msg.payload) {
                Ok(t) => crate::PreparedMessage::text(t),
                Err(_) => {
                    link.stats.dropped_invalid.fetch_add(1, Relaxed);
                    continue;
                }
            }
        } else {
            crate::PreparedMessage::binary(&msg.payload)
        };
        if let Some(key) = hub.rooms.find(&room) {
            hub.broadcast(key, prepared.0.clone(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_become_one_safe_token_and_back() {
        for room in [
            "",
            "/",
            "/chat/lobby",
            "a.b",
            "*",
            ">",
            "a b\tc",
            "_",
            "__5F",
            "κόσμε",
            "/x?y=1",
            "A-z_09",
        ] {
            let t = token(room);
            assert!(!t.is_empty());
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{room:?} -> {t:?}"
            );
            assert_eq!(room_of(&t).as_deref(), Some(room), "{t}");
        }
        assert_eq!(token("/chat/lobby"), "_2Fchat_2Flobby");
        // Tokens `token` never writes are refused, so one room has one subject.
        for bad in ["_2f", "_41", "_2", "a.b", "*", ">", "_FF", "a b"] {
            assert_eq!(room_of(bad), None, "{bad}");
        }
    }

    proptest::proptest! {
        /// Any room name maps to one token of safe characters and back.
        #[test]
        fn any_room_name_round_trips(room in "\\PC{0,40}") {
            let t = token(&room);
            proptest::prop_assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            proptest::prop_assert_eq!(room_of(&t), Some(room));
        }

        /// Any subject token from the wire is either refused or the token of exactly one room.
        #[test]
        fn any_token_is_refused_or_canonical(t in "[A-Za-z0-9_.*> -]{0,24}|(_[0-9A-Fa-f]{0,2}[a-z]?){1,6}") {
            if let Some(room) = room_of(&t) {
                proptest::prop_assert_eq!(token(&room), t);
            }
        }
    }
}
