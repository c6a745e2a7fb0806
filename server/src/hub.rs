//! What the workers share: one mailbox per worker (a bounded channel plus an eventfd wake-up),
//! for broadcast, for results posted back from other threads, and for shutdown; and per-worker
//! counters that only their worker writes.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};

use bytes::Bytes;

use crate::handler::WebSocket;
use crate::worker::ConnId;

/// Messages a worker's mailbox holds before senders start dropping (broadcast) or failing
/// (posted tasks): memory stays bounded even when a worker is stuck.
const MAILBOX: usize = 1 << 16;

/// A unit of work run on a connection's worker.
pub(crate) type Task = Box<dyn FnOnce(&mut WebSocket<'_>) + Send>;

pub(crate) enum Inbox {
    /// A frame to queue for every local subscriber.
    Broadcast(Bytes),
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

/// Counters of one worker. Only that worker writes them (relaxed stores, no contention); the
/// stats reporter and scrapers sum them.
#[derive(Default)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Open WebSocket connections.
    pub connections: AtomicU64,
    /// Messages received.
    pub messages_in: AtomicU64,
    /// Messages (frames) queued for sending.
    pub messages_out: AtomicU64,
    /// Broadcast frames dropped because a worker's mailbox was full.
    pub dropped: AtomicU64,
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
}

/// Shared by all workers and by [`Poster`]s.
pub(crate) struct Hub {
    mailboxes: Vec<Mailbox>,
    pub(crate) stats: Vec<WorkerStats>,
    pub(crate) shutdown: AtomicBool,
}

impl Hub {
    /// A hub for workers whose wake-up eventfds are `wakes`; returns the receivers in order.
    pub(crate) fn new(wakes: Vec<File>) -> (Hub, Vec<Receiver<Inbox>>) {
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
            },
            rxs,
        )
    }

    pub(crate) fn workers(&self) -> usize {
        self.mailboxes.len()
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
    pub(crate) fn wake(&self, w: usize) {
        let mb = &self.mailboxes[w];
        if !mb.notified.swap(true, Ordering::AcqRel) {
            // A full eventfd counter (2^64 - 2) cannot happen with one write per drain.
            let _ = (&mb.wake).write(&1u64.to_ne_bytes());
        }
    }

    /// Called by worker `w` when woken, before it drains its mailbox.
    pub(crate) fn woken(&self, w: usize) {
        self.mailboxes[w].notified.store(false, Ordering::Release);
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

    /// Opens an outbound connection on worker `token % workers`; see
    /// [`Connect`](crate::Connect). Fails only if that worker's mailbox is full.
    pub fn connect(&self, c: crate::Connect) -> std::io::Result<()> {
        let w = (c.token % self.hub.workers() as u64) as usize;
        self.hub
            .send(w, Inbox::Connect(Box::new(c)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::WouldBlock, "mailbox full"))
    }
}
