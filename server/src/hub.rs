//! What the workers share: one mailbox per worker (a bounded channel plus an eventfd wake-up),
//! for broadcast, for results posted back from other threads, and for shutdown; and per-worker
//! counters that only their worker writes.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use crate::handler::{JoinError, WebSocket};
use crate::id::ConnId;
use sockeye_codec::session::Prepared;

/// Messages a worker's mailbox holds before senders start dropping (broadcast) or failing
/// (posted tasks): memory stays bounded even when a worker is stuck.
const MAILBOX: usize = 1 << 16;

/// A unit of work run on a connection's worker.
pub(crate) type Task = Box<dyn FnOnce(&mut WebSocket<'_>) + Send>;

pub(crate) enum Inbox {
    /// A frame to queue for every local member of a room.
    Broadcast(RoomKey, sockeye_codec::session::Prepared),
    /// A closure to run with a connection, if it is still open.
    Task(ConnId, Task),
    /// An outbound connection to open.
    Connect(Box<crate::Connect>),
}

struct Mailbox {
    tx: SyncSender<Inbox>,
    wake: File,
    notified: AtomicBool,
}

/// Why an upgrade was refused, as counted in [`WorkerStats`] and labelled in `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// 400: a malformed request or a bad WebSocket header.
    BadRequest,
    /// 403: the origin is not allowed.
    Origin,
    /// 405: not a GET.
    Method,
    /// 426: not an upgrade, or an unsupported WebSocket version.
    NotUpgrade,
    /// 431: the request was too large.
    TooLarge,
    /// 503: the server is shutting down.
    ShuttingDown,
    /// 503: the server holds as many connections as it may ([`Config::max_connections`]).
    ///
    /// [`Config::max_connections`]: crate::Config::max_connections
    ConnectionLimit,
    /// The application's [`Handler::on_upgrade`](crate::Handler::on_upgrade) refused it, with
    /// its own status.
    Handler,
    /// The request did not arrive within the handshake timeout.
    Timeout,
    /// Anything else (500).
    Other,
}

impl Refusal {
    /// Every reason, in the order of [`WorkerStats::refused`].
    pub const ALL: [Refusal; 10] = [
        Refusal::BadRequest,
        Refusal::Origin,
        Refusal::Method,
        Refusal::NotUpgrade,
        Refusal::TooLarge,
        Refusal::ShuttingDown,
        Refusal::ConnectionLimit,
        Refusal::Handler,
        Refusal::Timeout,
        Refusal::Other,
    ];

    /// The reason an HTTP error status stands for.
    pub fn from_status(status: u16) -> Refusal {
        match status {
            400 => Refusal::BadRequest,
            403 => Refusal::Origin,
            405 => Refusal::Method,
            426 => Refusal::NotUpgrade,
            431 => Refusal::TooLarge,
            503 => Refusal::ShuttingDown,
            _ => Refusal::Other,
        }
    }

    /// The label value used in `/metrics`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::BadRequest => "bad_request",
            Refusal::Origin => "origin",
            Refusal::Method => "method",
            Refusal::NotUpgrade => "not_upgrade",
            Refusal::TooLarge => "too_large",
            Refusal::ShuttingDown => "shutting_down",
            Refusal::ConnectionLimit => "connection_limit",
            Refusal::Handler => "handler",
            Refusal::Timeout => "timeout",
            Refusal::Other => "other",
        }
    }
}

/// Close codes counted one by one: 1000 to 1015; then application codes 3000–3999 and
/// 4000–4999 as two buckets, and a close frame without a code.
pub const CLOSE_SLOTS: usize = 19;

/// The counter slot of a close code (`None`: the frame carried no code).
pub fn close_slot(code: Option<u16>) -> usize {
    match code {
        Some(c @ 1000..=1015) => usize::from(c - 1000),
        Some(3000..=3999) => 16,
        Some(4000..=4999) => 17,
        Some(_) | None => 18,
    }
}

/// The `/metrics` label of a close-code slot.
pub fn close_slot_label(slot: usize) -> std::borrow::Cow<'static, str> {
    match slot {
        0..=15 => (1000 + slot).to_string().into(),
        16 => "3xxx".into(),
        17 => "4xxx".into(),
        _ => "none".into(),
    }
}

