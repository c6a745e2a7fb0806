//! # sockeye-server
//!
//! A WebSocket server on io_uring, built on `sockeye-codec`. One event loop per worker thread,
//! each with its own ring and its own `SO_REUSEPORT` listener (the kernel spreads accepts, and
//! nothing is shared on the hot path); multishot accept; multishot receive into a provided-buffer
//! ring, decoded in place; one vectored write per connection per loop turn.
//!
//! Where io_uring is refused (Docker's default seccomp profile, kernels with it disabled), the
//! same loop runs on readiness polling instead ([`Engine::Poll`], epoll): [`Engine::Auto`], the
//! default, picks io_uring when the kernel allows it and says so in the log when it does not.
//!
//! The application is a [`Handler`]: one instance per worker, called with a [`WebSocket`] handle.
//! The same event loop opens outbound (client-role) connections with [`Server::connect`]; the
//! [`client`] module is a blocking client on `std::net` in the shape of the Go libraries.
//!
//! ```no_run
//! use sockeye_server::{Config, Handler, Message, Server, WebSocket};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     fn on_message(&mut self, ws: &mut WebSocket<'_>, msg: Message<'_>) {
//!         match msg {
//!             Message::Text(t) => ws.send_text(t),
//!             Message::Binary(b) => ws.send_binary(b),
//!         };
//!     }
//! }
//!
//! let config = Config::new("127.0.0.1:9001".parse().unwrap());
//! let server = Server::start(config, |_ctx| Echo).expect("bound and started");
//! println!("listening on {}", server.local_addr());
//! server.join().unwrap();
//! ```

/// The blocking client: the [`sockeye_client`] crate, re-exported.
pub use sockeye_client as client;
mod backend;
#[cfg(feature = "cluster")]
mod cluster;
mod compress;
mod config;
mod connect;
mod handler;
mod handlers;
mod http;
mod hub;
mod id;
mod poll;
mod ring;
mod timer;
mod worker;

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use client::Compression;
#[cfg(feature = "cluster")]
pub use config::ClusterConfig;
pub use config::{Config, Engine, SlowPolicy};
pub use connect::Connect;
pub use handler::{
    Admission, Chunk, Handler, JoinError, Message, OwnedMessage, PreparedMessage, SendStatus,
    UpgradeRequest, WebSocket,
};
pub use handlers::{Broadcast, Echo, join_path};
pub use http::Metrics;
pub use hub::{CLOSE_SLOTS, Poster, Refusal, WorkerStats, close_slot};
pub use id::ConnId;
pub use sockeye_codec::CloseCode;
pub use sockeye_codec::deflate::DeflateConfig;

use hub::Hub;
use worker::Worker;

/// What a handler factory gets for the worker it builds a handler for.
pub struct WorkerContext {
    /// The worker's index (0-based).
    pub worker: usize,
    /// Reaches any connection from any thread.
    pub poster: Poster,
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    engine: Engine,
    config: Arc<Config>,
    hub: Arc<Hub>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    #[cfg(feature = "cluster")]
    bridge: Option<cluster::Bridge>,
}

