//! An axum app with sockeye WebSocket endpoints: `/echo` echoes, `/chat` relays every message
//! to everyone connected (a room on a `tokio::sync::broadcast` channel), and `/` is a plain
//! page. Run it, then `sockeye connect ws://127.0.0.1:3000/chat` from two terminals.
//!
//! ```text
//! cargo run -p sockeye-tokio --features axum --example axum_chat [-- 127.0.0.1:3000]
//! ```

use axum::Router;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use sockeye_tokio::axum::WebSocketUpgrade;
use sockeye_tokio::{Config, Message};
use tokio::sync::broadcast;

async fn echo(upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(|mut ws| async move {
        while let Some(Ok(msg)) = ws.next().await {
            if ws.send(msg).await.is_err() {
                break;
            }
        }
    })
}

async fn chat(
    State(room): State<broadcast::Sender<String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let config = Config::new().max_message(Some(64 << 10));
    upgrade.config(config).on_upgrade(move |ws| async move {
        let (mut tx, mut rx) = ws.split::<Message>();
        let mut heard = room.subscribe();
        // What others say goes out on this connection; a subscriber that falls behind the
        // channel's capacity skips what it missed.
        let relay = tokio::spawn(async move {
            loop {
                match heard.recv().await {
                    Ok(text) => {
                        if tx.send(Message::Text(text)).await.is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        while let Some(Ok(msg)) = rx.next().await {
            if let Message::Text(text) = msg {
                let _ = room.send(text);
            }
        }
        relay.abort();
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let (room, _) = broadcast::channel::<String>(1024);
    let app = Router::new()
        .route(
            "/",
            get(|| async { "sockeye on axum: ws://…/echo and ws://…/chat\n" }),
        )
        .route("/echo", get(echo))
        .route("/chat", get(chat))
        .with_state(room);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("axum_chat: http://{addr}/");
    axum::serve(listener, app).await
}