/// Counters of one worker. Only that worker writes them (relaxed load-and-store, no
/// read-modify-write, no contention); the stats reporter and `/metrics` sum them.
#[derive(Default)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Messages received.
    pub messages_in: AtomicU64,
    /// Messages (frames) queued for sending.
    pub messages_out: AtomicU64,
    /// Bytes received from sockets (frames and handshakes).
    pub bytes_in: AtomicU64,
    /// Bytes written to sockets.
    pub bytes_out: AtomicU64,
    /// Broadcast frames dropped because a worker's mailbox was full.
    pub dropped: AtomicU64,
    /// Upgrades accepted (101 sent).
    pub accepted: AtomicU64,
    /// Upgrades refused, by [`Refusal`] (indexed as [`Refusal::ALL`]).
    pub refused: [AtomicU64; Refusal::ALL.len()],
    /// Plain HTTP requests answered (pages, `/metrics`, `/healthz`).
    pub http_requests: AtomicU64,
    /// Close frames sent, by code slot ([`close_slot`]).
    pub close_sent: [AtomicU64; CLOSE_SLOTS],
    /// Close frames received, by code slot ([`close_slot`]).
    pub close_received: [AtomicU64; CLOSE_SLOTS],
    /// Times a connection's send queue went over the backpressure bound.
    pub backpressure: AtomicU64,
    /// Handler callbacks that panicked (each closed its connection with 1011).
    pub handler_panics: AtomicU64,
    /// Broadcast frames skipped for slow subscribers (policy `Drop`).
    pub slow_skipped: AtomicU64,
    /// Slow subscribers closed with 1008 (policy `Close`).
    pub slow_closed: AtomicU64,
    /// Room messages not handed to the cluster bridge because its queue was full.
    pub cluster_dropped: AtomicU64,
    /// Bytes held by connections for reading: partial requests and frames, and messages
    /// being assembled (the receive ring itself is fixed and not counted here).
    pub read_buffer_bytes: AtomicU64,
}

impl WorkerStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.store(
            counter.load(Ordering::Relaxed).wrapping_sub(n),
            Ordering::Relaxed,
        );
    }

    pub(crate) fn refuse(&self, why: Refusal) {
        let i = Refusal::ALL
            .iter()
            .position(|r| *r == why)
            .unwrap_or(Refusal::ALL.len() - 1);
        Self::add(&self.refused[i], 1);
    }
}

/// A room as every worker knows it: its slot in the process-wide table and the generation of
/// that slot (a slot is reused once its room empties; a frame published to the room before
/// then never reaches members of the next room in that slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RoomKey {
    pub(crate) id: u32,
    pub(crate) generation: u32,
}

struct RoomSlot {
    generation: u32,
    /// Member connections on every worker.
    members: u32,
    name: Option<Arc<str>>,
}

/// The process-wide room table: names to keys, with member counts. Touched when a connection
/// joins or leaves a room (and by `publish_to` by name), never to deliver a message.
pub(crate) struct Rooms {
    table: Mutex<RoomTable>,
    max_rooms: usize,
    max_name: usize,
}

struct RoomTable {
    by_name: HashMap<Arc<str>, u32>,
    slots: Vec<RoomSlot>,
    free: Vec<u32>,
}

