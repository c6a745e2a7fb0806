//! axum integration (feature `axum`): [`WebSocketUpgrade`], an extractor that upgrades the
//! request to a [`WebSocketStream`], as axum's own `WebSocketUpgrade` does, with sockeye's
//! checks and stream.
//!
//! ```no_run
//! use axum::{Router, response::Response, routing::get};
//! use futures_util::{SinkExt, StreamExt};
//! use sockeye_tokio::axum::WebSocketUpgrade;
//! use sockeye_tokio::Config;
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> Response {
//!     upgrade.config(Config::new().protocol("echo")).on_upgrade(|mut ws| async move {
//!         while let Some(Ok(msg)) = ws.next().await {
//!             if ws.send(msg).await.is_err() {
//!                 break;
//!             }
//!         }
//!     })
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/ws", get(ws));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await
//! # }
//! ```

use std::future::Future;

use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode, header};
use hyper_util::rt::TokioIo;
use sockeye_codec::Status;
use sockeye_codec::handshake::{self, EMPTY_HEADER, Request};

use crate::{Config, Negotiated, WebSocketStream};

/// The stream an axum upgrade gives.
pub type Upgraded = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Most bytes of request head re-checked by the codec (the request line and headers).
const MAX_HEAD: usize = 16 << 10;

/// Extracts a WebSocket upgrade request: checked as the codec checks every upgrade (`GET`,
/// HTTP/1.1, `Host`, `Upgrade: websocket` with `Connection: upgrade`, version 13, a valid
/// key); the origin, subprotocols and compression are decided by the [`Config`] given to
/// [`WebSocketUpgrade::config`] when [`WebSocketUpgrade::on_upgrade`] answers.
///
/// A request that is not a valid upgrade is rejected with the codec's status (405 for
/// another method, 426 for a plain HTTP request or another version, 400 otherwise) and a
/// body saying why.
pub struct WebSocketUpgrade {
    head: Vec<u8>,
    on_upgrade: hyper::upgrade::OnUpgrade,
    config: Config,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be upgraded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    status: StatusCode,
    reason: String,
}

impl Rejection {
    /// The HTTP status sent.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for Rejection {}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.reason).into_response();
        if self.status == StatusCode::UPGRADE_REQUIRED {
            let headers = response.headers_mut();
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
        }
        response
    }
}

fn rejection(status: u16, reason: impl Into<String>) -> Rejection {
    Rejection {
        status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        reason: reason.into(),
    }
}

/// The request head as it came on the wire (HTTP/1.1 only: the codec parses that form).
fn head_bytes(parts: &Parts) -> Result<Vec<u8>, Rejection> {
    if parts.version != http::Version::HTTP_11 {
        return Err(rejection(426, "WebSocket upgrades need HTTP/1.1"));
    }
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
        if head.len() > MAX_HEAD {
            return Err(rejection(431, "request headers too large"));
        }
    }
    head.extend_from_slice(b"\r\n");
    Ok(head)
}

impl<S: Send + Sync> FromRequestParts<S> for WebSocketUpgrade {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        let head = head_bytes(parts)?;
        let mut headers = [EMPTY_HEADER; 64];
        match Request::parse(&head, &mut headers) {
            Ok(Status::Complete(_)) => {}
            Ok(Status::Partial { .. }) => return Err(rejection(400, "incomplete request")),
            Err(e) => return Err(rejection(e.status(), e.to_string())),
        }
        let on_upgrade = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| rejection(426, "this connection cannot be upgraded"))?;
        Ok(WebSocketUpgrade {
            head,
            on_upgrade,
            config: Config::new(),
        })
    }
}

impl WebSocketUpgrade {
    /// The limits, timeouts and upgrade policy (origins, subprotocols, compression) to use.
    #[must_use]
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Answers the request: `101 Switching Protocols` and `callback` run on its own task with
    /// the stream once the connection is upgraded, or the refusal (403 for an origin not
    /// allowed). A connection whose upgrade then fails is dropped.
    pub fn on_upgrade<F, Fut>(self, callback: F) -> Response
    where
        F: FnOnce(Upgraded) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut storage = [EMPTY_HEADER; 64];
        let req = match Request::parse(&self.head, &mut storage) {
            Ok(Status::Complete((req, _))) => req,
            // Parsed once already in the extractor.
            _ => return rejection(400, "invalid upgrade request").into_response(),
        };
        let config = self.config;
        let decided = config.with_policy(|policy| {
            let upgrade = policy
                .decide(&req)
                .map_err(|r| rejection(r.status(), r.to_string()))?;
            let protocol = upgrade.protocol_name(policy).map(str::to_owned);
            Ok::<_, Rejection>((upgrade, protocol))
        });
        let (upgrade, protocol) = match decided {
            Ok(d) => d,
            Err(r) => return r.into_response(),
        };
        let accept = handshake::accept_key(req.key.as_bytes());
        let extension = upgrade.deflate.map(|a| a.to_string());
        let mut response = Response::new(axum_core::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_bytes(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, v);
        }
        for (name, value) in [
            (header::SEC_WEBSOCKET_PROTOCOL, &protocol),
            (header::SEC_WEBSOCKET_EXTENSIONS, &extension),
        ] {
            if let Some(v) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
                headers.insert(name, v);
            }
        }
        let negotiated = Negotiated {
            protocol,
            deflate: upgrade.deflate.zip(config.deflate),
            headers: Vec::new(),
        };
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let ws = WebSocketStream::from_upgraded(
                TokioIo::new(upgraded),
                sockeye_codec::Role::Server,
                &config,
                negotiated,
            );
            callback(ws).await;
        });
        response
    }
}