impl Server {
    /// Binds one listener per worker and starts the workers, each with a handler from
    /// `make_handler`, on the configured [`Engine`]. Fails at once, with the cause and the
    /// remedy, if the engine is [`Engine::Uring`] and io_uring is unavailable.
    pub fn start<H, F>(config: Config, make_handler: F) -> io::Result<Server>
    where
        H: Handler,
        F: Fn(WorkerContext) -> H + Send + Sync + 'static,
    {
        config.check()?;
        if let Err(e) = ring::raise_fd_limit() {
            tracing::warn!(error = %e, "could not raise the descriptor limit");
        }
        let engine = match backend::resolve(config.engine) {
            (engine, None) => engine,
            (engine, Some(why)) => {
                tracing::info!(
                    reason = %why,
                    "io_uring is not available here; running on the portable engine (poll)"
                );
                engine
            }
        };
        let mut config = config;
        config.engine = engine; // what `/metrics` reports
        let config = Arc::new(config);
        let (listeners, addr) = if config.listen {
            let listeners = bind(config.bind, config.workers, config.reuse_port)?;
            let addr = socket2::SockRef::from(&listeners[0])
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listener has no IP address"))?;
            (listeners.into_iter().map(Some).collect(), addr)
        } else {
            (
                (0..config.workers).map(|_| None).collect::<Vec<_>>(),
                config.bind,
            )
        };
        let wakes = (0..config.workers)
            .map(|_| ring::eventfd())
            .collect::<io::Result<Vec<_>>>()?;
        let files = wakes
            .iter()
            .map(|w| w.try_clone().map(std::fs::File::from))
            .collect::<io::Result<Vec<_>>>()?;
        let rooms = hub::Rooms::new(config.max_rooms, config.max_room_name);
        #[cfg(feature = "cluster")]
        let (link, queue) = match &config.cluster {
            Some(c) => {
                let (link, rx) = cluster::link(c);
                (Some(link), Some(rx))
            }
            None => (None, None),
        };
        #[cfg(feature = "cluster")]
        let link = link.map(Arc::new);
        #[cfg(feature = "cluster")]
        let forward = link.clone().map(|l| l as Arc<dyn hub::Forward>);
        #[cfg(not(feature = "cluster"))]
        let forward = None;
        let (hub, inboxes) = Hub::new(files, rooms, forward);
        let hub = Arc::new(hub);
        #[cfg(feature = "cluster")]
        let bridge = match (&config.cluster, queue, link) {
            (Some(c), Some(rx), Some(link)) => Some(cluster::start(c, hub.clone(), link, rx)?),
            _ => None,
        };
        let make_handler = Arc::new(make_handler);

        // Build every worker (rings, buffers) before starting any, so that a refused io_uring
        // is an error from `start` rather than a thread that dies.
        let mut workers = Vec::new();
        for (i, ((listener, wake), inbox)) in
            listeners.into_iter().zip(wakes).zip(inboxes).enumerate()
        {
            let ctx = WorkerContext {
                worker: i,
                poster: Poster { hub: hub.clone() },
            };
            workers.push((i, listener, wake, inbox, ctx));
        }
        let mut threads = Vec::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<io::Result<()>>();
        for (i, listener, wake, inbox, ctx) in workers {
            let (config, hub, make_handler, ready) = (
                config.clone(),
                hub.clone(),
                make_handler.clone(),
                ready_tx.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("sockeye-{i}"))
                .spawn(move || {
                    // A panicking handler factory is reported like a refused ring: as an
                    // error from `start`, never as a thread that silently never says it is
                    // ready (which would leave `start` waiting for ever).
                    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let handler = make_handler(ctx);
                        Worker::new(i, engine, config, hub, listener, wake, inbox, handler)
                    }))
                    .unwrap_or_else(|_| {
                        Err(io::Error::other(format!(
                            "worker {i}: the handler factory panicked"
                        )))
                    });
                    match built {
                        Ok(w) => {
                            let _ = ready.send(Ok(()));
                            drop(ready);
                            w.run()
                        }
                        Err(e) => {
                            let msg = e.to_string();
                            let _ = ready.send(Err(e));
                            Err(io::Error::other(msg))
                        }
                    }
                })?;
            threads.push(thread);
        }
        drop(ready_tx);
        let server = Server {
            addr,
            engine,
            config,
            hub,
            threads,
            #[cfg(feature = "cluster")]
            bridge,
        };
        for _ in 0..server.threads.len() {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    server.hub.shutdown();
                    return Err(e);
                }
                Err(_) => return Err(io::Error::other("a worker thread died while starting")),
            }
        }
        tracing::info!(addr = %addr, workers = server.threads.len(), engine = engine.name(), "listening");
        Ok(server)
    }

    /// The address the server listens on (with the actual port when bound to port 0); the
    /// configured bind address when it does not listen.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The engine the workers run on: [`Engine::Uring`] or [`Engine::Poll`] (what
    /// [`Engine::Auto`] chose).
    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Opens an outbound connection on worker `token % workers`; see [`Connect`]. Fails if its
    /// headers include the upgrade's own (`InvalidInput`) or if that worker's mailbox is full.
    pub fn connect(&self, c: Connect) -> io::Result<()> {
        self.poster().connect(c)
    }

    /// A handle to reach connections from other threads.
    pub fn poster(&self) -> Poster {
        Poster {
            hub: self.hub.clone(),
        }
    }

    /// Each worker's counters.
    pub fn stats(&self) -> &[WorkerStats] {
        &self.hub.stats
    }

    /// Every worker's counters, summed, in the Prometheus text format (what `GET /metrics`
    /// answers), for applications that expose metrics elsewhere.
    pub fn metrics(&self) -> String {
        http::render_metrics(&self.config, &self.hub)
    }

    /// A handle that renders [`Server::metrics`] and tells whether the server accepts, from
    /// any thread, for serving them somewhere else than the WebSocket port.
    pub fn metrics_handle(&self) -> http::Metrics {
        http::Metrics {
            config: self.config.clone(),
            hub: self.hub.clone(),
        }
    }

    /// Starts a graceful shutdown: close every connection with 1001 and wait up to the close
    /// timeout for the handshakes; meanwhile new requests (and `/healthz`) get 503. [`Server::join`] waits for it to finish.
    pub fn shutdown(&self) {
        self.hub.shutdown();
    }

    /// Waits for every worker to exit (then stops the cluster bridge, if any); the first
    /// worker error, if any.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        #[cfg(feature = "cluster")]
        let bridge = self.bridge;
        for t in self.threads {
            let r = t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("worker panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        #[cfg(feature = "cluster")]
        if let Some(b) = bridge {
            b.stop();
        }
        result
    }
}

/// One listener per worker on the same address (`SO_REUSEPORT`), so the kernel balances
/// accepts. With port 0, the first listener picks the port and the others join it.
///
/// Unless `share`, a probe first binds the address without `SO_REUSEPORT`: that fails while any
/// socket listens there (another server's reuse-port group included), so a second server is
/// refused instead of silently splitting the clients. The probe stays bound, not listening,
/// until the listeners are, which narrows the window in which two servers starting at once
/// could both pass it.
fn bind(addr: SocketAddr, n: usize, share: bool) -> io::Result<Vec<OwnedFd>> {
    use socket2::{Domain, Socket, Type};
    let _probe = if share || addr.port() == 0 {
        None
    } else {
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
        probe.set_reuse_address(true)?; // a port left in TIME_WAIT is free, not in use
        match probe.bind(&addr.into()) {
            Ok(()) => Some(probe),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "address in use: something already listens on {addr} (to share the \
                         port with it, as in a restart, use reuse_port / --reuse-port)"
                    ),
                ));
            }
            Err(e) => return Err(e),
        }
    };
    let mut out = Vec::new();
    let mut addr = addr;
    for _ in 0..n {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM.cloexec(), None)?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&addr.into())?;
        s.listen(4096)?;
        if addr.port() == 0 {
            addr = s
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("no address"))?;
        }
        out.push(OwnedFd::from(s));
    }
    Ok(out)
}