impl Rooms {
    pub(crate) fn new(max_rooms: usize, max_name: usize) -> Rooms {
        let default = RoomSlot {
            generation: 0,
            members: 0,
            name: Some(Arc::from("")),
        };
        let mut by_name = HashMap::new();
        by_name.insert(Arc::from(""), 0);
        Rooms {
            table: Mutex::new(RoomTable {
                by_name,
                slots: vec![default],
                free: Vec::new(),
            }),
            max_rooms,
            max_name,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoomTable> {
        // The table stays consistent even if a holder panicked (no step can fail midway).
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One more member for `name`, creating the room if needed; the room's key and name.
    pub(crate) fn acquire(&self, name: &str) -> Result<(RoomKey, Arc<str>), JoinError> {
        if name.len() > self.max_name {
            return Err(JoinError::NameTooLong { max: self.max_name });
        }
        let mut t = self.lock();
        let id = match t.by_name.get(name) {
            Some(&id) => id,
            None => {
                // The default room (always in `by_name`) is not counted.
                if t.by_name.len() > self.max_rooms {
                    return Err(JoinError::TooManyRooms {
                        max: self.max_rooms,
                    });
                }
                let name: Arc<str> = Arc::from(name);
                let id = match t.free.pop() {
                    Some(id) => id,
                    None => {
                        t.slots.push(RoomSlot {
                            generation: 0,
                            members: 0,
                            name: None,
                        });
                        (t.slots.len() - 1) as u32
                    }
                };
                t.slots[id as usize].name = Some(name.clone());
                t.by_name.insert(name, id);
                id
            }
        };
        let slot = &mut t.slots[id as usize];
        slot.members += 1;
        let key = RoomKey {
            id,
            generation: slot.generation,
        };
        Ok((key, slot.name.clone().expect("a live room has its name")))
    }

    /// One member fewer; an empty room (other than the default) disappears.
    pub(crate) fn release(&self, key: RoomKey) {
        let mut t = self.lock();
        let Some(slot) = t.slots.get_mut(key.id as usize) else {
            return;
        };
        if slot.generation != key.generation || slot.members == 0 {
            return;
        }
        slot.members -= 1;
        if slot.members == 0 && key.id != 0 {
            slot.generation = slot.generation.wrapping_add(1);
            if let Some(name) = slot.name.take() {
                t.by_name.remove(&name);
            }
            t.free.push(key.id);
        }
    }

    /// The key of an existing room.
    pub(crate) fn find(&self, name: &str) -> Option<RoomKey> {
        let t = self.lock();
        let id = *t.by_name.get(name)?;
        Some(RoomKey {
            id,
            generation: t.slots[id as usize].generation,
        })
    }

    /// Rooms with at least one member (the default room counts when it has members).
    pub(crate) fn count(&self) -> usize {
        let t = self.lock();
        t.by_name.len() - usize::from(t.slots[0].members == 0)
    }
}

/// Shared by all workers and by [`Poster`]s.
pub(crate) struct Hub {
    mailboxes: Vec<Mailbox>,
    pub(crate) stats: Vec<WorkerStats>,
    pub(crate) shutdown: AtomicBool,
    pub(crate) rooms: Rooms,
    /// Broadcast frames dropped for full mailboxes when published from outside the workers.
    pub(crate) external_dropped: AtomicU64,
    /// The bridge to the other nodes, when clustered.
    pub(crate) forward: Option<Arc<dyn Forward>>,
}

/// Where room messages also go when this process is one node of several (the cluster bridge
/// implements it); defined here so that the hub does not depend on the bridge.
pub(crate) trait Forward: Send + Sync {
    /// Hands a room message to the other nodes without blocking; false when it was dropped
    /// (a full queue).
    fn forward(&self, room: &Arc<str>, frame: &Prepared) -> bool;
    /// Counts a message published from outside the workers that had to be dropped.
    fn dropped_elsewhere(&self);
    /// The bridge's counters, for `/metrics`.
    fn counters(&self) -> ClusterCounters;
}

/// The cluster bridge's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClusterCounters {
    pub(crate) connected: bool,
    pub(crate) connects: u64,
    pub(crate) published: u64,
    pub(crate) received: u64,
    pub(crate) queue_full_elsewhere: u64,
    pub(crate) dropped_disconnected: u64,
    pub(crate) dropped_publish_error: u64,
    pub(crate) dropped_invalid: u64,
}

impl Hub {
    /// A hub for workers whose wake-up eventfds are `wakes`; returns the receivers in order.
    pub(crate) fn new(
        wakes: Vec<File>,
        rooms: Rooms,
        forward: Option<Arc<dyn Forward>>,
    ) -> (Hub, Vec<Receiver<Inbox>>) {
        let mut rxs = Vec::new();
        let mailboxes = wakes
            .into_iter()
            .map(|wake| {
                let (tx, rx) = std::sync::mpsc::sync_channel(MAILBOX);
                rxs.push(rx);
                Mailbox {
                    tx,
                    wake,
                    notified: AtomicBool::new(false),
                }
            })
            .collect::<Vec<_>>();
        let stats = mailboxes.iter().map(|_| WorkerStats::default()).collect();
        (
            Hub {
                mailboxes,
                stats,
                shutdown: AtomicBool::new(false),
                rooms,
                external_dropped: AtomicU64::new(0),
                forward,
            },
            rxs,
        )
    }

    pub(crate) fn workers(&self) -> usize {
        self.mailboxes.len()
    }

    /// Hands a room message published on a worker to the other nodes, if clustered; a drop
    /// is counted in the worker's `stats`.
    pub(crate) fn forward_from_worker(
        &self,
        room: &Arc<str>,
        frame: &Prepared,
        stats: &WorkerStats,
    ) {
        if let Some(f) = &self.forward
            && !f.forward(room, frame)
        {
            WorkerStats::add(&stats.cluster_dropped, 1);
        }
    }

    /// [`Hub::forward_from_worker`] from any other thread.
    pub(crate) fn forward_from_elsewhere(&self, room: &str, frame: &Prepared) {
        if let Some(f) = &self.forward
            && !f.forward(&Arc::from(room), frame)
        {
            f.dropped_elsewhere();
        }
    }

    /// Puts `msg` in worker `w`'s mailbox and wakes it (one eventfd write per batch).
    pub(crate) fn send(&self, w: usize, msg: Inbox) -> Result<(), Inbox> {
        let mb = &self.mailboxes[w];
        match mb.tx.try_send(msg) {
            Ok(()) => {
                self.wake(w);
                Ok(())
            }
            Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => Err(m),
        }
    }

    /// Wakes worker `w` unless a wake-up is already pending.
    ///
    /// Ordering: the sender puts its message in the channel, then swaps the flag; the worker
    /// clears the flag, then drains the channel. Both flag operations are `SeqCst` and the
    /// worker's clear is followed by a `SeqCst` fence, so the two sides cannot both miss each
    /// other (the store-load pattern that acquire/release alone allows): either the sender
    /// sees the flag cleared and writes the eventfd, or the worker's drain sees its message.
    pub(crate) fn wake(&self, w: usize) {
        let mb = &self.mailboxes[w];
        std::sync::atomic::fence(Ordering::SeqCst);
        if !mb.notified.swap(true, Ordering::SeqCst) {
            // A full eventfd counter (2^64 - 2) cannot happen with one write per drain.
            let _ = (&mb.wake).write(&1u64.to_ne_bytes());
        }
    }

    /// Called by worker `w` when woken, before it drains its mailbox.
    pub(crate) fn woken(&self, w: usize) {
        self.mailboxes[w].notified.store(false, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst); // see `wake`
    }

    /// Open WebSocket connections on every worker.
    pub(crate) fn open_connections(&self) -> u64 {
        self.stats
            .iter()
            .map(|s| s.connections.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    /// Sends a room's frame to every worker but `sender` (the worker publishing, which
    /// delivers it itself); a full mailbox drops it for that worker, counted by the sender (or
    /// in `external_dropped` when published from another thread).
    pub(crate) fn broadcast(
        &self,
        key: RoomKey,
        frame: sockeye_codec::session::Prepared,
        sender: Option<usize>,
    ) {
        for w in 0..self.workers() {
            if Some(w) != sender && self.send(w, Inbox::Broadcast(key, frame.clone())).is_err() {
                match sender {
                    Some(me) => WorkerStats::add(&self.stats[me].dropped, 1),
                    None => {
                        self.external_dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Asks every worker to shut down gracefully.
    pub(crate) fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        for w in 0..self.workers() {
            self.wake(w);
        }
    }
}

/// Reaches connections from other threads: work that must leave the event loop (a database
/// call, a computation) runs elsewhere and posts its result back with [`Poster::post`].
///
/// ```no_run
/// use sockeye_server::{Handler, Message, Poster, WebSocket};
///
/// struct Slow { poster: Poster }
/// impl Handler for Slow {
///     fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
///         let (id, query, poster) = (ws.id(), msg.as_bytes().to_vec(), self.poster.clone());
///         std::thread::spawn(move || {
///             let answer = format!("{} bytes looked up", query.len()); // the slow part
///             poster.post(id, move |ws| { ws.send_text(&answer); });
///         });
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Poster {
    pub(crate) hub: std::sync::Arc<Hub>,
}

impl Poster {
    /// Runs `f` on the connection's worker with the connection, if it is still open when the
    /// worker gets to it. Returns false if the worker's mailbox is full (the task is dropped).
    pub fn post(&self, id: ConnId, f: impl FnOnce(&mut WebSocket<'_>) + Send + 'static) -> bool {
        self.hub
            .send(id.worker(), Inbox::Task(id, Box::new(f)))
            .is_ok()
    }

    /// Publishes `msg` to every member of `room` on every worker (and, when clustered, on
    /// every node), from any thread. Returns false if the room has no members in this process;
    /// a worker whose mailbox is full misses the message (counted as dropped).
    pub fn publish(&self, room: &str, msg: &crate::PreparedMessage) -> bool {
        self.hub.forward_from_elsewhere(room, &msg.0);
        let Some(key) = self.hub.rooms.find(room) else {
            return false;
        };
        self.hub.broadcast(key, msg.0.clone(), None);
        true
    }

    /// Opens an outbound connection on worker `token % workers`; see
    /// [`Connect`](crate::Connect). Fails if its headers include the upgrade's own
    /// (`InvalidInput`) or if that worker's mailbox is full (`WouldBlock`).
    pub fn connect(&self, c: crate::Connect) -> std::io::Result<()> {
        c.options.check_headers().map_err(std::io::Error::from)?;
        let w = (c.token % self.hub.workers() as u64) as usize;
        self.hub
            .send(w, Inbox::Connect(Box::new(c)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::WouldBlock, "mailbox full"))
    }
}
